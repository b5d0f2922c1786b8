//! What each scenario's series cost (issue 12): the heap that 5,000 persistent IM sessions of
//! the benchmark's shape (bench/lib/im_tcp_config.py: six setup steps, two steps) hold in
//! `ScenarioMetrics` after three runs, and how long `/metrics` takes to render 10,000 of them.
//! A measurement, not a check: ignored, and meaningful in release.
//!
//!   cargo test --release --test metrics_memory -- --ignored --nocapture

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde::config::scenario::Scenario;
use sonde::config::{load_str, LoadOptions};
use sonde::engine::{RunReport, RunResult, Stage, StepFacts, StepReport};
use sonde::metrics::{Format, Metrics, ScenarioMetrics};
use sonde::runtime::observer::{ScenarioObserver, SessionEvent};
use sonde_probes::{Phase, Timings};

/// mimalloc, as the sonde binary, counting the bytes asked for, the bytes of the blocks that
/// hold them (mimalloc's size classes) and the blocks, live.
struct Counting;

static BYTES: AtomicI64 = AtomicI64::new(0);
static HELD: AtomicI64 = AtomicI64::new(0);
static BLOCKS: AtomicI64 = AtomicI64::new(0);

/// The size of mimalloc's block for `size` bytes: whole words up to 64 bytes, then four size
/// classes per doubling.
fn block(size: usize) -> i64 {
    let w = size.div_ceil(8).max(1);
    if w <= 8 {
        return (w * 8) as i64;
    }
    let step = 1 << ((usize::BITS - 1 - (w - 1).leading_zeros()) - 2);
    (((w - 1) / step + 1) * step * 8) as i64
}

fn count(size: usize, sign: i64) {
    BYTES.fetch_add(sign * size as i64, Ordering::Relaxed);
    HELD.fetch_add(sign * block(size), Ordering::Relaxed);
    BLOCKS.fetch_add(sign, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size(), 1);
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(l.size(), -1);
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(l.size(), -1);
        count(new, 1);
        unsafe { mimalloc::MiMalloc.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The scenarios of `im_tcp_config.py FIRST COUNT 127.0.0.1:1 10s`.
fn im_sessions(first: usize, count: usize) -> Vec<Arc<Scenario>> {
    let connect = |c: &str| {
        format!(
            "{{name: {c}-connect, tcp.connect: {{as: {c}, target: \"127.0.0.1:1\", \
             framing: {{length: {{bytes: 4}}}}, proto_file: examples/chat.proto, \
             message: chat.v1.ServerFrame, heartbeat: {{hex: \"1a00\", every: 30s}}}}}}"
        )
    };
    let send = |c: &str| {
        format!(
            "tcp.send: {{on: {c}, proto_file: examples/chat.proto, \
             message: chat.v1.ClientFrame, protobuf: "
        )
    };
    let login = |c: &str, u: &str| {
        let token = format!("\"{{{{ hmac_sha256('sonde-demo-secret', '{u}') }}}}\"");
        format!(
            "{{name: {c}-login, {}{{login: {{user: {u}, token: {token}}}}}}}}}",
            send(c)
        )
    };
    let ok = |c: &str, u: &str| {
        format!(
            "{{name: {c}-ok, tcp.expect: {{on: {c}, match: {{json: {{\"$.login_ok.user\": {u}}}}}, \
             within: 3s}}}}"
        )
    };
    let mut yaml = String::from("scenarios:\n");
    for i in first..first + count {
        let (a, b) = (format!("alice-{i}"), format!("bob-{i}"));
        let msg = format!(
            "{{name: send, {}{{send: {{to: {b}, id: \"{{{{ uuid() }}}}\", text: hi}}}}, \
             capture: {{msg_id: {{json: \"$.send.id\"}}}}}}}}",
            send("a")
        );
        let deliver = "{name: deliver, tcp.expect: {on: b, match: {json: \
                       {\"$.message.id\": \"{{ msg_id }}\"}}, within: 3s}}";
        yaml.push_str(&format!(
            "  - scenario: im-tcp-{i:05}\n    interval: 10s\n    timeout: 5s\n    \
             session: persistent\n    setup:\n      - {}\n      - {}\n      - {}\n      \
             - {}\n      - {}\n      - {}\n    steps:\n      - {msg}\n      - {deliver}\n",
            connect("a"),
            login("a", &a),
            ok("a", &a),
            connect("b"),
            login("b", &b),
            ok("b", &b),
        ));
    }
    let cfg = load_str("im.yaml", &yaml, &LoadOptions::default()).expect("valid");
    cfg.scenarios
}

fn step(name: &str, phases: &[(Phase, f64)]) -> StepReport {
    let mut timings = Timings::default();
    for (p, ms) in phases {
        timings.add(*p, Duration::from_secs_f64(ms / 1000.0));
    }
    StepReport {
        name: name.into(),
        kind: "tcp",
        stage: Stage::Steps,
        success: true,
        duration: Duration::from_micros(700),
        failure: None,
        attempts: 1,
        timings,
        remote_addr: None,
        events: vec![],
        captures: vec![],
        checks: vec![],
        facts: StepFacts::Tcp(Default::default()),
    }
}

/// The first run sets the session up (all eight steps), the next two only send and deliver.
fn runs() -> [RunReport; 3] {
    let c = [(Phase::Connect, 0.1)];
    let run = |steps: Vec<StepReport>| RunReport {
        scenario: String::new(),
        started_at: String::new(),
        duration: Duration::from_millis(3),
        result: RunResult::Success,
        failed_step: None,
        steps,
        internal_error: None,
        session_events: vec![],
        secrets: vec![],
    };
    let names = [
        "a-connect",
        "a-login",
        "a-ok",
        "b-connect",
        "b-login",
        "b-ok",
    ];
    let mut first: Vec<StepReport> = names
        .iter()
        .map(|n| step(n, if n.ends_with("connect") { &c } else { &[] }))
        .collect();
    first.extend([step("send", &[]), step("deliver", &[])]);
    let again = || run(vec![step("send", &[]), step("deliver", &[])]);
    [run(first), again(), again()]
}

/// Each scenario's series after `runs`, into `kept` (with room for them: its own growth is not
/// theirs).
fn watch(
    kept: &mut Vec<ScenarioMetrics>,
    m: &Arc<Metrics>,
    scenarios: &[Arc<Scenario>],
    runs: &[RunReport],
) {
    let up = SessionEvent::State {
        connected: true,
        since: None,
    };
    for s in scenarios {
        let mut sm = ScenarioMetrics::new(m.clone(), s, None);
        sm.session(&up);
        for r in runs {
            sm.record(r);
        }
        sm.session_age(Some(Duration::from_secs(20)));
        kept.push(sm);
    }
}

/// Bytes asked for, bytes held (mimalloc's blocks), blocks: live now.
fn heap() -> [i64; 3] {
    [&BYTES, &HELD, &BLOCKS].map(|a| a.load(Ordering::Relaxed))
}

/// Median and best of `n` renderings.
fn time_encode(m: &Metrics, format: Format, n: usize) -> (Duration, Duration, usize) {
    let mut times = Vec::new();
    let mut len = 0;
    for _ in 0..n {
        let t = Instant::now();
        let chunks = m.encode(format);
        times.push(t.elapsed());
        len = chunks.iter().map(|c| c.len()).sum();
    }
    times.sort();
    (times[n / 2], times[0], len)
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn series_memory_per_session_and_encode_time() {
    const N: usize = 5_000;
    let first = im_sessions(0, N);
    let second = im_sessions(N, N);
    let runs = runs();
    let m = Metrics::new();
    let mut kept = Vec::with_capacity(2 * N);
    let before = heap();
    watch(&mut kept, &m, &first, &runs);
    let after = heap();
    let per = |i: usize| (after[i] - before[i]) as f64 / N as f64;
    println!(
        "size_of::<ScenarioMetrics>() = {}",
        size_of::<ScenarioMetrics>()
    );
    println!(
        "{N} sessions, per session: {:.0} bytes asked, {:.0} in mimalloc blocks, {:.1} blocks",
        per(0),
        per(1),
        per(2)
    );
    watch(&mut kept, &m, &second, &runs);
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let (median, best, len) = time_encode(&m, format, 9);
        println!(
            "{} sessions, {format:?}: {len} bytes, encode median {median:.1?}, best {best:.1?}",
            kept.len()
        );
    }
}
