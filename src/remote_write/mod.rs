//! remote_write push (Prometheus remote_write 1.0: protobuf, snappy block compression, HTTP
//! POST): for agents behind NAT or firewalls that no Prometheus can scrape.
//!
//! Every `send_interval` the sampler takes sonde's own exposition (what `/metrics` shows, see
//! [`expo`]), stamps it with the time and appends it to a bounded [`queue`]; the sender pushes
//! the queue in batches, oldest first. 5xx, 429 and network errors are retried with exponential
//! backoff (the batch stays queued, so nothing is lost while the queue has room, and is resent
//! unchanged: see [`queue`]); other 4xx answers mean the receiver will never take the batch,
//! which is dropped and counted as failed. Delivery is at least once: a batch the receiver
//! stored but whose answer was lost is sent again and counted sent once, at its 2xx.
//! Counters: `sonde_remote_write_samples_{enqueued,sent,failed,dropped}_total`; gauge
//! `sonde_remote_write_queue_samples`. Always `enqueued = sent + failed + dropped + queued`.

pub mod expo;
pub mod proto;
pub mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use prost::Message;

use crate::backoff::Backoff;
use crate::config::agent::RemoteWrite;
use crate::metrics::{Format, Metrics};
use expo::Labels;
use queue::{Counts, Queue};

/// Backoff between attempts: doubles from the first to the last.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The remote_write families, registered with the others at start (they read 0 while no
/// `remote_write:` is configured).
#[derive(Clone, Default)]
pub struct RemoteWriteMetrics {
    pub queue_samples: Gauge,
    pub queue_capacity: Gauge,
    pub enqueued: Counter,
    pub sent: Counter,
    pub failed: Counter,
    pub dropped: Counter,
    pub retries: Counter,
}

impl RemoteWriteMetrics {
    pub fn register(registry: &mut Registry) -> RemoteWriteMetrics {
        let m = RemoteWriteMetrics::default();
        let r = registry;
        r.register(
            "sonde_remote_write_queue_samples",
            "Samples waiting to be pushed",
            m.queue_samples.clone(),
        );
        r.register(
            "sonde_remote_write_queue_capacity_samples",
            "Samples the push queue holds at most; beyond, the oldest are dropped",
            m.queue_capacity.clone(),
        );
        r.register(
            "sonde_remote_write_samples_enqueued",
            "Samples taken for pushing",
            m.enqueued.clone(),
        );
        r.register(
            "sonde_remote_write_samples_sent",
            "Samples the receiver accepted",
            m.sent.clone(),
        );
        r.register(
            "sonde_remote_write_samples_failed",
            "Samples the receiver refused for good (4xx other than 429)",
            m.failed.clone(),
        );
        r.register(
            "sonde_remote_write_samples_dropped",
            "Samples dropped unsent because the queue was full",
            m.dropped.clone(),
        );
        r.register(
            "sonde_remote_write_retries",
            "Push attempts that failed and were retried (5xx, 429, network errors)",
            m.retries.clone(),
        );
        m
    }

    fn count(&self, c: Counts) {
        self.sent.inc_by(c.sent);
        self.failed.inc_by(c.failed);
        self.dropped.inc_by(c.dropped);
    }
}

/// Start sampling and pushing until `stop`. The returned task ends once the queue is flushed
/// after `stop` (at most [`FLUSH_GRACE`]): await it before exiting.
pub fn start(
    metrics: Arc<Metrics>,
    cfg: RemoteWrite,
    stop: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let client = match client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("remote_write disabled: {e}");
            return None;
        }
    };
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::new(cfg.queue_capacity)),
        wake: tokio::sync::Notify::new(),
    });
    metrics
        .remote_write
        .queue_capacity
        .set(cfg.queue_capacity as i64);
    let cfg = Arc::new(cfg);
    tracing::info!(url = %crate::redact::url(&cfg.url), interval = ?cfg.send_interval, capacity = cfg.queue_capacity, "remote_write: pushing");
    tokio::spawn(sample_loop(
        metrics.clone(),
        cfg.clone(),
        shared.clone(),
        stop.clone(),
    ));
    Some(tokio::spawn(send_loop(metrics, cfg, client, shared, stop)))
}

struct Shared {
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn client(cfg: &RemoteWrite) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .timeout(cfg.timeout)
        .no_proxy();
    if let Some(ca) = &cfg.tls.ca_pem {
        b = b.tls_built_in_root_certs(false);
        for c in reqwest::Certificate::from_pem_bundle(ca).map_err(|e| format!("ca_file: {e}"))? {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&cfg.tls.cert_pem, &cfg.tls.key_pem) {
        let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
        b = b.identity(
            reqwest::Identity::from_pem(&pem).map_err(|e| format!("cert_file/key_file: {e}"))?,
        );
    }
    if cfg.tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Take one snapshot of every series into the queue. Series labels are interned across
/// snapshots (`cache`, keyed by the series text), so a full queue holds each label set once.
fn snapshot(
    metrics: &Metrics,
    cfg: &RemoteWrite,
    cache: &mut HashMap<String, Arc<Labels>>,
    shared: &Shared,
) {
    let text =
        String::from_utf8_lossy(&metrics.encode(Format::PrometheusText).concat()).into_owned();
    let mut seen = HashMap::with_capacity(cache.len());
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let Some((series, _)) = expo::split_value(line) else {
            continue;
        };
        let labels = match cache.remove(series) {
            Some(l) => l,
            None => {
                let Some((mut labels, _)) = expo::parse_line(line) else {
                    continue;
                };
                for (k, v) in &cfg.external_labels {
                    if !labels.iter().any(|(n, _)| n == k) {
                        labels.push((k.clone(), v.clone()));
                    }
                }
                labels.sort();
                Arc::new(labels)
            }
        };
        let Some((_, value)) = expo::parse_line(line) else {
            continue;
        };
        samples.push((labels.clone(), value));
        seen.insert(series.to_string(), labels);
    }
    *cache = seen;
    let n = samples.len() as u64;
    if samples.len() > cfg.queue_capacity {
        tracing::warn!(
            samples = samples.len(),
            queue_capacity = cfg.queue_capacity,
            "remote_write: one sampling has more series than the queue holds; raise queue_capacity"
        );
    }
    let counts = {
        let mut q = shared.queue();
        let c = q.push(samples, crate::time::now_ms());
        metrics.remote_write.queue_samples.set(q.len() as i64);
        c
    };
    metrics.remote_write.enqueued.inc_by(n);
    metrics.remote_write.count(counts);
    shared.wake.notify_one();
}

async fn sample_loop(
    metrics: Arc<Metrics>,
    cfg: Arc<RemoteWrite>,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(cfg.send_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cache = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Encoding 10k scenarios' series is tens of milliseconds: off the runtime's workers.
        let (m, c, s) = (metrics.clone(), cfg.clone(), shared.clone());
        cache = tokio::task::spawn_blocking(move || {
            snapshot(&m, &c, &mut cache, &s);
            cache
        })
        .await
        .unwrap_or_default();
    }
}

/// The request body: samples grouped by series (consecutive samples of one series share its
/// labels), protobuf-encoded, snappy-compressed (block format, as the spec requires).
pub fn encode(batch: &[queue::Queued]) -> Vec<u8> {
    let mut by_series: Vec<(Arc<Labels>, Vec<proto::Sample>)> = Vec::new();
    let mut index: HashMap<*const Labels, usize> = HashMap::new();
    for s in batch {
        let key = Arc::as_ptr(&s.series);
        let i = *index.entry(key).or_insert_with(|| {
            by_series.push((s.series.clone(), Vec::new()));
            by_series.len() - 1
        });
        by_series[i].1.push(proto::Sample {
            value: s.value,
            timestamp: s.timestamp_ms,
        });
    }
    let req = proto::WriteRequest {
        timeseries: by_series
            .into_iter()
            .map(|(labels, samples)| proto::TimeSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| proto::Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap_or_default()
}

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 4xx other than 429: the receiver will never accept it.
    Rejected(String),
    Retry(String),
}

pub async fn push_once(client: &reqwest::Client, cfg: &RemoteWrite, body: Vec<u8>) -> Outcome {
    let mut req = client
        .post(cfg.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .header(reqwest::header::CONTENT_ENCODING, "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some((u, p)) = &cfg.basic_auth {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(t) = &cfg.bearer_token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        // Without the URL: it may hold a password or a `?token=` (the log shows the URL once,
        // redacted, at start).
        Err(e) => Outcome::Retry(format!(
            "cannot reach the receiver: {}",
            crate::error_chain::error_chain(&e.without_url())
        )),
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                return Outcome::Delivered;
            }
            let text: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            let why = format!("the receiver answered {status}: {}", text.trim());
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                Outcome::Retry(why)
            } else {
                Outcome::Rejected(why)
            }
        }
    }
}

/// At shutdown, how long the queue may still be pushed: a restart should not lose the last
/// interval's samples, nor wait long for a receiver that is away.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);

async fn send_loop(
    metrics: Arc<Metrics>,
    cfg: Arc<RemoteWrite>,
    client: reqwest::Client,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut health = ReceiverHealth::default();
    // Set at shutdown: from then on, push what is queued until empty or this instant.
    let mut flush_until: Option<tokio::time::Instant> = None;
    loop {
        if flush_until.is_none() && stop.is_cancelled() {
            flush_until = Some(tokio::time::Instant::now() + FLUSH_GRACE);
        }
        let batch = shared.queue().take_batch(cfg.max_samples_per_send);
        if batch.is_empty() {
            if flush_until.is_some() {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => continue,
                _ = shared.wake.notified() => continue,
            }
        }
        let body = encode(&batch);
        let outcome = match flush_until {
            None => tokio::select! {
                // Shutting down: start this batch again, in flush mode.
                _ = stop.cancelled() => Outcome::Retry("shutting down".into()),
                o = push_once(&client, &cfg, body) => o,
            },
            Some(until) => {
                match tokio::time::timeout_at(until, push_once(&client, &cfg, body)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::Retry("the shutdown grace ran out".into()),
                }
            }
        };
        let counts = {
            let mut q = shared.queue();
            let c = match &outcome {
                Outcome::Delivered => q.delivered(batch.len()),
                Outcome::Rejected(_) => q.rejected(batch.len()),
                Outcome::Retry(_) => q.retry(),
            };
            metrics.remote_write.queue_samples.set(q.len() as i64);
            c
        };
        metrics.remote_write.count(counts);
        health.after(&outcome);
        match outcome {
            Outcome::Delivered => backoff.reset(),
            Outcome::Rejected(why) => {
                backoff.reset();
                tracing::error!(
                    samples = batch.len(),
                    "remote_write: batch refused, not retried: {why}"
                );
            }
            Outcome::Retry(_) if stop.is_cancelled() && flush_until.is_none() => {}
            Outcome::Retry(why) => {
                metrics.remote_write.retries.inc();
                let pause = backoff.failed();
                if let Some(until) = flush_until {
                    if tokio::time::Instant::now() + pause >= until {
                        let left = shared.queue().len();
                        tracing::warn!(
                            samples = left,
                            "remote_write: stopping with samples unsent: {why}"
                        );
                        return;
                    }
                    tokio::time::sleep(pause).await;
                } else {
                    tracing::debug!(retry_in = ?pause, "remote_write: push failed, will retry: {why}");
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

/// Whether the receiver takes pushes, so the log says when that changes rather than once per
/// retry: an outage of an hour is two lines, not hundreds.
#[derive(Default)]
struct ReceiverHealth {
    /// Failed pushes in a row (retried ones).
    failures: u64,
}

/// A change of [`ReceiverHealth`] worth a log line.
#[derive(Debug, PartialEq)]
enum HealthChange {
    Down,
    /// Back, after this many failed pushes.
    Up(u64),
}

impl ReceiverHealth {
    fn after(&mut self, outcome: &Outcome) {
        match self.change(outcome) {
            Some(HealthChange::Down) => {
                let why = match outcome {
                    Outcome::Retry(why) => why.as_str(),
                    _ => "",
                };
                tracing::warn!("remote_write: the receiver does not take pushes; retrying with backoff, samples queue meanwhile: {why}");
            }
            Some(HealthChange::Up(n)) => {
                tracing::info!(
                    failed_pushes = n,
                    "remote_write: the receiver takes pushes again"
                );
            }
            None => {}
        }
    }

    fn change(&mut self, outcome: &Outcome) -> Option<HealthChange> {
        match outcome {
            Outcome::Retry(_) => {
                self.failures += 1;
                (self.failures == 1).then_some(HealthChange::Down)
            }
            Outcome::Delivered if self.failures > 0 => {
                Some(HealthChange::Up(std::mem::take(&mut self.failures)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn an_outage_is_one_line_down_and_one_line_up() {
        let mut h = ReceiverHealth::default();
        let retry = || Outcome::Retry("connection refused".into());
        let seen: Vec<_> = [
            retry(),
            retry(),
            retry(),
            Outcome::Delivered,
            Outcome::Delivered,
        ]
        .iter()
        .map(|o| h.change(o))
        .collect();
        assert_eq!(
            seen,
            [
                Some(HealthChange::Down),
                None,
                None,
                Some(HealthChange::Up(3)),
                None
            ]
        );
    }
}
