//! Many agents: region selection and shards as the API shows them, agent settings documents,
//! configuration from URLs (polling, validators, pin, bearer token, last good config kept),
//! watched files, and remote_write against an in-process receiver. Real `sonde serve`
//! processes; every peer is an in-process server on 127.0.0.1.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use sonde::remote_write::proto::WriteRequest;
use sonde_testkit::http::{HttpServer, Reply, Routes, Seen};
use sonde_testkit::process::Serve;

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

use sonde_testkit::runtime;

/// Hang guard for every wait below: turns a hang into a failure, bounds nothing else.
const HANG_GUARD: Duration = Duration::from_secs(30);

fn wait_for(what: &str, s: &Serve, mut f: impl FnMut() -> bool) {
    let guard = Instant::now() + HANG_GUARD;
    while !f() {
        assert!(
            Instant::now() < guard,
            "hang guard: {what}\nsonde's log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the exposition line that starts with `series ` (exact series text).
fn metric(s: &Serve, series: &str) -> Option<f64> {
    let body = s.get("/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn owned(s: &Serve) -> (BTreeSet<String>, Vec<(String, String)>) {
    let (v, names) = s.scenario_list();
    let skipped = v["not_owned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["scenario"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (names, skipped)
}

/// 40 scenarios, 10 of them only for region `us`: three `eu` agents with shards 1/3..3/3 run
/// each of the 30 others exactly once, and each says why it skips the rest.
#[test]
fn the_shards_of_a_region_run_each_of_its_scenarios_exactly_once() {
    let mut yaml = String::from("scenarios:\n");
    for i in 0..40 {
        let regions = if i % 4 == 0 { "[us]" } else { "[\"!ap\"]" };
        yaml.push_str(&format!(
            "  - scenario: s{i}\n    interval: 1h\n    regions: {regions}\n    tcp: {{target: \"127.0.0.1:1\"}}\n"
        ));
    }
    let agents: Vec<Serve> = (1..=3)
        .map(|i| {
            Serve::command(SONDE)
                .config_yaml("s.yaml", &yaml)
                .region("eu")
                .arg("--shard")
                .arg(format!("{i}/3"))
                .start()
        })
        .collect();
    let mut union = BTreeSet::new();
    let mut total = 0;
    for (i, a) in agents.iter().enumerate() {
        let v = a.get("/api/v1/scenarios").json();
        assert_eq!(v["region"], "eu");
        assert_eq!(v["shard"], format!("{}/3", i + 1));
        let (names, skipped) = owned(a);
        assert!(!names.is_empty(), "agent {} owns nothing", i + 1);
        total += names.len();
        union.extend(names.iter().cloned());
        assert_eq!(names.len() + skipped.len(), 40);
        for (name, reason) in skipped {
            let n: usize = name[1..].parse().unwrap();
            if n % 4 == 0 {
                assert!(
                    reason.contains("region eu is not in its regions (us)"),
                    "{reason}"
                );
            } else {
                assert!(
                    reason.contains(&format!("(this agent is shard {}/3)", i + 1)),
                    "{reason}"
                );
            }
        }
    }
    let want: BTreeSet<String> = (0..40)
        .filter(|i| i % 4 != 0)
        .map(|i| format!("s{i}"))
        .collect();
    assert_eq!(union, want, "some scenario has no owner");
    assert_eq!(total, 30, "some scenario has two owners");
}

/// `--shard auto` as a StatefulSet runs it: pods `sonde-eu-0..2` (their hostname) with
/// SONDE_SHARD_COUNT=3 are shards 1/3..3/3 and together run each scenario exactly once.
#[test]
fn statefulset_pods_take_their_shard_from_the_hostname_ordinal() {
    let mut yaml = String::from("scenarios:\n");
    for i in 0..30 {
        yaml.push_str(&format!(
            "  - scenario: s{i}\n    interval: 1h\n    tcp: {{target: \"127.0.0.1:1\"}}\n"
        ));
    }
    let pods: Vec<Serve> = (0..3)
        .map(|ordinal| {
            Serve::command(SONDE)
                .config_yaml("s.yaml", &yaml)
                .region("eu")
                .arg("--shard")
                .arg("auto")
                .env("HOSTNAME", format!("sonde-eu-{ordinal}"))
                .env("SONDE_SHARD_COUNT", "3")
                .start()
        })
        .collect();
    let mut union = BTreeSet::new();
    let mut total = 0;
    for (ordinal, pod) in pods.iter().enumerate() {
        let v = pod.get("/api/v1/scenarios").json();
        assert_eq!(v["shard"], format!("{}/3", ordinal + 1));
        let (names, _) = owned(pod);
        total += names.len();
        union.extend(names);
    }
    assert_eq!(union.len(), 30, "some scenario has no owner");
    assert_eq!(total, 30, "some scenario has two owners");
}

#[test]
fn an_agent_document_sets_region_and_shard_and_flags_win() {
    let scenarios = "scenarios:\n  - scenario: a\n    interval: 1h\n    vars: {r: \"{{ region }}\"}\n    tcp: {target: \"127.0.0.1:1\"}\n";
    let agent = "agent:\n  region: ap-east\n  shard: 1/1\n";
    let s = Serve::command(SONDE)
        .config_yaml("agent.yaml", agent)
        .config_yaml("s.yaml", scenarios)
        .start();
    let v = s.get("/api/v1/scenarios").json();
    assert_eq!(v["region"], "ap-east");
    assert_eq!(v["shard"], "1/1");
    assert!(
        s.get("/metrics").body.contains(
            r#"sonde_scenario_runs_total{scenario="a",region="ap-east",result="success"} 0"#
        ),
        "region label missing"
    );
    let s2 = Serve::command(SONDE)
        .config_yaml("agent.yaml", agent)
        .config_yaml("s.yaml", scenarios)
        .region("eu")
        .start();
    assert_eq!(s2.get("/api/v1/scenarios").json()["region"], "eu");

    // Agent settings are read at start: a changed document says so and changes nothing.
    std::fs::write(s.dir().join("agent.yaml"), "agent:\n  region: us-east\n").unwrap();
    wait_for("the reload to warn", &s, || {
        s.log().contains("they apply at the next restart")
    });
    assert_eq!(s.get("/api/v1/scenarios").json()["region"], "ap-east");

    let out = std::process::Command::new(SONDE)
        .args(["serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(s.dir().join("s.yaml"))
        .arg("-c")
        .arg({
            let p = s.dir().join("bad-agent.yaml");
            std::fs::write(&p, "agent:\n  shard: 3/2\n").unwrap();
            p
        })
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-agent.yaml:2:1: \"3/2\": shards are numbered 1 to 2"),
        "{err}"
    );
}

const LAST_MODIFIED: &str = "Wed, 21 Oct 2026 07:28:00 GMT";

/// A configuration server: serves `body` with an ETag, answers 304 to a matching
/// If-None-Match, 401 without the bearer token, or `status` when set.
struct ConfigServer {
    body: Arc<Mutex<String>>,
    status: Arc<Mutex<Option<u16>>>,
    server: HttpServer,
}

impl ConfigServer {
    async fn start(body: &str) -> ConfigServer {
        let b = Arc::new(Mutex::new(body.to_string()));
        let status = Arc::new(Mutex::new(None));
        let (b2, st2) = (b.clone(), status.clone());
        let server = HttpServer::start(Routes::new().at_fn("/sonde.yaml", move |req: &Seen| {
            if req.header("authorization") != Some("Bearer s3cret") {
                return Reply::text(401, "who are you");
            }
            if let Some(code) = *st2.lock().unwrap() {
                return Reply::text(code, "down");
            }
            let body = b2.lock().unwrap().clone();
            let etag = format!(
                "\"{:x}\"",
                body.len() * 7919 + body.bytes().map(usize::from).sum::<usize>()
            );
            if req.header("if-none-match") == Some(etag.as_str()) {
                return Reply::status(304).header("ETag", &etag);
            }
            Reply::text(200, body)
                .header("ETag", &etag)
                .header("Last-Modified", LAST_MODIFIED)
        }))
        .await;
        ConfigServer {
            body: b,
            status,
            server,
        }
    }
}

fn one(name: &str) -> String {
    format!("  - scenario: {name}\n    interval: 1h\n    tcp: {{target: \"127.0.0.1:1\"}}\n")
}

#[test]
fn a_config_url_is_polled_with_validators_and_a_bad_source_keeps_the_last_good_config() {
    let rt = runtime();
    let cs = rt.block_on(ConfigServer::start(&format!("scenarios:\n{}", one("a"))));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let s = Serve::command(SONDE)
        .config(cs.server.url("/sonde.yaml"))
        .arg("--config-poll-interval")
        .arg("1s")
        .arg("--config-bearer-token-file")
        .arg(&token)
        .start();
    assert_eq!(owned(&s).0, BTreeSet::from(["a".to_string()]));
    // Unchanged polls are conditional (both validators sent back) and answered 304.
    wait_for("a conditional poll", &s, || {
        cs.server.requests().iter().any(|r| {
            r.header("if-none-match").is_some()
                && r.header("if-modified-since") == Some(LAST_MODIFIED)
        })
    });

    // A change is picked up without any signal.
    *cs.body.lock().unwrap() = format!("scenarios:\n{}{}", one("a"), one("b"));
    wait_for("b to appear", &s, || owned(&s).0.contains("b"));
    assert_eq!(metric(&s, "sonde_config_last_reload_successful"), Some(1.0));

    // Unreachable (here: 503) and then invalid sources keep a and b running.
    for bad in [Some(503), None] {
        match bad {
            Some(code) => *cs.status.lock().unwrap() = Some(code),
            None => {
                *cs.status.lock().unwrap() = None;
                *cs.body.lock().unwrap() = "scenarios:\n  - scenario: c\n    bogus: 1\n".into();
            }
        }
        wait_for("the failure to show", &s, || {
            metric(&s, "sonde_config_last_reload_successful") == Some(0.0)
        });
        assert_eq!(owned(&s).0, BTreeSet::from(["a".into(), "b".into()]));
        // Back to good before the next case, so its failure is its own.
        *cs.status.lock().unwrap() = None;
        *cs.body.lock().unwrap() = format!("scenarios:\n{}{}", one("a"), one("b"));
        wait_for("recovery", &s, || {
            metric(&s, "sonde_config_last_reload_successful") == Some(1.0)
        });
    }
    let log = s.log();
    assert!(log.contains("503"), "{log}");
    assert!(log.contains("unknown key `bogus`"), "{log}");
}

#[test]
fn a_sha256_pin_refuses_other_content_and_accepts_its_own() {
    let rt = runtime();
    let body = format!("scenarios:\n{}", one("pinned"));
    let cs = rt.block_on(ConfigServer::start(&body));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret").unwrap();
    let digest: String = sha256sum_hex(body.as_bytes());
    let wrong = "0".repeat(64);
    let out = std::process::Command::new(SONDE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config-bearer-token-file",
        ])
        .arg(&token)
        .arg("-c")
        .arg(format!("{}#sha256={wrong}", cs.server.url("/sonde.yaml")))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "its SHA-256 is {digest} — expected the pinned {wrong}"
        )),
        "{err}"
    );

    let s = Serve::command(SONDE)
        .config(format!("{}#sha256={digest}", cs.server.url("/sonde.yaml")))
        .arg("--config-bearer-token-file")
        .arg(&token)
        .start();
    assert_eq!(owned(&s).0, BTreeSet::from(["pinned".to_string()]));
    // The fragment is never sent.
    assert!(cs
        .server
        .requests()
        .iter()
        .all(|r| !r.uri.contains('#') && !r.uri.contains("sha256")));
}

fn sha256sum_hex(b: &[u8]) -> String {
    // Computed by coreutils, independently of sonde's own digest code.
    use std::fmt::Write;
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .expect("sha256sum (coreutils)");
    let mut s = String::new();
    write!(
        s,
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    )
    .unwrap();
    s
}

#[test]
fn an_edited_file_reloads_without_a_signal() {
    let s = Serve::command(SONDE)
        .config_yaml("s.yaml", &format!("scenarios:\n{}", one("a")))
        .start();
    assert_eq!(owned(&s).0, BTreeSet::from(["a".to_string()]));
    // Replace by rename, as editors and config management do.
    let tmp = s.dir().join("s.yaml.tmp");
    std::fs::write(&tmp, format!("scenarios:\n{}{}", one("a"), one("b"))).unwrap();
    std::fs::rename(&tmp, s.dir().join("s.yaml")).unwrap();
    wait_for("the watcher to reload", &s, || owned(&s).0.contains("b"));
    assert!(s.log().contains("configuration files changed; reloading"));
}

/// A remote_write receiver: decodes every push (snappy + protobuf), answers `status`.
/// `store_then_fail` set, the next push is kept (as if stored) yet answered that status after
/// that delay: a receiver whose answer is lost after it committed the samples.
struct Receiver {
    pushes: Arc<Mutex<Vec<(Seen, WriteRequest)>>>,
    status: Arc<Mutex<u16>>,
    store_then_fail: Arc<Mutex<Option<(u16, Duration)>>>,
    server: HttpServer,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let pushes = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(204u16));
        let store_then_fail = Arc::new(Mutex::new(None));
        let (p2, s2, f2) = (pushes.clone(), status.clone(), store_then_fail.clone());
        let routes = Routes::new().at_fn("/api/v1/write", move |req: &Seen| {
            let (code, delay) = match f2.lock().unwrap().take() {
                Some((code, delay)) => (code, Some(delay)),
                None => (*s2.lock().unwrap(), None),
            };
            if code / 100 == 2 || delay.is_some() {
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(&req.body)
                    .expect("a snappy block");
                let wr = WriteRequest::decode(raw.as_slice()).expect("a WriteRequest");
                p2.lock().unwrap().push((req.clone(), wr));
            }
            Reply::text(code, "").delay(delay.unwrap_or_default())
        });
        let server = match tls {
            None => HttpServer::start(routes).await,
            Some(cfg) => HttpServer::start_tls(routes, cfg).await,
        };
        Receiver {
            pushes,
            status,
            store_then_fail,
            server,
        }
    }

    fn samples(&self) -> usize {
        self.pushes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, w)| w.timeseries.iter().map(|t| t.samples.len()).sum::<usize>())
            .sum()
    }
}

fn pusher(rx: &Receiver, extra: &str) -> Serve {
    let agent = format!(
        "agent:\n  region: eu\n  remote_write:\n    url: {}\n    send_interval: 200ms\n    external_labels: {{agent: a1}}\n    bearer_token: pushpush\n{extra}",
        rx.server.url("/api/v1/write")
    );
    Serve::command(SONDE)
        .config_yaml("agent.yaml", &agent)
        .config_yaml("s.yaml", &format!("scenarios:\n{}", one("a")))
        .start()
}

/// sonde's push counters from one scrape: [enqueued, sent, failed, dropped, queued].
fn accounting(s: &Serve) -> [f64; 5] {
    let body = s.get("/metrics").body;
    let get = |n: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(n)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    [
        get("sonde_remote_write_samples_enqueued_total"),
        get("sonde_remote_write_samples_sent_total"),
        get("sonde_remote_write_samples_failed_total"),
        get("sonde_remote_write_samples_dropped_total"),
        get("sonde_remote_write_queue_samples"),
    ]
}

/// Waits for a scrape in which enqueued = sent + failed + dropped + queued, and returns it. A
/// scrape may land while a sampling is half-counted, so one that does not add up is retried; a
/// real accounting error never adds up and ends at the hang guard.
fn balanced(s: &Serve) -> [f64; 5] {
    let mut last = accounting(s);
    wait_for("the push counters to add up", s, || {
        last = accounting(s);
        let [enq, sent, failed, dropped, queued] = last;
        enq == sent + failed + dropped + queued
    });
    last
}

#[test]
fn remote_write_pushes_labelled_samples_and_retries_server_errors_without_loss() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    *rx.status.lock().unwrap() = 503;
    let s = pusher(&rx, "");
    // While the receiver fails, attempts are retried and nothing is sent or dropped.
    wait_for("retries", &s, || {
        metric(&s, "sonde_remote_write_retries_total") >= Some(3.0)
    });
    let queued_while_down = metric(&s, "sonde_remote_write_queue_samples").unwrap();
    assert!(queued_while_down > 0.0);
    *rx.status.lock().unwrap() = 204;
    wait_for("the backlog to drain", &s, || {
        rx.samples() as f64 >= queued_while_down
    });
    let [_, _, failed, dropped, _] = balanced(&s);
    assert_eq!((failed, dropped), (0.0, 0.0));

    let pushes = rx.pushes.lock().unwrap();
    let (req, wr) = &pushes[0];
    assert_eq!(req.header("content-encoding"), Some("snappy"));
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(
        req.header("x-prometheus-remote-write-version"),
        Some("0.1.0")
    );
    assert_eq!(req.header("authorization"), Some("Bearer pushpush"));
    let runs = wr
        .timeseries
        .iter()
        .find(|t| {
            t.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "sonde_scenario_runs_total")
        })
        .expect("scenario series pushed");
    let labels: Vec<(&str, &str)> = runs
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    // Sorted by name, external label added, the series' own region kept.
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(labels, sorted);
    for want in [("agent", "a1"), ("region", "eu"), ("scenario", "a")] {
        assert!(labels.contains(&want), "{labels:?}");
    }
    // sonde's own series get the agent's region as an external label.
    let build = wr
        .timeseries
        .iter()
        .find(|t| t.labels.iter().any(|l| l.value == "sonde_build_info"))
        .unwrap();
    assert!(build
        .labels
        .iter()
        .any(|l| l.name == "region" && l.value == "eu"));
}

/// The receiver stores a batch but answers 503 (as Prometheus may while shutting down; a cut
/// connection or a timeout is the same for the sender): sonde cannot know, so it sends again —
/// the very same request, with none of the samples sampled meanwhile added (a store refuses a
/// request that repeats older samples of a series next to newer ones, losing the new ones). The
/// store ends up with every sample once, and `sent` counts each once.
#[test]
fn remote_write_resends_a_stored_but_unanswered_batch_unchanged_and_counts_it_once() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    // The 503 comes after several send intervals (200 ms): newer samples are queued by then.
    *rx.store_then_fail.lock().unwrap() = Some((503, Duration::from_millis(1000)));
    let s = pusher(&rx, "");
    wait_for("the retry and two more pushes", &s, || {
        rx.pushes.lock().unwrap().len() >= 4
    });
    // No more deliveries from here on, so the counters and the store can be compared: once an
    // attempt has failed after the switch, every earlier one has been counted (one at a time).
    let retries = metric(&s, "sonde_remote_write_retries_total").unwrap();
    *rx.status.lock().unwrap() = 503;
    wait_for("a refused attempt", &s, || {
        metric(&s, "sonde_remote_write_retries_total") > Some(retries)
    });
    let [_, sent, failed, dropped, _] = balanced(&s);
    assert_eq!((failed, dropped), (0.0, 0.0));
    assert!(metric(&s, "sonde_remote_write_retries_total") >= Some(1.0));
    let pushes = rx.pushes.lock().unwrap();
    let count =
        |wr: &WriteRequest| -> usize { wr.timeseries.iter().map(|t| t.samples.len()).sum() };
    assert!(
        pushes[1].0.body == pushes[0].0.body,
        "the retry must be the unanswered request itself: {} samples, then {} in the retry",
        count(&pushes[0].1),
        count(&pushes[1].1)
    );
    let key = |t: &sonde::remote_write::proto::TimeSeries, ts: i64| {
        let labels: Vec<(String, String)> = t
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        (labels, ts)
    };
    let mut stored = BTreeSet::new();
    let mut received = 0usize;
    for (_, wr) in pushes.iter() {
        for t in &wr.timeseries {
            for smp in &t.samples {
                received += 1;
                stored.insert(key(t, smp.timestamp));
            }
        }
    }
    let first = count(&pushes[0].1);
    assert_eq!(
        stored.len() as f64,
        sent,
        "every sample stored once, counted once"
    );
    assert_eq!(
        received,
        stored.len() + first,
        "only the unanswered batch came twice"
    );
}

#[test]
fn remote_write_drops_4xx_batches_without_retrying() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    *rx.status.lock().unwrap() = 400;
    let s = pusher(&rx, "");
    wait_for("failed samples", &s, || {
        metric(&s, "sonde_remote_write_samples_failed_total") > Some(0.0)
    });
    assert_eq!(metric(&s, "sonde_remote_write_retries_total"), Some(0.0));
    let [_, sent, failed, dropped, _] = balanced(&s);
    assert_eq!((sent, dropped), (0.0, 0.0));
    assert!(failed > 0.0);
}

#[test]
fn remote_write_with_a_full_queue_drops_the_oldest_and_counts_exactly() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    *rx.status.lock().unwrap() = 503;
    let s = pusher(&rx, "    queue_capacity: 50\n");
    assert_eq!(
        metric(&s, "sonde_remote_write_queue_capacity_samples"),
        Some(50.0)
    );
    wait_for("drops", &s, || {
        metric(&s, "sonde_remote_write_samples_dropped_total") > Some(100.0)
    });
    assert!(metric(&s, "sonde_remote_write_queue_samples") <= Some(50.0));
    *rx.status.lock().unwrap() = 204;
    wait_for("delivery", &s, || {
        metric(&s, "sonde_remote_write_samples_sent_total") > Some(0.0)
    });
    let [_, sent, failed, dropped, _] = balanced(&s);
    assert!(dropped > 100.0 && sent > 0.0 && failed == 0.0);
}

/// TLS with a private CA, a client certificate the receiver requires, and basic auth.
#[test]
fn remote_write_speaks_tls_with_a_client_certificate_and_basic_auth() {
    use sonde_testkit::pki::{server_config, Ca};
    let rt = runtime();
    let ca = Ca::new("remote_write test CA");
    let server_leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(1), &[]);
    let client_leaf = ca.leaf(&["sonde-agent"], time::Duration::days(1), &[]);
    let rx = rt.block_on(Receiver::start_with(Some(server_config(
        &server_leaf,
        &[b"http/1.1"],
        Some(&ca),
    ))));
    let extra = format!(
        "    basic_auth: {{username: agent, password_file: {pw}}}\n    tls_config: {{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}\n",
        pw = ca.write_file("pw", b"hunter2\n").display(),
        ca = ca.ca_file.display(),
        cert = client_leaf.cert_file.display(),
        key = client_leaf.key_file.display(),
    );
    // bearer_token and basic_auth together are refused: use a document without the token.
    let agent = format!(
        "agent:\n  remote_write:\n    url: {}\n    send_interval: 200ms\n{extra}",
        rx.server.url("/api/v1/write")
    );
    let s = Serve::command(SONDE)
        .config_yaml("agent.yaml", &agent)
        .config_yaml("s.yaml", &format!("scenarios:\n{}", one("a")))
        .start();
    wait_for("a push over TLS", &s, || rx.samples() > 0);
    let pushes = rx.pushes.lock().unwrap();
    // "agent:hunter2" in base64.
    assert_eq!(
        pushes[0].0.header("authorization"),
        Some("Basic YWdlbnQ6aHVudGVyMg==")
    );
    assert_eq!(metric(&s, "sonde_remote_write_retries_total"), Some(0.0));
}

/// At SIGTERM, what is still queued is pushed before exiting (within a short grace).
#[test]
fn remote_write_flushes_its_queue_at_shutdown() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    *rx.status.lock().unwrap() = 503;
    let s = pusher(&rx, "");
    // Five failed attempts: the backoff is now seconds long, so the delivery below comes from
    // the shutdown flush, not from a regular retry.
    wait_for("retries", &s, || {
        metric(&s, "sonde_remote_write_retries_total") >= Some(5.0)
    });
    let queued = metric(&s, "sonde_remote_write_queue_samples").unwrap();
    assert!(queued > 0.0);
    *rx.status.lock().unwrap() = 204;
    s.signal(libc::SIGTERM);
    let (code, log) = s.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        rx.samples() as f64 >= queued,
        "{} samples delivered, {queued} were queued\n{log}",
        rx.samples()
    );
}
