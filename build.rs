//! Build facts for `sonde_build_info{version, revision, rustc_version}` (and `--version`): the
//! git commit and the compiler, as client_golang's build info carries them. Packagers without a
//! git checkout set SONDE_REVISION; a build without either says "unknown".

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SONDE_REVISION");
    let revision = std::env::var("SONDE_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when the checked-out commit changes (HEAD, and the branch it points to).
    for p in ["HEAD", "logs/HEAD"] {
        if let Some(path) = output("git", &["rev-parse", "--git-path", p]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SONDE_REVISION={revision}");
    println!("cargo:rustc-env=SONDE_RUSTC_VERSION={rustc_version}");
}
