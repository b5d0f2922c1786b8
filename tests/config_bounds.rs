//! Issue 17, items 2–4: what a hostile configuration can no longer do.
//!
//! - the loader never panics, and refuses deep nesting and oversized files before the YAML
//!   scanners see them, with located errors;
//! - templates are bounded in work and output, at load and per run (a hostile per-run template
//!   fails its own step while a healthy scenario keeps its schedule);
//! - `file()` stays below the scenario file's folder (or `--config.file-root`), and a document
//!   loaded from a URL gets neither `file()` nor the host's environment — the probe request that
//!   would carry them never leaves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sonde::config::limits::Limits;
use sonde::config::{load_all, load_str, ConfigError, LoadOptions};
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::process::Serve;

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

fn load_err(text: &str) -> Vec<ConfigError> {
    match load_str("t.yaml", text, &LoadOptions::default()) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e,
    }
}

fn one_err(text: &str) -> ConfigError {
    let mut e = load_err(text);
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

use sonde_testkit::runtime;

// ---- item 4: the loader ----------------------------------------------------------------------

/// A connection's inbox keeps frames up to `max_frame_size`, recording their length in 32 bits:
/// a limit past 1 GiB is refused at load, with its place, rather than fail a connection later.
#[test]
fn a_max_frame_size_past_one_gib_is_a_load_error() {
    for (conn, at) in [
        ("ws.connect: {url: \"ws://127.0.0.1:1/\", as: c, max_frame_size: 5GiB}", 4),
        ("tcp.connect: {target: \"127.0.0.1:1\", as: c, framing: {lines: lf}, max_frame_size: 5GiB}", 4),
    ] {
        let yaml = format!(
            "scenario: s\nsession: persistent\nsetup:\n  - {conn}\nsteps:\n  - ws.close: {{on: c}}\n"
        );
        let e = one_err(&yaml);
        assert_eq!(e.line, at, "{e}");
        assert!(e.message.contains("expected at most 1GiB"), "{e}");
    }
    let ok = "scenario: s\nsession: persistent\nsetup:\n  - ws.connect: {url: \"ws://127.0.0.1:1/\", as: c, max_frame_size: 1GiB}\nsteps:\n  - ws.close: {on: c}\n";
    assert!(load_str("t.yaml", ok, &LoadOptions::default()).is_ok());
}

#[test]
fn non_ascii_in_hex_base64_and_status_is_an_error_not_a_panic() {
    let ws = |payload: &str| {
        format!(
            "scenario: s\nsession: persistent\nsetup:\n  - ws.connect: {{url: \"ws://127.0.0.1:1/\", as: c}}\nsteps:\n  - ws.send: {{on: c, {payload}}}\n"
        )
    };
    let e = one_err(&ws("hex: \"aéb\""));
    assert_eq!((e.line, e.column), (6, 27), "{e}");
    assert!(e.message.starts_with("invalid hex"), "{e}");
    for payload in [
        "hex: \"é\"",
        "hex: \"éé\"",
        "hex: \"0a€\"",
        "base64: \"é=\"",
    ] {
        let e = one_err(&ws(payload));
        assert_eq!(e.line, 6, "{payload}: {e}");
    }
    let e =
        one_err("scenario: s\nhttp: {url: \"http://127.0.0.1:1/\"}\nexpect: {status: \"2é\"}\n");
    assert_eq!(e.line, 3, "{e}");
}

#[test]
fn deep_brackets_are_refused_before_the_yaml_scanner_with_the_limit_named() {
    // 20,000 levels took 8 s in the quadratic scanner (a debug build) and ended in its
    // recursion error; 100,000 took 209 s.
    let n = 20_000;
    let text = format!(
        "scenario: s\nvars:\n  a: {}{}\nhttp: {{url: \"http://127.0.0.1:1/\"}}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let e = one_err(&text);
    assert_eq!((e.line, e.column), (3, 6 + 64), "{e}");
    assert!(
        e.message.contains("nested more than 64 levels"),
        "{}",
        e.message
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn files_and_scenario_counts_are_capped_with_the_limit_named() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = String::from("scenarios:\n");
    for i in 0..100 {
        text.push_str(&format!(
            "  - scenario: s{i}\n    http: {{url: \"http://127.0.0.1:1/\"}}\n"
        ));
    }
    write(&big, &text);
    assert!(text.len() > 4096);
    let opts = |max_file_bytes, max_scenarios| LoadOptions {
        limits: Limits {
            max_file_bytes,
            max_scenarios,
        },
        ..Default::default()
    };
    let errors = load_all(std::slice::from_ref(&big), &opts(4096, 1000))
        .err()
        .expect("too large");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].to_string().contains(
            "larger than 4 KiB — expected a configuration file within --config.max-file-size"
        ),
        "{}",
        errors[0]
    );
    // A device that never ends is refused at the cap too, not read into memory.
    let errors = load_all(&[PathBuf::from("/dev/zero")], &opts(4096, 1000))
        .err()
        .expect("too large");
    assert!(
        errors[0].message.contains("larger than 4 KiB"),
        "{errors:?}"
    );

    let errors = load_all(std::slice::from_ref(&big), &opts(1 << 20, 50))
        .err()
        .expect("too many");
    assert!(
        errors.iter().any(|e| e
            .message
            .contains("more than 50 scenarios — expected at most --config.max-scenarios 50")),
        "{errors:?}"
    );
    assert_eq!(
        load_all(&[big], &opts(1 << 20, 100))
            .map(|l| l.config.scenarios.len())
            .ok(),
        Some(100)
    );

    // The flags, from the command line.
    let out = std::process::Command::new(SONDE)
        .args(["check", "--config.max-file-size", "4KiB"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than 4 KiB"), "{stderr}");
}

// ---- item 3: templates -----------------------------------------------------------------------

fn var_template(t: &str) -> String {
    format!("scenario: s\nvars:\n  a: \"{t}\"\nhttp: {{url: \"http://127.0.0.1:1/{{{{ a }}}}\"}}\n")
}

#[test]
fn hostile_templates_end_at_load_with_a_located_budget_error() {
    // The 189-byte file of the report: three nested range(100000), which kept `sonde check`
    // busy past 60 s.
    let nested = "{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}";
    let e = one_err(&var_template(nested));
    assert_eq!((e.line, e.column), (3, 6), "{e}");
    assert!(e.message.contains("exceeds its budget"), "{e}");

    // `{% set s='a'*1000000 %}` ×100,000 reached 3 GB, then aborted.
    let sets = "{% set s='a'*1000000 %}".repeat(100_000);
    let e = one_err(&var_template(&sets));
    assert_eq!((e.line, e.column), (3, 6), "{e}");
    assert!(e.message.contains("exceeds its budget"), "{}", e.message);
    assert!(
        e.message.len() < 600,
        "the message quotes a bounded part of the template"
    );

    // Within the work budget, but a result too large for a URL, header or body.
    let e = one_err(&var_template("{{ 'a' * 2000000 }}"));
    assert!(e.message.contains("renders 2000000 bytes"), "{e}");

    // range(1e9) was reported as "undefined template variable `range`".
    let e = one_err(&var_template(
        "{% for i in range(1000000000) %}{% endfor %}",
    ));
    assert!(e.message.contains("range has too many elements"), "{e}");
    assert!(!e.message.contains("undefined"), "{e}");

    // Many such templates in one file share the document's budget: the ones past it are
    // refused without running (before, each ran its own loops: minutes for a large file).
    let mut many = String::from("scenarios:\n");
    for i in 0..200 {
        many.push_str(&format!(
            "  - scenario: s{i}\n    vars: {{a: \"{nested}\"}}\n    tcp: {{target: \"127.0.0.1:1\"}}\n"
        ));
    }
    let errors = load_err(&many);
    assert_eq!(errors.len(), 200, "{errors:?}");
    assert!(
        errors[0].message.contains("exceeds its budget"),
        "{}",
        errors[0]
    );
    assert!(
        errors[199]
            .message
            .starts_with("the templates of this document together exceed their budget of 20000000"),
        "{}",
        errors[199]
    );

    // The same at a step string (checked, then rendered at load).
    let e = one_err(&format!(
        "scenario: s\nhttp:\n  url: \"http://127.0.0.1:1/{nested}\"\n"
    ));
    assert_eq!((e.line, e.column), (3, 8), "{e}");
    assert!(e.message.contains("exceeds its budget"), "{e}");
}

#[test]
fn a_per_run_template_over_budget_fails_its_step_while_a_healthy_scenario_keeps_its_schedule() {
    let rt = runtime();
    let target = rt.block_on(HttpServer::start(
        Routes::new()
            .at("/healthy", Reply::text(200, "ok"))
            .at("/hostile", Reply::text(200, "ok")),
    ));
    // uuid() makes the step render per run; the loops would run 10^10 times unbounded (before
    // the fix one such run stalled an async worker for as long as it ran).
    let hostile =
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let yaml = format!(
        r#"
scenarios:
  - scenario: healthy
    interval: 200ms
    timeout: 200ms
    http: {{url: "{healthy}"}}
  - scenario: hostile
    interval: 1s
    timeout: 1s
    http: {{url: "{target}?id={{{{ uuid() }}}}{hostile}"}}
"#,
        healthy = target.url("/healthy"),
        target = target.url("/hostile"),
    );
    let serve = Serve::command(SONDE).config_yaml("s.yaml", &yaml).start();
    let healthy_runs = || {
        target
            .requests()
            .iter()
            .filter(|r| r.path == "/healthy")
            .count()
    };
    serve.wait_runs("hostile", 1);
    let before = healthy_runs();
    let window = Duration::from_secs(4);
    std::thread::sleep(window);
    let during = healthy_runs() - before;
    // 20 are due in the window; half of them is far from any scheduling jitter, and far above
    // what a stalled runtime manages (none).
    assert!(
        during >= 10,
        "the healthy scenario ran {during} times in {window:?} (20 due)\n{}",
        serve.log()
    );
    let doc = serve.scenario("hostile");
    let message = doc["last_run"]["steps"][0]["failure"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("exceeds its budget"),
        "hostile's last run: {doc}"
    );
    assert!(
        target.requests().iter().all(|r| r.path != "/hostile"),
        "the over-budget step must not be sent"
    );
    drop(serve);
}

// ---- item 2: trust -----------------------------------------------------------------------------

#[test]
fn file_is_confined_to_the_scenario_folder_or_the_file_root() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("scenarios");
    std::fs::create_dir(&dir).unwrap();
    write(&dir.join("token"), "inside-value-1234\n");
    write(&top.path().join("outside"), "outside-value-5678\n");
    std::os::unix::fs::symlink(top.path().join("outside"), dir.join("link")).unwrap();
    let outside_abs = top.path().join("outside");
    let scenario = |expr: &str| {
        format!(
            "scenario: s\nhttp:\n  url: \"http://127.0.0.1:1/\"\n  headers: {{x-v: \"{{{{ file('{expr}') }}}}\"}}\n"
        )
    };
    let file = dir.join("s.yaml");
    let load = |expr: &str, root: Option<&Path>| {
        write(&file, &scenario(expr));
        let opts = LoadOptions {
            file_root: root.map(Path::to_path_buf),
            ..Default::default()
        };
        load_all(std::slice::from_ref(&file), &opts)
    };
    assert!(load("token", None).is_ok());
    for expr in [
        "../outside",
        "link",
        outside_abs.to_str().unwrap(),
        "/etc/hostname",
    ] {
        let errors = load(expr, None)
            .err()
            .unwrap_or_else(|| panic!("{expr} loaded"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!((e.line, e.column), (4, 18), "{e}");
        assert!(
            e.message.contains("is outside")
                && e.message.contains("file() reads only files below the scenario file's folder (or --config.file-root)"),
            "{expr}: {e}"
        );
        assert!(!e.message.contains("outside-value"), "{e}");
    }
    // A wider root lets `..` in, still below it; the symlink too, since its target is inside.
    assert!(load("../outside", Some(top.path())).is_ok());
    assert!(load("link", Some(top.path())).is_ok());
    let errors = load("/etc/hostname", Some(top.path()))
        .err()
        .expect("outside");
    assert!(errors[0].message.contains("is outside"), "{errors:?}");
}

#[test]
fn a_config_from_a_url_gets_no_file_and_no_env_and_its_probe_never_leaves() {
    let rt = runtime();
    let target = rt.block_on(HttpServer::start(
        Routes::new().at("/*", Reply::text(200, "ok")),
    ));
    let t = target.url("/x");
    let yaml = format!(
        r#"
scenarios:
  - scenario: etc
    http: {{url: "{t}?v={{{{ file('/etc/hostname') | urlencode }}}}"}}
  - scenario: dotdot
    http: {{url: "{t}?v={{{{ file('../../x') | urlencode }}}}"}}
  - scenario: home
    http: {{url: "{t}?v={{{{ env.HOME | urlencode }}}}"}}
  - scenario: home-var
    vars: {{h: "{{{{ env.HOME }}}}"}}
    http: {{url: "{t}?v={{{{ h }}}}"}}
"#
    );
    let config = rt.block_on(HttpServer::start(
        Routes::new().at("/s.yaml", Reply::text(200, yaml)),
    ));
    // Before the fix each of these loaded and was sent: make `../../x` exist from sonde's
    // working folder, so only the trust rules stand between the document and the canaries.
    let cwd = tempfile::tempdir().unwrap();
    let deep = cwd.path().join("a/b");
    std::fs::create_dir_all(&deep).unwrap();
    write(&cwd.path().join("x"), "file-canary-4711\n");
    let serve = Serve::command(SONDE)
        .arg("-c")
        .arg(config.url("/s.yaml"))
        .env("HOME", "/home/sonde-test-canary")
        .current_dir(&deep)
        .spawn();
    let (code, log) = serve.wait_exit();
    assert_eq!(code, Some(2), "{log}");
    let file_rule = "file() is not available to a configuration loaded from a URL";
    let env_rule =
        "environment variable `HOME` is not available to a configuration loaded from a URL";
    for (line, rule) in [
        (4, file_rule),
        (6, file_rule),
        (8, env_rule),
        (10, env_rule),
    ] {
        let at = format!("{}:{line}:", config.url("/s.yaml"));
        assert!(
            log.lines().any(|l| l.contains(&at) && l.contains(rule)),
            "no {at} … {rule}:\n{log}"
        );
    }
    assert!(!log.contains("sonde-test-canary"), "{log}");
    assert!(!log.contains("file-canary"), "{log}");
    assert!(
        target.requests().is_empty(),
        "the target received {:?}",
        target.requests()
    );
    assert!(!config.requests().is_empty(), "the document was fetched");
}

#[test]
fn env_names_allowed_with_remote_env_reach_a_config_from_a_url() {
    let rt = runtime();
    let target = rt.block_on(HttpServer::start(
        Routes::new().at("/*", Reply::text(200, "ok")),
    ));
    let yaml = format!(
        "scenario: allowed\ninterval: 1s\nhttp: {{url: \"{}?v={{{{ env.SONDE_T17_ALLOWED }}}}\"}}\n",
        target.url("/x")
    );
    let config = rt.block_on(HttpServer::start(
        Routes::new().at("/s.yaml", Reply::text(200, yaml)),
    ));
    let serve = Serve::command(SONDE)
        .arg("-c")
        .arg(config.url("/s.yaml"))
        .arg("--config.remote-env")
        .arg("SONDE_T17_ALLOWED")
        .env("SONDE_T17_ALLOWED", "granted")
        .start();
    serve.wait_runs("allowed", 0);
    let seen = target.requests();
    assert!(
        seen.iter().any(|r| r.uri == "/x?v=granted"),
        "{seen:?}\n{}",
        serve.log()
    );
}

#[test]
fn an_agent_document_from_a_url_may_not_name_files_on_the_agent() {
    let rt = runtime();
    let push = rt.block_on(HttpServer::start(
        Routes::new().at("/*", Reply::status(204)),
    ));
    let agent = format!(
        "agent:\n  remote_write:\n    url: {}\n    send_interval: 1s\n    bearer_token_file: /etc/hostname\n",
        push.url("/push")
    );
    let config = rt.block_on(HttpServer::start(
        Routes::new().at("/agent.yaml", Reply::text(200, agent)).at(
            "/s.yaml",
            Reply::text(200, "scenario: s\ntcp: {target: \"127.0.0.1:1\"}\n"),
        ),
    ));
    let serve = Serve::command(SONDE)
        .arg("-c")
        .arg(config.url("/agent.yaml"))
        .arg("-c")
        .arg(config.url("/s.yaml"))
        .spawn();
    let (code, log) = serve.wait_exit();
    assert_eq!(code, Some(2), "{log}");
    let at = format!(
        "{}:5:5: `bearer_token_file` names a file on the agent",
        config.url("/agent.yaml")
    );
    assert!(log.contains(&at), "no {at}:\n{log}");
    assert!(push.requests().is_empty(), "{:?}", push.requests());
}
