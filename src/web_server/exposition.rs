//! `/metrics` rendered into memory once, shared by every client that asked meanwhile, and
//! written without any lock or slot held.
//!
//! Before, each scrape streamed the exposition through a bounded channel from an encoder that
//! held one of 4 "scrape slots" until the client had read everything: 4 clients that asked and
//! never read held all 4, and every other `/metrics` waited as long as they stayed connected.
//! Now the encoder renders into bytes and is done; writing them is the connection's business
//! (bounded by the write timeout), and what a slow client holds is a reference to bytes that
//! concurrent clients share.
//!
//! Freshness: a request never gets a rendering that started before it arrived. Requests that
//! arrive while a rendering runs wait for it to end and then share the next one, so however
//! many scrape at once, at most one rendering per format runs and each costs one render.

use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;

use crate::metrics::{Format, Metrics};

/// One rendered exposition: its chunks, shared.
pub type Rendered = Arc<Vec<Bytes>>;

/// The last rendering of one format and when it started. Weak: it is shared while some
/// client still holds it, and its memory goes with the last one.
type Slot = tokio::sync::Mutex<Option<(Instant, Weak<Vec<Bytes>>)>>;

#[derive(Default)]
pub struct Exposition {
    text: Slot,
    openmetrics: Slot,
}

impl Exposition {
    /// The exposition in `format`, rendered after this call began: `prefix` (blackbox's own
    /// series), then `metrics`. `None` if the renderer crashed.
    pub async fn get(
        &self,
        metrics: &Arc<Metrics>,
        format: Format,
        prefix: impl FnOnce() -> String,
    ) -> Option<Rendered> {
        let arrived = Instant::now();
        let slot = match format {
            Format::PrometheusText => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        };
        // Held only while rendering: waiters queue here and share the result.
        let mut last = slot.lock().await;
        if let Some((started, r)) = &*last {
            if let (true, Some(r)) = (*started >= arrived, r.upgrade()) {
                return Some(r);
            }
        }
        let started = Instant::now();
        let own = Bytes::from(prefix());
        let m = metrics.clone();
        // Encoding 10k scenarios' series is tens of milliseconds of CPU: keep it off the
        // runtime's worker threads so probe timings are not disturbed.
        let chunks = tokio::task::spawn_blocking(move || {
            let mut chunks = vec![own];
            chunks.extend(m.encode(format));
            chunks
        })
        .await
        .ok()?;
        let r = Arc::new(chunks);
        *last = Some((started, Arc::downgrade(&r)));
        Some(r)
    }
}
