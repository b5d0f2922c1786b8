//! A small mutation fuzzer that runs on the stable toolchain: a target is a function of bytes
//! that panics when its property fails. Inputs come from the checked-in corpus
//! (`fuzz/corpus/<target>/`) and from byte-level mutations of it (flips, inserts, deletions,
//! duplications, splices of two corpus entries, and "interesting" tokens), with `fastrand`
//! (already a dependency of sonde) as the seeded generator, so a run is reproducible from its
//! seed. No coverage feedback: cargo-fuzz needs a nightly toolchain, and a deterministic,
//! dictionary-guided mutator over a fixture-seeded corpus already reaches the parsers' corners.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest input a target is given: bounded inputs make "never hangs" a meaningful property.
pub const MAX_INPUT: usize = 16 * 1024;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Tokens the mutator inserts (YAML keys, template syntax, protocol bytes).
    pub dict: &'static [&'static str],
    /// One execution longer than this is a hang (a finding).
    pub hang: Duration,
}

/// What a run over a target found.
#[derive(Default)]
pub struct Stats {
    pub execs: u64,
    /// Saved inputs (a campaign) or the failing inputs themselves, escaped (`cargo test`).
    pub findings: Vec<String>,
}

pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every file of the target's corpus, sorted by name (deterministic order).
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("read corpus file");
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Mutate `base` in place: 1–4 random edits.
pub fn mutate(rng: &mut fastrand::Rng, base: &mut Vec<u8>, other: &[u8], dict: &[&str]) {
    for _ in 0..rng.usize(1..=4) {
        let len = base.len();
        match rng.u8(0..8) {
            0 if len > 0 => {
                let i = rng.usize(0..len);
                base[i] ^= 1 << rng.u8(0..8);
            }
            1 if len > 0 => {
                let i = rng.usize(0..len);
                base[i] = *rng
                    .choice(b"\0\n\r\t \"'\\{}[]:-#&*!|>%@`,\xff\xc3")
                    .unwrap();
            }
            2 if len > 0 => {
                let a = rng.usize(0..len);
                let b = (a + rng.usize(1..=32)).min(len);
                base.drain(a..b);
            }
            3 if len > 0 => {
                // Duplicate a chunk (nesting, repetition).
                let a = rng.usize(0..len);
                let b = (a + rng.usize(1..=64)).min(len);
                let chunk = base[a..b].to_vec();
                let at = rng.usize(0..=len);
                for _ in 0..rng.usize(1..=8) {
                    base.splice(at..at, chunk.iter().copied());
                }
            }
            4 if !other.is_empty() => {
                // Splice: a piece of another corpus entry.
                let a = rng.usize(0..other.len());
                let b = (a + rng.usize(1..=128)).min(other.len());
                let at = rng.usize(0..=len);
                base.splice(at..at, other[a..b].iter().copied());
            }
            5 if len > 0 => {
                // Truncate.
                base.truncate(rng.usize(0..len));
            }
            _ if !dict.is_empty() => {
                let tok = rng.choice(dict).unwrap().as_bytes();
                let at = rng.usize(0..=len);
                base.splice(at..at, tok.iter().copied());
            }
            _ => base.push(rng.u8(..)),
        }
    }
    base.truncate(MAX_INPUT);
}

/// Run one input; `Err` is the panic message.
pub fn exec(t: &Target, input: &[u8]) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| (t.run)(input))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// Save a failing input as a regression case of the corpus; returns its path.
pub fn save_finding(target: &str, kind: &str, input: &[u8]) -> PathBuf {
    let h = input.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let path = corpus_dir(target).join(format!("{kind}-{h:016x}"));
    let _ = std::fs::write(&path, input);
    path
}

/// Watches the running execution: one that exceeds the target's bound is saved as a hang and
/// the process stops (a hung parser cannot be interrupted from outside).
struct Watchdog {
    started_ms: Arc<AtomicU64>,
    current: Arc<Mutex<Vec<u8>>>,
    epoch: Instant,
}

impl Watchdog {
    fn start(target: &'static str, hang: Duration, save: bool) -> Self {
        let started_ms = Arc::new(AtomicU64::new(u64::MAX));
        let current = Arc::new(Mutex::new(Vec::new()));
        let epoch = Instant::now();
        let (s, c) = (started_ms.clone(), current.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let at = s.load(Ordering::Relaxed);
            if at == u64::MAX - 1 {
                return;
            }
            if at != u64::MAX && epoch.elapsed().as_millis() as u64 > at + hang.as_millis() as u64 {
                let input = c.lock().map(|g| g.clone()).unwrap_or_default();
                let shown = if save {
                    save_finding(target, "hang", &input).display().to_string()
                } else {
                    format!("{:?}", String::from_utf8_lossy(&input))
                };
                eprintln!("FINDING {target}: an input ran longer than {hang:?}: {shown}");
                std::process::exit(3);
            }
        });
        Watchdog {
            started_ms,
            current,
            epoch,
        }
    }

    fn begin(&self, input: &[u8]) {
        if let Ok(mut g) = self.current.lock() {
            g.clear();
            g.extend_from_slice(input);
        }
        self.started_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn end(&self) {
        self.started_ms.store(u64::MAX, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.started_ms.store(u64::MAX - 1, Ordering::Relaxed);
    }
}

/// Run the whole corpus, then mutations until `mutations` runs or `budget` elapses (whichever
/// first). Findings are saved to the corpus and listed in the stats.
pub fn fuzz(t: &Target, seed: u64, mutations: u64, budget: Duration, save: bool) -> Stats {
    let corpus = corpus(t.name);
    assert!(!corpus.is_empty(), "the corpus of {} is empty", t.name);
    let dog = Watchdog::start(t.name, t.hang, save);
    let mut stats = Stats::default();
    let record = |stats: &mut Stats, input: &[u8], r: Result<(), String>| {
        stats.execs += 1;
        if let Err(msg) = r {
            let shown = if save {
                save_finding(t.name, "crash", input).display().to_string()
            } else {
                format!("{:?}", String::from_utf8_lossy(input))
            };
            eprintln!("FINDING {}: {msg}; input {shown}", t.name);
            stats.findings.push(shown);
        }
    };
    for (_, input) in &corpus {
        dog.begin(input);
        let r = exec(t, input);
        dog.end();
        record(&mut stats, input, r);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut n = 0;
    while n < mutations && start.elapsed() < budget {
        n += 1;
        let mut input = rng.choice(&corpus).unwrap().1.clone();
        let other = &rng.choice(&corpus).unwrap().1;
        mutate(&mut rng, &mut input, other, t.dict);
        dog.begin(&input);
        let r = exec(t, &input);
        dog.end();
        record(&mut stats, &input, r);
    }
    stats
}
