//! The `tcp.*` steps end to end against in-process peers (127.0.0.1 only): every framing mode,
//! protobuf frames from a `.proto` compiled at load, STARTTLS (and its injection refusal),
//! hostile peers (half a frame then silence, an absurd length prefix, garbage), closing what the
//! peer closed, heartbeats, and a persistent session that loses its connection and reconnects.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sonde::config::scenario::Scenario;
use sonde::config::{load_paths, load_str, LoadOptions};
use sonde::engine::{self, RunReport};
use sonde::metrics::{Format, Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde_probes::FailureReason;
use sonde_testkit::framed::{FramedServer, WireFraming};
use sonde_testkit::lines::LineServer;
use sonde_testkit::pki;
use tokio::time::Instant;

fn load_one(yaml: &str) -> Arc<Scenario> {
    let cfg = load_str("t.yaml", yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("invalid: {e:?}\n{yaml}"));
    cfg.scenarios[0].clone()
}

/// The load errors of `files` written to a fresh folder (the scenario is `s.yaml`).
fn load_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Arc<Scenario>, String>) {
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in files {
        std::fs::write(dir.path().join(n), t).unwrap();
    }
    let r = load_paths(&[dir.path().join("s.yaml")], &LoadOptions::default())
        .map(|c| c.scenarios[0].clone())
        .map_err(|e| {
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        });
    (dir, r)
}

fn facts(r: &RunReport, step: &str) -> serde_json::Value {
    let s = r.steps.iter().find(|s| s.name == step).unwrap();
    serde_json::to_value(&s.facts).unwrap()
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let guard = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            Instant::now() < guard,
            "hang guard: still waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connect with `framing` (YAML flow mapping), send `hello`, expect it back after the noise.
async fn echo_round_trip(server: &FramedServer, framing: &str) -> RunReport {
    let sc = load_one(&format!(
        r#"scenario: echo
steps:
  - tcp.connect: {{as: c, target: "{}", framing: {framing}}}
  - tcp.send: {{on: c, text: hello}}
  - name: back
    tcp.expect: {{on: c, match: {{equals: hello}}, within: 2s}}
  - tcp.close: {{on: c}}
"#,
        server.target()
    ));
    engine::run(&sc).await
}

#[tokio::test]
async fn every_framing_mode_round_trips_and_skips_noise() {
    let modes: Vec<(WireFraming, &str)> = vec![
        (WireFraming::Lines { crlf: false }, "{lines: lf}"),
        (WireFraming::Lines { crlf: true }, "{lines: crlf}"),
        (
            WireFraming::Delimiter(b"\0".to_vec()),
            "{delimiter_hex: '00'}",
        ),
        (WireFraming::Delimiter(b"||".to_vec()), "{delimiter: '||'}"),
        (WireFraming::Fixed(5), "{fixed: 5}"),
        (
            WireFraming::Length {
                width: 1,
                little: false,
                includes_header: false,
                header: vec![],
            },
            "{length: {bytes: 1}}",
        ),
        (
            WireFraming::Length {
                width: 2,
                little: true,
                includes_header: false,
                header: vec![],
            },
            "{length: {bytes: 2, endian: little}}",
        ),
        (
            WireFraming::Length {
                width: 4,
                little: false,
                includes_header: true,
                header: vec![],
            },
            "{length: {bytes: 4, includes_header: true}}",
        ),
        (
            WireFraming::Length {
                width: 8,
                little: true,
                includes_header: true,
                header: vec![0xca, 0xfe],
            },
            "{length: {bytes: 8, endian: little, includes_header: true, header_hex: cafe}}",
        ),
        (
            WireFraming::Length {
                width: 2,
                little: false,
                includes_header: false,
                header: vec![0, 0, 0],
            },
            "{length: {bytes: 2, offset: 3}}",
        ),
    ];
    for (wire, yaml) in modes {
        let server = FramedServer::echo(wire.clone()).await;
        let r = echo_round_trip(&server, yaml).await;
        assert!(r.success(), "{yaml}: {:?}", r.failure());
        assert_eq!(server.received(), vec![b"hello".to_vec()], "{yaml}");
        let f = facts(&r, "back");
        assert_eq!(f["skipped_count"], 1, "{yaml}: {f}");
        assert_eq!(f["matched"], "hello", "{yaml}: {f}");
    }
}

/// Send → matching frame is the expect's processing phase, timed by the kernel on Linux (the
/// step's duration is then that figure) and by user space elsewhere; the trace gives both.
fn assert_send_to_match(r: &RunReport, sc: &Scenario, step: &str) {
    let trace = r.to_json(sc).to_string();
    let s = r.steps.iter().find(|s| s.name == step).unwrap();
    let processing = sonde_probes::Phase::Processing;
    if cfg!(target_os = "linux") {
        let kernel = s.timings.kernel(processing);
        assert!(kernel.is_some(), "{step}: {trace}");
        assert_eq!(Some(s.duration), kernel, "{step}: {trace}");
        assert!(trace.contains("send to match: kernel"), "{step}: {trace}");
    } else {
        assert!(trace.contains("send to match:"), "{step}: {trace}");
    }
    assert!(s.timings.user_space(processing) >= s.duration, "{trace}");
}

#[tokio::test]
async fn send_to_match_is_timed_by_the_kernel() {
    // As `sonde` does at start-up (exit::runtime): the kernel stamps packets before the first
    // probe, so the first message's receive is stamped even when the switch is slow to flip.
    sonde_probes::kts::warm_up();
    let server = FramedServer::echo(WireFraming::Lines { crlf: false }).await;
    let sc = load_one(&format!(
        r#"scenario: echo
steps:
  - tcp.connect: {{as: c, target: "{}", framing: {{lines: lf}}}}
  - tcp.send: {{on: c, text: hello}}
  - name: back
    tcp.expect: {{on: c, match: {{equals: hello}}, within: 2s}}
  - tcp.send: {{on: c, text: again, raw: true}}
  - tcp.send: {{on: c, text: "\n", raw: true}}
  - name: again
    tcp.expect: {{on: c, match: {{equals: again}}, within: 2s}}
  - tcp.close: {{on: c}}
"#,
        server.target()
    ));
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    assert_send_to_match(&r, &sc, "back");
    // Sent outside the framing in two writes: timed from the last one, which completed it.
    assert_send_to_match(&r, &sc, "again");
}

const CHAT_PROTO: &str = r#"syntax = "proto3";
package chat;
message Frame {
  oneof kind { Login login = 1; Deliver deliver = 2; }
  uint64 seq = 3;
}
message Login { string user = 1; string token = 2; }
message Deliver { string from = 1; string text = 2; }
"#;

#[tokio::test]
async fn protobuf_frames_are_sent_from_yaml_and_matched_as_json() {
    let server = FramedServer::echo(WireFraming::Length {
        width: 4,
        little: false,
        includes_header: false,
        header: vec![],
    })
    .await;
    let yaml = format!(
        r#"scenario: pb
steps:
  - tcp.connect:
      as: c
      target: "{}"
      framing: {{length: {{bytes: 4}}}}
      proto_file: chat.proto
      message: chat.Frame
  - tcp.send:
      on: c
      proto_file: chat.proto
      message: chat.Frame
      protobuf: {{login: {{user: alice, token: t0k3n}}, seq: 41}}
  - name: back
    tcp.expect:
      on: c
      match: {{json: {{"$.login.user": alice, "$.seq": 41}}}}
      within: 2s
      capture: {{tok: {{json: "$.login.token"}}}}
  - tcp.send:
      on: c
      proto_file: chat.proto
      message: chat.Frame
      protobuf: {{deliver: {{from: "{{{{ tok }}}}", text: hi}}}}
  - name: second
    tcp.expect: {{on: c, match: {{json: {{"$.deliver.from": t0k3n}}}}, within: 2s}}
"#,
        server.target()
    );
    let (_dir, sc) = load_dir(&[("s.yaml", &yaml), ("chat.proto", CHAT_PROTO)]);
    let sc = sc.unwrap();
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    // What went on the wire is the protobuf encoding, not JSON.
    let sent = &server.received()[0];
    assert_eq!(sent[0], 0x0a, "field 1, length-delimited: {sent:?}");
    assert!(!sent.starts_with(b"{"));
    let f = facts(&r, "back");
    assert!(
        f["matched"]
            .as_str()
            .unwrap()
            .contains("\"user\":\"alice\""),
        "{f}"
    );
    // The noise frame is not a chat.Frame: skipped, and the trace says why.
    let skipped = f["skipped"][0].as_str().unwrap();
    assert!(skipped.contains("5 bytes"), "{skipped}");
}

#[test]
fn protobuf_mistakes_are_load_errors_with_positions() {
    let scenario = |send: &str| {
        format!(
            "scenario: pb\nsteps:\n  - tcp.connect: {{as: c, target: \"127.0.0.1:9\", proto_file: chat.proto, message: chat.Frame}}\n  - tcp.send:\n      on: c\n      proto_file: chat.proto\n      message: chat.Frame\n      protobuf:\n        {send}\n"
        )
    };
    // A field that the message does not have: pointed at in the YAML.
    let (_d, r) = load_dir(&[
        ("s.yaml", &scenario("login: {usr: alice}")),
        ("chat.proto", CHAT_PROTO),
    ]);
    let e = r.unwrap_err();
    assert!(
        e.contains("s.yaml:9:22: unrecognized field name 'usr'"),
        "{e}"
    );
    assert!(
        e.contains("expected a field of chat.Login: user, token"),
        "{e}"
    );
    // Also in a send built per run (its values are templates): the names are checked at load.
    let (_d, r) = load_dir(&[
        ("s.yaml", &scenario("deliver: {form: \"{{ uuid() }}\"}")),
        ("chat.proto", CHAT_PROTO),
    ]);
    let e = r.unwrap_err();
    assert!(
        e.contains("s.yaml:9:25: unrecognized field name 'form'"),
        "{e}"
    );
    assert!(e.contains("chat.Deliver: from, text"), "{e}");
    // A type the file does not define.
    let (_d, r) = load_dir(&[
        (
            "s.yaml",
            &scenario("login: {user: a}").replace(
                "message: chat.Frame\n      protobuf",
                "message: chat.Nope\n      protobuf",
            ),
        ),
        ("chat.proto", CHAT_PROTO),
    ]);
    let e = r.unwrap_err();
    assert!(
        e.contains("s.yaml:7:16") && e.contains("chat.Nope") && e.contains("chat.Frame"),
        "{e}"
    );
    // A syntax error in the .proto: the YAML position and the .proto's own line and column.
    let bad = CHAT_PROTO.replace("string user = 1;", "string user = 1");
    let (_d, r) = load_dir(&[
        ("s.yaml", &scenario("login: {user: a}")),
        ("chat.proto", &bad),
    ]);
    let e = r.unwrap_err();
    assert!(
        e.contains("s.yaml:3:61: invalid protobuf definition: "),
        "{e}"
    );
    assert!(e.contains("chat.proto:7:33: expected ';'"), "{e}");
    // A .proto outside the scenario's folder is refused, even when it exists.
    let top = tempfile::tempdir().unwrap();
    let inner = top.path().join("in");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(top.path().join("x.proto"), CHAT_PROTO).unwrap();
    std::fs::write(
        inner.join("s.yaml"),
        "scenario: pb\nsteps:\n  - tcp.connect: {as: c, target: \"127.0.0.1:9\", proto_file: ../x.proto, message: chat.Frame}\n",
    )
    .unwrap();
    let e = load_paths(&[inner.join("s.yaml")], &LoadOptions::default()).unwrap_err();
    let e = e[0].to_string();
    assert!(e.contains("s.yaml:3:61") && e.contains("is outside"), "{e}");
    // --config.file-root widens where files may be.
    let opts = LoadOptions {
        file_root: Some(top.path().to_path_buf()),
        ..Default::default()
    };
    assert!(load_paths(&[inner.join("s.yaml")], &opts).is_ok());
}

#[test]
fn framing_mistakes_are_load_errors() {
    for (framing, want) in [
        ("{lines: lf, fixed: 4}", "expected exactly one framing"),
        ("{length: {bytes: 3}}", "expected 1, 2, 4 or 8"),
        ("{fixed: 0}", "fixed frames of 0 bytes"),
        ("{delimiter: ''}", "an empty delimiter"),
        (
            "{length: {bytes: 2, offset: 1, header_hex: cafe}}",
            "expected them equal",
        ),
        ("{}", "no framing"),
        (
            "{fixed: 4}, heartbeat: {text: PING!, every: 1s}",
            "the heartbeat cannot be sent with fixed 4-byte frames: the frame is 5 bytes",
        ),
    ] {
        let e = load_str(
            "t.yaml",
            &format!("scenario: f\nsteps:\n  - tcp.connect: {{as: c, target: \"127.0.0.1:9\", framing: {framing}}}\n"),
            &LoadOptions::default(),
        )
        .unwrap_err();
        let e = e[0].to_string();
        assert!(e.starts_with("t.yaml:3:"), "{e}");
        assert!(e.contains(want), "{framing}: {e}");
    }
}

#[tokio::test]
async fn starttls_upgrades_mid_session_and_refuses_injected_plaintext() {
    // As `sonde` does at start-up (exit::runtime): the kernel stamps packets before the first
    // probe, so the first message's receive is stamped even when the switch is slow to flip.
    sonde_probes::kts::warm_up();
    let ca = pki::Ca::new("tcp test CA");
    let leaf = ca.leaf(&["localhost"], time::Duration::days(30), &[]);
    let yaml = |port: u16| {
        format!(
            r#"scenario: starttls
steps:
  - tcp.connect: {{as: m, target: "localhost:{port}", framing: {{lines: crlf}}, tls_config: {{ca_file: "{}"}}}}
  - tcp.expect: {{on: m, match: {{regex: "^220 "}}, within: 2s}}
  - tcp.send: {{on: m, text: EHLO probe}}
  - tcp.expect: {{on: m, match: {{equals: "250 HELP"}}, within: 2s}}
  - tcp.send: {{on: m, text: STARTTLS}}
  - tcp.expect: {{on: m, match: {{regex: "^220 "}}, within: 2s}}
  - name: upgrade
    tcp.starttls: {{on: m}}
    expect: {{cert_expires_in: {{gt: 1d}}}}
  - tcp.send: {{on: m, text: ECHO over tls}}
  - name: echo
    tcp.expect: {{on: m, match: {{equals: "250 over tls"}}, within: 2s}}
  - tcp.close: {{on: m}}
"#,
            ca.ca_file.display()
        )
    };
    let server = LineServer::smtp_starttls(&leaf).await;
    let sc = load_one(&yaml(server.port()));
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    assert_eq!(server.tls_handshakes(), 1);
    // Over TLS after the upgrade, frames are still timed by the kernel, and so is the upgrade's
    // handshake.
    assert_send_to_match(&r, &sc, "echo");
    if cfg!(target_os = "linux") {
        let up = r.steps.iter().find(|s| s.name == "upgrade").unwrap();
        assert!(
            up.timings.kernel(sonde_probes::Phase::Tls).is_some(),
            "{:#}",
            r.to_json(&sc)
        );
    }
    // A second upgrade of a TLS connection is refused (reason protocol).
    let twice = load_one(&yaml(server.port()).replace(
        "  - tcp.send: {on: m, text: ECHO over tls}",
        "  - name: again\n    tcp.starttls: {on: m}\n  - tcp.send: {on: m, text: ECHO over tls}",
    ));
    let r2 = engine::run(&twice).await;
    assert_eq!(
        r2.failed_step.as_deref(),
        Some("again"),
        "{:#}",
        r2.to_json(&twice)
    );
    assert!(r2.failure().unwrap().message.contains("already TLS"));
    let up = r.steps.iter().find(|s| s.name == "upgrade").unwrap();
    assert!(
        up.cert_not_after().is_some(),
        "the upgraded session's certificate is in the facts"
    );

    let hostile = LineServer::starttls_injection(&leaf).await;
    let sc = load_one(&yaml(hostile.port()));
    let r = engine::run(&sc).await;
    assert_eq!(
        r.failed_step.as_deref(),
        Some("upgrade"),
        "{:#}",
        r.to_json(&sc)
    );
    let f = r.failure().unwrap();
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(f.message.contains("STARTTLS injection"), "{}", f.message);
}

/// One expect on a connection to a peer that writes `bytes` and then stays silent.
async fn expect_from_raw(bytes: Vec<u8>, connect_extra: &str) -> RunReport {
    let server = FramedServer::raw(bytes, false).await;
    let sc = load_one(&format!(
        r#"scenario: hostile
steps:
  - tcp.connect: {{as: c, target: "{}", {connect_extra}}}
  - name: wait
    tcp.expect: {{on: c, match: {{contains: x}}, within: 500ms}}
"#,
        server.target()
    ));
    engine::run(&sc).await
}

#[tokio::test]
async fn half_a_frame_then_silence_times_out_saying_so() {
    // Announces 10 bytes, sends 3.
    let r = expect_from_raw(
        vec![0, 0, 0, 10, b'a', b'b', b'c'],
        "framing: {length: {bytes: 4}}",
    )
    .await;
    assert_eq!(r.failed_step.as_deref(), Some("wait"));
    let f = r.failure().unwrap();
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(
        f.message.contains("3 bytes of an unfinished frame"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn an_oversized_length_prefix_fails_the_connection_clearly() {
    let mut bytes = u64::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"xxxx");
    let r = expect_from_raw(
        bytes,
        "framing: {length: {bytes: 8}}, max_frame_size: 64KiB",
    )
    .await;
    let f = r.failure().unwrap();
    assert_eq!(f.reason, FailureReason::Protocol, "{}", f.message);
    assert!(
        f.message.contains("max_frame_size (65536 bytes)"),
        "{}",
        f.message
    );
    // The same for a delimiter that never comes.
    let r = expect_from_raw(
        vec![b'y'; 4096],
        "framing: {delimiter: '|'}, max_frame_size: 1KiB",
    )
    .await;
    let f = r.failure().unwrap();
    assert!(
        f.message.contains("without a frame delimiter"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn garbage_bytes_are_skipped_and_shown_not_matched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chat.proto"), CHAT_PROTO).unwrap();
    let server = FramedServer::raw(b"\xff\xfe\xfd\xfc garbage\n".to_vec(), false).await;
    let yaml = format!(
        "scenario: g\nsteps:\n  - tcp.connect: {{as: c, target: \"{}\", proto_file: chat.proto, message: chat.Frame}}\n  - name: wait\n    tcp.expect: {{on: c, match: {{json: {{\"$.seq\": 1}}}}, within: 500ms}}\n",
        server.target()
    );
    std::fs::write(dir.path().join("s.yaml"), yaml).unwrap();
    let cfg = load_paths(&[dir.path().join("s.yaml")], &LoadOptions::default()).unwrap();
    let r = engine::run(&cfg.scenarios[0]).await;
    let f = r.failure().unwrap();
    assert_eq!(f.reason, FailureReason::Timeout, "{}", f.message);
    assert!(
        f.message.contains("not a valid chat.Frame message"),
        "{}",
        f.message
    );
    // Hex shows binary frames as they are.
    let r = expect_from_raw(b"\x01\x02\xff\n".to_vec(), "payload: hex").await;
    let f = r.failure().unwrap();
    assert!(f.message.contains("0102ff"), "{}", f.message);
}

#[tokio::test]
async fn closing_what_the_peer_closed_passes_and_says_so() {
    let server = FramedServer::raw(b"bye\n".to_vec(), true).await;
    let sc = load_one(&format!(
        "scenario: c\nsteps:\n  - tcp.connect: {{as: c, target: \"{}\"}}\n  - tcp.expect: {{on: c, match: {{equals: bye}}, within: 2s}}\n  - sleep: 100ms\n  - name: close\n    tcp.close: {{on: c}}\n",
        server.target()
    ));
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    let f = facts(&r, "close");
    assert!(f["peer_close"].as_str().unwrap().contains("closed"), "{f}");
    // And a send on it fails, naming why.
    let sc = load_one(&format!(
        "scenario: c\nsteps:\n  - tcp.connect: {{as: c, target: \"{}\"}}\n  - tcp.expect: {{on: c, match: {{equals: bye}}, within: 2s}}\n  - sleep: 100ms\n  - name: send\n    tcp.send: {{on: c, text: more}}\n",
        server.target()
    ));
    let r = engine::run(&sc).await;
    assert_eq!(r.failed_step.as_deref(), Some("send"));
    assert!(r
        .failure()
        .unwrap()
        .message
        .contains("the server closed the connection"));
}

#[tokio::test]
async fn a_step_on_a_connection_no_step_opens_is_a_load_error() {
    // Since the load-time connection-name check (i12-watch, defect 6) this no longer reaches
    // the run: it is refused where `on:` is written.
    let yaml = "scenario: n\nsteps:\n  - tcp.send: {on: ghost, text: x}\n";
    let e = load_str("t.yaml", yaml, &LoadOptions::default()).unwrap_err();
    let m = format!("{e:?}");
    assert!(
        m.contains("tcp.send on connection `ghost`, which no step opens") && m.contains("line: 3"),
        "{m}"
    );
}

#[tokio::test]
async fn not_passes_on_silence_and_fails_on_a_matching_frame() {
    let server = FramedServer::echo(WireFraming::Lines { crlf: false }).await;
    let sc = load_one(&format!(
        "scenario: n\nsteps:\n  - tcp.connect: {{as: c, target: \"{}\"}}\n  - tcp.send: {{on: c, text: fine}}\n  - name: quiet\n    tcp.expect: {{on: c, not: {{contains: boom}}, within: 300ms}}\n  - tcp.send: {{on: c, text: boom}}\n  - name: loud\n    tcp.expect: {{on: c, not: {{contains: boom}}, within: 2s}}\n",
        server.target()
    ));
    let r = engine::run(&sc).await;
    assert_eq!(
        r.failed_step.as_deref(),
        Some("loud"),
        "{:#}",
        r.to_json(&sc)
    );
    let f = r.failure().unwrap();
    assert_eq!(f.reason, FailureReason::Assertion);
    assert!(
        f.message
            .contains("a frame matching contains \"boom\" arrived"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn heartbeats_are_sent_while_idle() {
    let server = FramedServer::echo(WireFraming::Lines { crlf: false }).await;
    let sc = load_one(&format!(
        "scenario: hb\nsteps:\n  - tcp.connect: {{as: c, target: \"{}\", heartbeat: {{text: PING, every: 100ms}}}}\n  - sleep: 1s\n  - tcp.close: {{on: c}}\n",
        server.target()
    ));
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    let pings = server
        .received()
        .iter()
        .filter(|f| f.as_slice() == b"PING")
        .count();
    assert!(
        pings >= 1,
        "no heartbeat in a second at 100ms: {:?}",
        server.received()
    );
}

#[tokio::test]
async fn a_dropped_session_fails_a_run_then_reconnects_with_metrics() {
    let server = FramedServer::echo(WireFraming::Length {
        width: 2,
        little: false,
        includes_header: false,
        header: vec![],
    })
    .await;
    let sc = load_one(&format!(
        r#"scenario: tcp-session
interval: 1s
timeout: 1s
session: persistent
setup:
  - name: connect
    tcp.connect: {{as: c, target: "{}", framing: {{length: {{bytes: 2}}}}}}
steps:
  - tcp.send: {{on: c, json: {{op: ping}}}}
  - name: pong
    tcp.expect: {{on: c, match: {{json: {{"$.op": ping}}}}, within: 900ms}}
"#,
        server.target()
    ));
    let cfg = sonde::config::scenario::Config {
        scenarios: vec![sc.clone()],
        sources: vec![],
        agent: Default::default(),
    };
    let metrics = Metrics::new();
    let sched = Scheduler::new(RunMetrics::alone(metrics.clone(), None), None, 16);
    sched.apply(&cfg);
    let st = sched.state(&sc.name).unwrap();
    let text = || String::from_utf8(metrics.encode(Format::PrometheusText).concat()).unwrap();
    wait_until("a first successful run", || {
        st.last_success_ms.load(Ordering::Relaxed) > 0
    })
    .await;
    assert!(text().contains("sonde_session_connected{scenario=\"tcp-session\"} 1"));
    assert_eq!(server.accepted(), 1, "one connection for the whole session");
    let failures_before = st.failures.load(Ordering::Relaxed);
    server.kick_all();
    wait_until("the break to fail a run", || {
        st.failures.load(Ordering::Relaxed) > failures_before
    })
    .await;
    wait_until("a reconnect", || {
        text().contains("sonde_session_reconnects_total{scenario=\"tcp-session\"} 1")
    })
    .await;
    let ok_after = st.runs.load(Ordering::Relaxed);
    wait_until("a successful run after the reconnect", || {
        st.runs.load(Ordering::Relaxed) > ok_after && st.last().unwrap().success()
    })
    .await;
    assert_eq!(server.accepted(), 2);
    assert!(text().contains("sonde_session_connected{scenario=\"tcp-session\"} 1"));
    sched.shutdown().await;
    wait_until("shutdown to close the session", || {
        server.connections() == 0
    })
    .await;
}

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod chat_server;

/// The shipped scenario and its `.proto`, in a fresh folder, pointed at `target`.
fn shipped_im_tcp(target: &str) -> (tempfile::TempDir, Arc<Scenario>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(root.join("scenarios/im-tcp-protobuf.yaml"))
        .unwrap()
        .replace("127.0.0.1:9301", target)
        .replace("timeout: 5s", "timeout: 2s");
    let proto = std::fs::read_to_string(root.join("scenarios/chat.proto")).unwrap();
    let (dir, sc) = load_dir(&[("s.yaml", &yaml), ("chat.proto", &proto)]);
    (dir, sc.unwrap())
}

#[tokio::test]
async fn the_shipped_im_tcp_protobuf_scenario_passes_against_the_reference_server() {
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut server = chat_server::start(
        ws,
        chat_server::ChatOptions {
            noise_interval: Some(Duration::from_millis(20)),
            ..Default::default()
        },
    );
    server.serve_tcp(tcp);
    let (_dir, sc) = shipped_im_tcp(&server.tcp_addr().unwrap().to_string());
    let mut session = sonde::runtime::session::Session::default();
    for round in 0..3 {
        let (_, r) = session.run(&sc).await;
        assert!(r.success(), "round {round}: {:#}", r.to_json(&sc));
        let deliver = r.steps.iter().find(|s| s.name == "deliver").unwrap();
        let f = serde_json::to_value(&deliver.facts).unwrap();
        assert!(
            f["matched"]
                .as_str()
                .unwrap()
                .contains("probe from im-tcp-protobuf"),
            "{f}"
        );
        // Let presence noise arrive between rounds.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(
        server.logged_in(),
        2,
        "one login per user for the whole session"
    );
    assert_eq!(server.delivered(), 3);
    session.end(&sc).await;
    wait_until("teardown to close both connections", || {
        server.connections() == 0
    })
    .await;

    // A bad token: login_failed, then the server closes the connection.
    let bad = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/im-tcp-protobuf.yaml"),
    )
    .unwrap()
    .replace("127.0.0.1:9301", &server.tcp_addr().unwrap().to_string())
    .replace("sonde-demo-secret", "wrong-secret");
    let proto = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/chat.proto"),
    )
    .unwrap();
    let (_d, sc) = load_dir(&[("s.yaml", &bad), ("chat.proto", &proto)]);
    let sc = sc.unwrap();
    let r = engine::run(&sc).await;
    assert_eq!(r.failed_step.as_deref(), Some("alice-logged-in"));
    let m = &r.failure().unwrap().message;
    assert!(m.contains("login_failed") && m.contains("closed"), "{m}");
}

#[test]
fn the_scenarios_chat_proto_is_the_examples_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        std::fs::read_to_string(root.join("scenarios/chat.proto")).unwrap(),
        std::fs::read_to_string(root.join("examples/chat.proto")).unwrap(),
        "scenarios/chat.proto must stay a copy of examples/chat.proto"
    );
}

#[test]
fn a_scenario_loaded_from_a_url_may_not_name_a_proto_file_on_the_agent() {
    let yaml = "scenario: r\nsteps:\n  - tcp.connect: {as: c, target: \"127.0.0.1:9\", proto_file: /etc/x.proto, message: a.B}\n";
    let e = sonde::config::trust::remote_file_keys("http://cfg.test/s.yaml", yaml);
    assert_eq!(e.len(), 1, "{e:?}");
    let e = e[0].to_string();
    assert!(
        e.starts_with("http://cfg.test/s.yaml:3:49: `proto_file` names a file on the agent"),
        "{e}"
    );
}

#[tokio::test]
async fn a_raw_send_goes_out_as_is_and_replies_are_still_cut_by_the_framing() {
    // XMPP-like: the body holds the delimiter, so only `raw: true` can send it in one step.
    let server = FramedServer::echo(WireFraming::Delimiter(b">".to_vec())).await;
    let yaml = |raw: bool| {
        format!(
            "scenario: raw\nsteps:\n  - tcp.connect: {{as: c, target: \"{}\", framing: {{delimiter: \">\"}}}}\n  - tcp.send: {{on: c, raw: {raw}, text: \"<a><b/>\"}}\n  - tcp.expect: {{on: c, match: {{equals: \"<b/\"}}, within: 2s}}\n",
            server.target()
        )
    };
    let r = engine::run(&load_one(&yaml(true))).await;
    assert!(r.success(), "{:?}", r.failure());
    let r = engine::run(&load_one(&yaml(false))).await;
    let f = r
        .failure()
        .expect("a framed body with the delimiter is refused");
    assert!(
        f.message
            .contains("contains (or ends with part of) the delimiter"),
        "{f}"
    );
}

/// A `.proto` compiled for a scenario whose folder allows its import is not handed to one whose
/// folder does not: imports are confined to the root of the scenario that names the file (here
/// an import through a symlink that leaves the inner folder).
#[test]
fn a_proto_import_outside_a_scenarios_folder_is_refused_after_another_compiled_it() {
    let top = tempfile::tempdir().unwrap();
    let (inner, other) = (top.path().join("z"), top.path().join("other"));
    std::fs::create_dir(&inner).unwrap();
    std::fs::create_dir(&other).unwrap();
    std::os::unix::fs::symlink(&other, inner.join("link")).unwrap();
    std::fs::write(
        other.join("common.proto"),
        "syntax = \"proto3\";\npackage c;\nmessage Common { string v = 1; }\n",
    )
    .unwrap();
    std::fs::write(
        inner.join("chat.proto"),
        "syntax = \"proto3\";\npackage chat;\nimport \"link/common.proto\";\nmessage Frame { c.Common c = 1; }\n",
    )
    .unwrap();
    let connect = |name: &str, file: &str| {
        format!("scenario: {name}\nsteps:\n  - tcp.connect: {{as: c, target: \"127.0.0.1:9\", proto_file: {file}, message: chat.Frame}}\n")
    };
    std::fs::write(top.path().join("a.yaml"), connect("wide", "z/chat.proto")).unwrap();
    std::fs::write(inner.join("x.yaml"), connect("narrow", "chat.proto")).unwrap();
    let e = load_paths(
        &[top.path().join("a.yaml"), inner.join("x.yaml")],
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    let e = e[0].to_string();
    assert!(e.contains("x.yaml") && e.contains("is outside"), "{e}");
}
