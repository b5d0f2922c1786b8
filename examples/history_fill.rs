//! Bench-only: fill a history store with DAYS of made-up runs, fast, through the store's own
//! writer (same tables, rollups and incidents as `sonde serve` writes), so the status page's
//! server time can be measured at 14 days of history without waiting 14 days.
//!
//!   cargo run --release --example history_fill -- DIR [SCENARIOS] [DAYS] [INTERVAL_S]
//!   # defaults: 100 scenarios, 14 days, one run every 60 s each (2,016,000 runs)
//!
//! Then `sonde serve --storage.path DIR -c …` with scenarios named `bench-00000`… reads it.
//! Every 97th run of a scenario fails (timeout, with a trace); durations wander between 20 and
//! 220 ms; scenario `bench-00001` is down for the last two hours (an open incident).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sonde::history::record::Record;
use sonde::history::writer::Writer;
use sonde::history::{schema, StepRow, StoreOptions};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: history_fill DIR [SCENARIOS] [DAYS] [INTERVAL_S]");
        std::process::exit(2);
    };
    let scenarios: usize = arg(&args, 2, 100);
    let days: i64 = arg(&args, 3, 14);
    let interval_ms: i64 = arg::<i64>(&args, 4, 60) * 1000;
    let now = sonde::time::now_ms();
    let start = now - days * 86_400_000;
    let clock_ms = Arc::new(AtomicI64::new(start));
    let c = clock_ms.clone();
    let path = std::path::Path::new(dir);
    let _lock = schema::lock_folder(path).unwrap_or_else(|e| panic!("{e}"));
    let conn = schema::open_writer(path).unwrap_or_else(|e| panic!("{e}"));
    let mut w = Writer::new(
        conn,
        Arc::new(move || c.load(Ordering::Relaxed)),
        StoreOptions {
            retention: std::time::Duration::from_secs((days as u64 + 1) * 86_400),
            max_size: 0,
            ..Default::default()
        },
    );
    let names: Vec<Arc<str>> = (0..scenarios)
        .map(|i| Arc::from(format!("bench-{i:05}").as_str()))
        .collect();
    let region: Arc<str> = Arc::from("bench");
    let began = Instant::now();
    let mut batch = Vec::with_capacity(5000);
    let mut total = 0u64;
    let mut t = start;
    let mut tick = 0u64;
    while t < now {
        for (i, name) in names.iter().enumerate() {
            let n = tick + i as u64;
            let down = i == 1 && now - t < 2 * 3_600_000;
            let success = !down && n % 97 != 0;
            let dur = 0.02 + ((n * 7919) % 200) as f64 / 1000.0;
            batch.push(Record {
                scenario: name.clone(),
                region: region.clone(),
                started_ms: t + (i as i64 * 37) % interval_ms,
                duration_s: dur,
                success,
                failed_step: (!success).then(|| "get".into()),
                reason: (!success).then_some("timeout"),
                error: (!success).then(|| "no answer within 1s".into()),
                steps: vec![StepRow {
                    name: "get".into(),
                    kind: "http".into(),
                    success,
                    duration_s: dur,
                    phases: vec![
                        ("connect".into(), dur * 0.2),
                        ("processing".into(), dur * 0.7),
                        ("transfer".into(), dur * 0.1),
                    ],
                    once: false,
                }],
                trace: (!success)
                    .then(|| format!("{{\"scenario\":\"{name}\",\"generated\":true}}")),
            });
            if batch.len() == 5000 {
                clock_ms.store(t, Ordering::Relaxed);
                w.write(&batch).expect("write a batch");
                total += batch.len() as u64;
                batch.clear();
            }
        }
        t += interval_ms;
        tick += 1;
    }
    clock_ms.store(now, Ordering::Relaxed);
    w.write(&batch).expect("write the last batch");
    total += batch.len() as u64;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "history_fill: {total} runs of {scenarios} scenarios over {days} days in {secs:.1}s \
         ({:.0} runs/s); {} MB of data",
        total as f64 / secs,
        w.used_bytes().unwrap_or(0) / 1_000_000
    );
}
