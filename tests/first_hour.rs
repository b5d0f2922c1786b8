//! The README's first hour: with only `sonde serve` started (no configuration, as the README's
//! first command runs it), `sonde run scenarios/` passes every shipped file — against the demo
//! targets that `serve` starts. The test moves every demo target to a free port through the
//! variables both sides read, so it runs beside anything else on the machine; a second test
//! checks that the scenario files' own defaults are the demo's defaults.

use std::path::Path;
use std::process::Command;

use sonde_testkit::process::{free_addr, Serve};

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

#[test]
fn sonde_run_scenarios_passes_with_only_sonde_serve_started() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chat = free_addr();
    let vars = [
        ("SONDE_EXAMPLE_HTTP", free_addr().to_string()),
        ("SONDE_EXAMPLE_HTTPS", free_addr().to_string()),
        ("SONDE_EXAMPLE_DNS", free_addr().to_string()),
        ("SONDE_IM_URL", format!("ws://{chat}/chat")),
        ("SONDE_IM_TCP", free_addr().to_string()),
    ];
    // An empty working folder: no ./sonde.yaml, so serve runs its built-in configuration.
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Serve::command(SONDE).current_dir(cwd.path());
    for (k, v) in &vars {
        cmd = cmd.env(k, v);
    }
    let serve = cmd.start();

    let out = Command::new(SONDE)
        .arg("run")
        .arg(root.join("scenarios"))
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env_remove("SONDE_EXAMPLE_CA_FILE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "{stdout}\n{}\nserve's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log()
    );
    let failing: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    match sonde_probes::icmp::permission_check() {
        Ok(()) => assert!(out.status.success(), "{report}"),
        Err(why) => {
            eprintln!("SKIPPED: example-icmp not asserted — no ICMP permission here: {why}");
            assert!(
                failing.iter().all(|l| l.contains("example-icmp")),
                "{report}"
            );
        }
    }
    let passed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("PASS")).collect();
    assert!(
        passed.len() + failing.len() >= 9,
        "every shipped scenario ran: {report}"
    );
}

/// What the scenario files fall back to without the variables is where the demo listens by
/// default, and they name no other variable.
#[test]
fn the_scenarios_defaults_are_the_demo_targets() {
    use sonde::demo;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let known = [
        ("SONDE_EXAMPLE_HTTP", demo::DEFAULT_HTTP),
        ("SONDE_EXAMPLE_HTTPS", demo::DEFAULT_HTTPS),
        ("SONDE_EXAMPLE_DNS", demo::DEFAULT_DNS),
        ("SONDE_IM_URL", demo::DEFAULT_IM_URL),
        ("SONDE_IM_TCP", demo::DEFAULT_IM_TCP),
        ("SONDE_EXAMPLE_CA_FILE", "demo-ca.pem"),
        ("CHAT_SECRET", "sonde-demo-secret"),
    ];
    let re = regex::Regex::new(r"env\.([A-Z_]+) \| default\('([^']*)'\)").unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for c in re.captures_iter(&text) {
            let (var, default) = (&c[1], &c[2]);
            let want = known
                .iter()
                .find(|(k, _)| *k == var)
                .unwrap_or_else(|| panic!("{}: unknown variable {var}", path.display()));
            assert_eq!(default, want.1, "{}: default of {var}", path.display());
            seen += 1;
        }
    }
    assert!(
        seen >= 10,
        "the scenarios stopped using the variables ({seen})"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("demo-ca.pem")).unwrap(),
        demo::CA_PEM
    );
}

/// A demo port already taken does not keep `serve` from starting: the warning says which
/// target, where, and which variable moves it.
#[test]
fn a_taken_demo_port_is_a_warning_not_a_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap().to_string();
    let cwd = tempfile::tempdir().unwrap();
    let serve = Serve::command(SONDE)
        .current_dir(cwd.path())
        .env("SONDE_EXAMPLE_HTTP", &at)
        .env("SONDE_EXAMPLE_HTTPS", free_addr().to_string())
        .env("SONDE_EXAMPLE_DNS", free_addr().to_string())
        .env("SONDE_IM_URL", format!("ws://{}/chat", free_addr()))
        .env("SONDE_IM_TCP", free_addr().to_string())
        .start();
    let log = serve.log();
    assert!(
        log.contains("demo targets not started")
            && log.contains(&at)
            && log.contains("SONDE_EXAMPLE_HTTP"),
        "{log}"
    );
}

#[test]
fn help_points_to_the_format_reference() {
    let out = Command::new(SONDE).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("docs/scenario-format.md"), "{help}");
    assert!(
        !help.contains("shown by `sonde serve` at GET /config"),
        "{help}"
    );
    assert!(help.contains("demo"), "{help}");
}
