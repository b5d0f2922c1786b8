//! The scheduler across reloads, observed through its metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sonde::config::scenario::Config;
use sonde::config::{load_str, LoadOptions};
use sonde::metrics::{Format, Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde_testkit::http::RawServer;
use tokio::time::Instant;

/// Hang guard: polls `f` every 10 ms, panics after 15 s.
async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let guard = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(
            Instant::now() < guard,
            "hang guard: still waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn exposition(m: &Metrics) -> String {
    String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap()
}

/// A reload removes a scenario while its run is in flight, the next reload brings it back:
/// the old task's cleanup must not delete the new task's series (same labels), and the two
/// versions must not run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_removed_and_re_added_mid_run_keeps_its_series() {
    let never = RawServer::never_answers().await;
    let yaml = format!(
        "scenario: s\ninterval: 1s\ntimeout: 1s\nhttp: {{url: \"{}\"}}\n",
        never.url("/")
    );
    let cfg = load_str("t.yaml", &yaml, &LoadOptions::default()).expect("valid");
    let metrics = Metrics::new();
    let sched = Scheduler::new(RunMetrics::alone(metrics.clone(), None), None, 16);
    sched.apply(&cfg);
    wait_until("the first run to start", || {
        metrics.runs_in_flight.get() == 1
    })
    .await;
    sched.apply(&Config::default());
    sched.apply(&cfg);
    let st = sched.state("s").expect("scheduled again");
    wait_until("the new version's first run", || {
        st.runs.load(Ordering::Relaxed) >= 1
    })
    .await;
    let text = exposition(&metrics);
    assert!(
        text.contains(r#"sonde_scenario_runs_total{scenario="s",result="timeout"} 1"#),
        "the re-added scenario's series are gone or wrong:\n{text}"
    );
    sched.shutdown().await;
}
