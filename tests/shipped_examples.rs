//! The example files we ship (`scenarios/*.yaml`, `examples/sonde.yaml`, the `.deb`'s default
//! configuration) are valid: `sonde check`
//! accepts them through the real binary with no environment set, so a broken example breaks
//! `cargo test`. (That they also PASS against real servers is the interop suite's
//! `shipped_examples_pass_against_real_servers`.)

use std::path::{Path, PathBuf};
use std::process::Command;

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

/// The bundle that the https/tls examples' `ca_file` falls back to without SONDE_EXAMPLE_CA_FILE.
const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.yaml`/`*.yml` below `dir`, as `sonde check` finds them.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Prometheus's own files (scrape config, rules), checked by promtool instead.
        if path.ends_with("examples/prometheus") {
            let agent = path.join("agent-push.yaml");
            assert!(agent.is_file(), "no {}", agent.display());
            out.push(agent);
            continue;
        }
        // Grafana's provisioning files and dashboards, checked by tests/interop/grafana.sh.
        if path.ends_with("examples/grafana") {
            continue;
        }
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            // Prometheus configurations shipped as examples (the blackbox relabel recipe) are
            // not sonde's to check.
            && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("prometheus"))
        {
            out.push(path);
        }
    }
}

/// Scenarios in a file, counted from its text rather than by sonde's loader: lines that open a
/// scenario mapping (`scenario: name` or `- scenario: name`).
fn count_scenarios(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            let t = t.strip_prefix("- ").unwrap_or(t);
            t.starts_with("scenario:")
        })
        .count()
}

#[test]
fn shipped_examples_pass_sonde_check() {
    let mut files = Vec::new();
    yaml_files(&root().join("scenarios"), &mut files);
    yaml_files(&root().join("examples"), &mut files);
    // The .deb's default /etc/sonde/sonde.yaml.
    files.push(root().join("packaging/deb/sonde.yaml"));
    for kind in ["http", "https", "tcp", "dns", "icmp", "tls"] {
        let f = root().join("scenarios").join(format!("{kind}.yaml"));
        assert!(files.contains(&f), "no shipped example {}", f.display());
    }
    let scenarios: usize = files
        .iter()
        .map(|f| count_scenarios(&std::fs::read_to_string(f).unwrap()))
        .sum();
    // blackbox_exporter modules: one `prober:` line each.
    let modules: usize = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| l.trim_start().starts_with("prober:"))
                .count()
        })
        .sum();

    let mut cmd = Command::new(SONDE);
    cmd.current_dir(root())
        .arg("check")
        .args(files.iter().map(|f| f.strip_prefix(root()).unwrap()))
        .env_remove("SONDE_EXAMPLE_CA_FILE")
        .env_remove("SHOP_HOST")
        .env_remove("SHOP_TOKEN");
    if !Path::new(DEFAULT_CA_BUNDLE).is_file() {
        // The examples fall back to Debian's CA bundle; on a machine without it, point them at a
        // generated CA instead, and say that the no-environment case went untested.
        eprintln!(
            "SKIPPED: checking the examples with no environment — {DEFAULT_CA_BUNDLE} does not \
             exist here (install Debian's ca-certificates); checked with SONDE_EXAMPLE_CA_FILE \
             set to a generated CA instead"
        );
        let ca = sonde_testkit::pki::Ca::new("shipped examples test CA");
        cmd.env("SONDE_EXAMPLE_CA_FILE", &ca.ca_file);
        let out = cmd.output().expect("run sonde check");
        assert_check_ok(&out, scenarios, modules, files.len());
        return;
    }
    let out = cmd.output().expect("run sonde check");
    assert_check_ok(&out, scenarios, modules, files.len());
}

fn assert_check_ok(out: &std::process::Output, scenarios: usize, modules: usize, files: usize) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sonde check of the shipped examples failed:\n{stderr}"
    );
    assert_eq!(
        stdout,
        format!("ok: {scenarios} scenarios, {modules} blackbox modules in {files} files\n"),
        "stderr: {stderr}"
    );
}
