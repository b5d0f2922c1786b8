//! Reusable step groups (issue 12, item 2): a login written once and used for two users, in the
//! file or in an included one; expanded steps in the trace; every mistake a located load error
//! that points at both the use and the definition.

use std::sync::Arc;

use sonde::config::scenario::Scenario;
use sonde::config::{load_all, load_str, LoadOptions};
use sonde::engine;
use sonde_testkit::ws::{WsOptions, WsServer};

fn load_one(yaml: &str) -> Arc<Scenario> {
    let cfg = load_str("t.yaml", yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("invalid: {e:?}"));
    cfg.scenarios[0].clone()
}

/// The load errors of `yaml`, one line each.
fn errors(yaml: &str) -> Vec<String> {
    match load_str("t.yaml", yaml, &LoadOptions::default()) {
        Ok(_) => panic!("expected load errors"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

const GROUP: &str = r#"groups:
  hello:
    params: {who: null, greeting: hi}
    steps:
      - name: open
        ws.connect: {as: "{{ who }}", url: "{{ url }}"}
      - name: say
        ws.send: {on: "{{ who }}", text: "{{ greeting }} from {{ who | upper }}"}
      - ws.expect: {on: "{{ who }}", match: {equals: "{{ greeting }} from {{ who | upper }}"}, within: 1s}
"#;

#[tokio::test]
async fn a_group_used_twice_runs_under_the_names_of_its_uses() {
    let server = WsServer::start(WsOptions::default()).await;
    let yaml = format!(
        "scenario: pair\nvars: {{url: \"{}\"}}\n{GROUP}steps:\n  - use: hello\n    with: {{who: alice}}\n  - use: hello\n    with: {{who: bob, greeting: hey}}\n    name: second\n  - ws.close: {{on: alice}}\n",
        server.url("/")
    );
    let sc = load_one(&yaml);
    let names: Vec<&str> = sc.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hello[alice] › open",
            "hello[alice] › say",
            "hello[alice] › ws.expect",
            "second › open",
            "second › say",
            "second › ws.expect",
            "ws.close",
        ]
    );
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    let trace = r.to_json(&sc).to_string();
    // Arguments and defaults reached the templates, expressions (`| upper`) included.
    assert!(trace.contains("hi from ALICE"), "{trace}");
    assert!(trace.contains("hey from BOB"), "{trace}");
    assert_eq!(server.connections(), 2);
}

#[test]
fn mistakes_inside_a_group_point_at_the_use_and_the_definition() {
    let yaml = r#"scenario: bad
groups:
  login:
    params: [user]
    steps:
      - ws.connect: {as: "{{ user }}", url: "http://not-ws"}
steps:
  - use: login
    with: {user: alice}
"#;
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:8:5: in group `login` at t.yaml:6:"),
        "{e:?}"
    );
    assert!(
        e[0].contains("expected an absolute ws:// or wss:// URL"),
        "{e:?}"
    );

    // A misspelt parameter: undefined, and the message lists the group's parameters.
    let e = errors(&yaml.replace("http://not-ws", "ws://127.0.0.1:1/{{ usr }}"));
    assert!(
        e[0].starts_with("t.yaml:8:5: in group `login` at t.yaml:6:")
            && e[0].contains("undefined template variable `usr`")
            && e[0].ends_with("; the group's parameters: user"),
        "{e:?}"
    );
}

#[test]
fn unknown_groups_parameters_and_missing_ones_are_located() {
    let yaml = r#"scenario: bad
groups:
  login:
    params: [user, password]
    steps:
      - sleep: 1ms
steps:
  - use: logni
  - use: login
    with: {user: a, pasword: x}
"#;
    let e = errors(yaml).join("\n");
    assert!(
        e.contains("t.yaml:8:10: unknown group `logni` — did you mean `login`?"),
        "{e}"
    );
    assert!(
        e.contains(
            "t.yaml:10:21: unknown parameter `pasword` of group `login` — did you mean `password`?"
        ),
        "{e}"
    );
    assert!(
        e.contains("t.yaml:9:10: group `login` needs parameter `password` — expected it under `with:` (parameters: user, password; defined at t.yaml:3:"),
        "{e}"
    );
}

#[test]
fn a_group_that_uses_itself_is_a_load_error() {
    let yaml = r#"scenario: loop
groups:
  a:
    steps:
      - use: b
  b:
    steps:
      - sleep: 1ms
      - use: a
steps:
  - use: a
"#;
    let e = errors(yaml).join("\n");
    assert!(e.contains("t.yaml:11:5:"), "{e}");
    assert!(
        e.contains("group `a` uses itself (a → b → a) — expected groups that do not recurse"),
        "{e}"
    );
}

#[test]
fn connection_names_from_arguments_are_checked_too() {
    let yaml = r#"scenario: conn
groups:
  talk:
    params: [on]
    steps:
      - ws.send: {on: "{{ on }}", text: hi}
steps:
  - ws.connect: {as: bob, url: "ws://127.0.0.1:1/"}
  - use: talk
    with: {on: bobby}
"#;
    let e = errors(yaml).join("\n");
    assert!(
        e.contains("t.yaml:9:5: in group `talk` at t.yaml:6:"),
        "{e}"
    );
    assert!(
        e.contains("connection `bobby`, which no step opens — did you mean `bob`?"),
        "{e}"
    );
}

#[test]
fn groups_can_live_in_an_included_file_below_the_scenario() {
    let dir = std::env::temp_dir().join(format!("sonde-groups-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("shared")).unwrap();
    std::fs::write(
        dir.join("shared/wait.yaml"),
        "groups:\n  pause:\n    params: {for: 1ms}\n    steps:\n      - sleep: \"{{ for }}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("s.yaml"),
        "scenario: inc\ninclude: [shared/wait.yaml]\nsteps:\n  - use: pause\n  - use: pause\n    with: {for: 2ms}\n",
    )
    .unwrap();
    let loaded = load_all(&[dir.join("s.yaml")], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let names: Vec<&str> = loaded.config.scenarios[0]
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["pause[1ms] › sleep", "pause[2ms] › sleep"]);

    // Outside the scenario's folder: refused, by the file-root rules of file().
    std::fs::write(
        dir.join("shared/out.yaml"),
        "scenario: out\ninclude: [../../escape.yaml]\nsteps:\n  - sleep: 1ms\n",
    )
    .unwrap();
    let e = load_all(&[dir.join("shared/out.yaml")], &LoadOptions::default())
        .err()
        .map(|e| {
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert!(
        e.contains("out.yaml:2:11: cannot include \"../../escape.yaml\""),
        "{e}"
    );

    // A mistake in the included file names that file's line, at the use.
    std::fs::write(
        dir.join("shared/wait.yaml"),
        "groups:\n  pause:\n    steps:\n      - sleep: 1ms\n        colour: red\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("s.yaml"),
        "scenario: inc\ninclude: [shared/wait.yaml]\nsteps:\n  - use: pause\n",
    )
    .unwrap();
    let e = load_all(&[dir.join("s.yaml")], &LoadOptions::default())
        .err()
        .map(|e| {
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert!(e.contains("s.yaml:4:5: in group `pause` at "), "{e}");
    assert!(e.contains("wait.yaml:5:9: unknown key `colour`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_schema_knows_groups_and_uses() {
    let schema = sonde::schema::scenario_file_schema().to_string();
    for word in [
        "\"groups\"",
        "\"include\"",
        "\"use\"",
        "\"params\"",
        "\"with\"",
    ] {
        assert!(schema.contains(word), "{word} missing from the schema");
    }
}

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod chat_server;

/// The example in docs/scenario-format.md's "Step groups" runs as written against the example
/// chat server (only its URL changed).
#[tokio::test]
async fn the_documented_example_runs() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/scenario-format.md"
    ))
    .unwrap();
    let start = doc
        .find("```yaml\nscenario: two-users-echo")
        .expect("the example is in the docs");
    let block = &doc[start + "```yaml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = chat_server::start(listener, Default::default());
    let sc = load_one(&block.replace("ws://127.0.0.1:9300/chat", &server.url()));
    let mut session = sonde::runtime::session::Session::default();
    let (_, r) = session.run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    let names: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names[0], "login[alice] › connect");
    assert_eq!(names[3], "bob-login › connect");
    assert_eq!(server.logged_in(), 2);
    session.end(&sc).await;
}

/// Hostile input: groups that use groups many times each would multiply into millions of
/// steps; the expansion stops at 1,000 with a located error instead of exhausting memory.
#[test]
fn an_expansion_that_multiplies_is_bounded() {
    let uses = |g: &str| format!("      - use: {g}\n").repeat(30);
    let yaml = format!(
        "scenario: bomb\ngroups:\n  a:\n    steps:\n{}  b:\n    steps:\n{}  c:\n    steps:\n{}  d:\n    steps:\n{}steps:\n  - use: a\n",
        uses("b"),
        uses("c"),
        uses("d"),
        "      - sleep: 1ms\n".repeat(30),
    );
    let e = errors(&yaml);
    assert!(
        e.iter()
            .any(|e| e.contains("more than 1000 steps once groups are expanded")),
        "{e:?}"
    );
    assert!(
        e.len() < 20,
        "one error per level, not one per step: {}",
        e.len()
    );
}

/// A file of groups only, in a folder loaded whole (`-c scenarios/`), is a library for
/// `include:`, not a scenario file with no scenario; its groups are checked all the same.
#[test]
fn a_groups_file_in_a_loaded_folder_is_a_library() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lib.yaml"),
        "groups:\n  pause:\n    steps:\n      - sleep: 1ms\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        "scenario: s\ninclude: [lib.yaml]\nsteps:\n  - use: pause\n",
    )
    .unwrap();
    let loaded = load_all(&[dir.path().to_path_buf()], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(loaded.config.scenarios.len(), 1);
    std::fs::write(
        dir.path().join("lib.yaml"),
        "groups:\n  pause:\n    stepz: []\n",
    )
    .unwrap();
    let e = load_all(&[dir.path().to_path_buf()], &LoadOptions::default())
        .err()
        .map(|e| {
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert!(e.contains("lib.yaml:3:"), "the library's own error: {e}");
}

/// Secrets read in a shared or included group (`env.NAME`, a `password:` key) are the using
/// scenario's secrets: redacted from its traces like its own.
#[tokio::test]
async fn secrets_inside_shared_groups_are_redacted() {
    std::env::set_var("SONDE_GROUP_SECRET", "grp-secret-8812");
    let server = WsServer::start(WsOptions::default()).await;
    let yaml = format!(
        r#"groups:
  hello:
    params: [who]
    steps:
      - ws.connect: {{as: "{{{{ who }}}}", url: "{url}"}}
      - ws.send: {{on: "{{{{ who }}}}", text: "key={{{{ env.SONDE_GROUP_SECRET }}}}"}}
      - ws.expect: {{on: "{{{{ who }}}}", match: {{contains: "key="}}, within: 1s}}
      - ws.send: {{on: "{{{{ who }}}}", json: {{user: x, password: lit-pass-4471}}}}
      - ws.expect: {{on: "{{{{ who }}}}", match: {{contains: "user"}}, within: 1s}}
scenarios:
  - scenario: shared
    steps:
      - use: hello
        with: {{who: a}}
"#,
        url = server.url("/")
    );
    let sc = load_one(&yaml);
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    let trace = r.to_json(&sc).to_string();
    assert!(!trace.contains("grp-secret-8812"), "{trace}");
    assert!(!trace.contains("lit-pass-4471"), "{trace}");
    assert!(trace.contains("<redacted>"), "{trace}");
}
