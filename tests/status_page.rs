//! The status page against a fake history: what it shows (strips in order, uptime, the last
//! failure after recovery, per-step charts, paging of 10,000-scale lists), what it escapes
//! (group, tags, reasons, errors and traces carrying markup), and what the public page keeps to
//! itself (traces, errors, configuration, /probe, /api, non-public scenarios).
//!
//! In process on loopback; the scenarios' intervals are long, so the pages read the fake
//! history, not live runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sonde::blackbox::safety::Safety;
use sonde::blackbox::Blackbox;
use sonde::config::LoadOptions;
use sonde::history::{HistoryRead, Incident, LatencyPoint, RunFilter, RunRow, Slot, Uptime};
use sonde::metrics::{Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde::serve::{App, AppParts, ConfigSource};
use sonde::status::StatusFlags;
use sonde::web_server::WebFlags;
use sonde_testkit::client::{get, Response};

const XSS: &str = "<script>alert(1)</script>";

/// A history that answers the same made-up data for every scenario.
struct Fake {
    slots: Vec<(u64, u64)>,
}

impl Fake {
    fn failed_run(&self, scenario: &str, id: i64) -> RunRow {
        RunRow {
            id,
            scenario: scenario.into(),
            started_ms: sonde::time::now_ms() - 120_000,
            duration_s: 0.25,
            success: false,
            failed_step: Some(format!("step{XSS}")),
            reason: Some(format!("timeout{XSS}")),
            error: Some(format!("body was {XSS}")),
            has_trace: true,
            ..RunRow::default()
        }
    }
}

impl HistoryRead for Fake {
    fn runs(&self, scenario: &str, filter: &RunFilter) -> Vec<RunRow> {
        let mut v = vec![RunRow {
            id: 8,
            scenario: scenario.into(),
            started_ms: sonde::time::now_ms() - 1000,
            duration_s: 0.1,
            success: true,
            ..RunRow::default()
        }];
        v.push(self.failed_run(scenario, 7));
        v.retain(|r| filter.success.is_none_or(|s| r.success == s));
        v.truncate(filter.limit);
        v
    }

    fn run(&self, scenario: &str, id: i64) -> Option<(RunRow, Option<serde_json::Value>)> {
        (id == 7).then(|| {
            let trace = serde_json::json!({"steps": [{"events": [format!("got {XSS}")], "secret_marker": "TRACE-ONLY"}]});
            (self.failed_run(scenario, 7), Some(trace))
        })
    }

    fn uptime(&self, _: &str, window: Duration) -> Uptime {
        Uptime {
            window_s: window.as_secs(),
            runs: 1000,
            failures: 5,
            ratio: Some(0.995),
        }
    }

    fn strip(&self, _: &str, slots: usize, _: Duration) -> Vec<Slot> {
        let mut out: Vec<Slot> = self
            .slots
            .iter()
            .map(|(runs, failures)| Slot {
                runs: *runs,
                failures: *failures,
                mean_duration_s: (*runs > 0).then_some(0.05),
                last_reason: (*failures > 0).then(|| format!("status{XSS}")),
                ..Slot::default()
            })
            .collect();
        out.resize(slots, Slot::default());
        out
    }

    fn latency(
        &self,
        _: &str,
        _: Option<&str>,
        from_ms: i64,
        bucket: Duration,
    ) -> Vec<LatencyPoint> {
        (0..12)
            .map(|i| LatencyPoint {
                t_ms: from_ms + i * bucket.as_millis() as i64,
                count: 3,
                p50_s: 0.01 * (i + 1) as f64,
                p95_s: 0.02 * (i + 1) as f64,
            })
            .collect()
    }

    fn incidents(&self, _: &str, from_ms: i64, _: usize) -> Vec<Incident> {
        vec![Incident {
            from_ms: from_ms + 1000,
            to_ms: Some(from_ms + 61_000),
            failed_runs: 3,
            first_reason: Some(format!("dns{XSS}")),
        }]
    }
}

struct Pages {
    admin: SocketAddr,
    public: SocketAddr,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _app: Arc<App>,
}

fn start(yaml: &str, history: Option<Arc<dyn HistoryRead>>) -> Pages {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, yaml).unwrap();
    let source = ConfigSource::Paths(vec![path]);
    let loaded = source.load(&LoadOptions::default()).unwrap();
    let (app, admin, public) = rt.block_on(async {
        let metrics = Metrics::new();
        let scheduler = Scheduler::new(RunMetrics::alone(metrics.clone(), None), None, 4);
        let parts = AppParts {
            metrics,
            scheduler,
            alerts: Default::default(),
            source,
            load_options: LoadOptions::default(),
            blackbox: Blackbox::new(0.5, Safety::off()),
            history,
            history_writer: None,
        };
        let app = App::new(parts, loaded);
        let flags = StatusFlags::default();
        let serve = |router: axum::Router| async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(sonde::web_server::serve(
                l,
                router,
                WebFlags::default(),
                Metrics::new().web.clone(),
                tokio_util::sync::CancellationToken::new(),
            ));
            addr
        };
        let admin = serve(
            sonde::web::router(app.clone()).merge(sonde::status::router(app.clone(), &flags)),
        )
        .await;
        let public = serve(sonde::status::public_router(app.clone(), &flags)).await;
        (app, admin, public)
    });
    Pages {
        admin,
        public,
        _rt: rt,
        _dir: dir,
        _app: app,
    }
}

fn page(addr: SocketAddr, path: &str) -> Response {
    get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Scenarios that never run during the test (a long interval to a closed port).
fn yaml(extra: &str) -> String {
    format!(
        r#"scenarios:
  - scenario: shop
    interval: 1h
    group: "Shop {XSS}"
    tags: ["<img src=x onerror=alert(1)>"]
    public: true
    steps:
      - name: home
        http: {{url: "http://127.0.0.1:1/"}}
      - name: "cart"
        http: {{url: "http://127.0.0.1:1/cart"}}
  - scenario: internal/db
    interval: 1h
    tcp: {{target: "127.0.0.1:1"}}
{extra}"#
    )
}

fn fake() -> Option<Arc<dyn HistoryRead>> {
    Some(Arc::new(Fake {
        slots: vec![(1, 0), (2, 2), (3, 1), (0, 0), (1, 0)],
    }))
}

/// No markup from outside survives: every `<` of the hostile values arrives as `&lt;`.
fn assert_no_injection(body: &str) {
    for raw in [XSS, "<img src=x", "<b>"] {
        assert!(!body.contains(raw), "unescaped {raw:?} in:\n{body}");
    }
}

#[test]
fn overview_escapes_hostile_values_and_shows_strips_in_order() {
    let p = start(&yaml(""), fake());
    let r = page(p.admin, "/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.header("content-security-policy").is_some());
    assert_no_injection(&r.body);
    assert!(
        r.body
            .contains("Shop &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(r.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // The first strip's slots, oldest first: pass, all failed, some failed, none, pass.
    let strip = &r.body[r.body.find("class=\"strip\"").unwrap()..];
    let classes: Vec<&str> = strip
        .split("<i class=\"")
        .skip(1)
        .take(5)
        .map(|s| &s[..1])
        .collect();
    assert_eq!(classes, ["u", "d", "p", "n", "u"], "{strip}");
    assert!(
        strip.contains("data-s=\"2,2,0.0500,status&lt;script&gt;"),
        "{strip}"
    );
    // Uptime and the last failure (from the history: it stays after recovery).
    assert!(r.body.contains("99.50%"), "{}", r.body);
    assert!(
        r.body
            .contains("Last failure 2 min ago: timeout&lt;script&gt;"),
        "{}",
        r.body
    );
    assert!(r.body.contains("body was &lt;script&gt;"), "{}", r.body);
    // The list part alone, for the refresh.
    let list = page(p.admin, "/status/list?q=shop");
    assert!(list.body.contains("data-name=\"shop\""));
    assert!(
        !list.body.contains("data-name=\"internal/db\""),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<html"));
}

#[test]
fn scenario_page_has_a_chart_per_step_and_an_escaped_kept_trace() {
    let p = start(&yaml(""), fake());
    let r = page(p.admin, "/scenario/shop?run=7");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_no_injection(&r.body);
    for title in ["Whole run", "Step home (http)", "Step cart (http)"] {
        assert!(r.body.contains(title), "no chart {title}");
    }
    assert_eq!(r.body.matches("<circle").count(), 3 * 12);
    assert!(r.body.contains("TRACE-ONLY"), "the kept trace is shown");
    assert!(r.body.contains("got &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(r.body.contains("dns&lt;script&gt;"), "incident listed");
    let missing = page(p.admin, "/scenario/nope%3Cscript%3E");
    assert_eq!(missing.status, 404);
    assert_no_injection(&missing.body);
    // A name with a slash is one scenario.
    assert_eq!(page(p.admin, "/scenario/internal/db").status, 200);
}

#[test]
fn public_page_shows_public_scenarios_only_and_no_trace_error_or_config() {
    let p = start(&yaml(""), fake());
    let over = page(p.public, "/");
    assert_eq!(over.status, 200);
    assert_no_injection(&over.body);
    assert!(over.body.contains("data-name=\"shop\""));
    assert!(!over.body.contains("internal/db"), "{}", over.body);
    assert!(
        !over.body.contains("body was"),
        "error text on the public page"
    );
    assert!(!over.body.contains("/config"), "links to the configuration");
    assert!(
        !over.body.contains("s.yaml"),
        "the configuration's source on the public page"
    );
    // Slot tooltips without reasons.
    assert!(
        over.body.contains("data-s=\"2,2,0.0500,\""),
        "{}",
        over.body
    );
    let sc = page(p.public, "/scenario/shop?run=7");
    assert_eq!(sc.status, 200);
    assert!(
        !sc.body.contains("TRACE-ONLY"),
        "a trace on the public page"
    );
    assert!(!sc.body.contains("Trace of the last run"));
    assert!(!sc.body.contains("body was"));
    assert!(
        !sc.body.contains("step&lt;script"),
        "the failing step on the public page"
    );
    assert!(sc.body.contains("Step cart (http)"), "charts stay");
    assert_eq!(page(p.public, "/scenario/internal/db").status, 404);
    for path in [
        "/config",
        "/metrics",
        "/probe?target=127.0.0.1:1",
        "/api/v1/scenarios",
        "/api/v1/scenarios/shop",
        "/-/reload",
        "/regions",
    ] {
        assert_eq!(
            page(p.public, path).status,
            404,
            "{path} on the public listener"
        );
    }
    // The admin listener has them, and says where its configuration comes from.
    assert_eq!(page(p.admin, "/config").status, 200);
    assert!(page(p.admin, "/").body.contains("s.yaml"));
}

#[test]
fn thousands_of_scenarios_are_paged_and_each_page_stays_small() {
    let mut extra = String::new();
    for i in 0..230 {
        extra.push_str(&format!(
            "  - scenario: bulk-{i:04}\n    interval: 1h\n    tags: [bulk]\n    tcp: {{target: \"127.0.0.1:1\"}}\n"
        ));
    }
    let p = start(&yaml(&extra), fake());
    let first = page(p.admin, "/?q=bulk");
    assert_eq!(first.body.matches("<article").count(), 50);
    assert!(
        first.body.contains("page 1 of 5 (230 scenarios)"),
        "no paging"
    );
    assert!(first.body.len() < 400_000, "{} bytes", first.body.len());
    let last = page(p.admin, "/?q=bulk&page=5");
    assert_eq!(last.body.matches("<article").count(), 30);
    assert!(last.body.contains("bulk-0229"));
    let beyond = page(p.admin, "/?q=bulk&page=99999999999999999999");
    assert_eq!(beyond.status, 200);
}

#[test]
fn without_history_the_page_says_so_and_still_lists_state() {
    let p = start(&yaml(""), None);
    let r = page(p.admin, "/");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("history off"));
    assert!(r.body.contains("data-name=\"internal/db\""));
    let sc = page(p.admin, "/scenario/shop");
    assert!(sc.body.contains("History is off"));
}

#[test]
fn assets_are_served_from_the_binary_and_nothing_from_elsewhere() {
    let p = start(&yaml(""), fake());
    let css = page(p.admin, "/assets/status.css");
    assert!(css.body.contains("prefers-color-scheme: dark"));
    let js = page(p.public, "/assets/status.js");
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    for path in ["/", "/scenario/shop"] {
        let body = page(p.admin, path).body;
        for remote in ["http://", "https://", "//cdn"] {
            let refs = body.matches(&format!("src=\"{remote}")).count()
                + body.matches(&format!("href=\"{remote}")).count();
            assert_eq!(refs, 0, "{path} loads from {remote}");
        }
    }
    assert_eq!(page(p.admin, "/assets/..%2fCargo.toml").status, 404);
}
