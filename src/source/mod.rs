//! Central configuration: `-c` takes `http://` and `https://` URLs beside files and folders.
//!
//! A URL's body is one YAML document (scenarios or agent settings). It is fetched at start,
//! polled every `--config-poll-interval` with `If-None-Match`/`If-Modified-Since` (an unchanged
//! document costs the server a 304 and sonde nothing), and again on SIGHUP and `POST /-/reload`.
//! A URL may pin its content with a `#sha256=HEX` fragment (the fragment is never sent): a body
//! with another digest is refused. `--config-bearer-token-file` authenticates every fetch.
//!
//! An unreachable server, an error status, a digest mismatch or an invalid document rejects the
//! reload: the last good configuration keeps running, the failure is logged and
//! `sonde_config_last_reload_successful` reads 0 until a fetch succeeds again.
//!
//! A URL's document is trusted less than a file (no `file()`, no `*_file` keys, only the `env`
//! names of `--config.remote-env`: see [`crate::config::trust`]) and downloads stop at
//! `--config.max-file-size`.
//!
//! Files and folders are also watched ([`watch`]), so edits apply without a signal.

pub mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{self, ConfigError, Input, LoadOptions};

/// A URL document larger than this is refused by default (`--config.max-file-size`): a
/// misconfigured server must not fill memory.
pub const MAX_DOCUMENT_BYTES: u64 = config::limits::DEFAULT_MAX_FILE_BYTES;

/// Default for `--config-poll-interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Whether a `-c` argument names a URL rather than a path.
pub fn is_url(arg: &std::path::Path) -> bool {
    let s = arg.to_string_lossy();
    s.starts_with("http://") || s.starts_with("https://")
}

/// The `-c` inputs when at least one is a URL.
pub struct Sources {
    entries: Vec<Entry>,
    client: reqwest::Client,
    bearer: Option<String>,
    pub poll_interval: Duration,
    /// Downloads stop (and fail) past this many bytes.
    max_bytes: u64,
}

enum Entry {
    Path(PathBuf),
    Url(Box<UrlSource>),
}

struct UrlSource {
    /// Without the fragment: what is fetched.
    url: reqwest::Url,
    /// As given (the pin included), userinfo and credential parameters redacted: what
    /// messages, `/`, `/config` and the scenarios' `defined_at` show.
    shown: String,
    pin: Option<Vec<u8>>,
    state: Mutex<Fetched>,
}

/// What the last successful fetch brought, and its validators for the next one.
#[derive(Default)]
struct Fetched {
    etag: Option<String>,
    last_modified: Option<String>,
    body: Option<String>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Sources {
    /// Build from the `-c` arguments; URLs are checked (scheme, host, pin) here, so a typo is a
    /// usage error at start.
    pub fn new(
        args: &[PathBuf],
        bearer: Option<String>,
        poll_interval: Duration,
    ) -> Result<Sources, String> {
        let mut entries = Vec::new();
        for a in args {
            if !is_url(a) {
                entries.push(Entry::Path(a.clone()));
                continue;
            }
            let raw = a.to_string_lossy();
            let shown = crate::redact::text(&raw).into_owned();
            let mut url = reqwest::Url::parse(&raw)
                .ok()
                .filter(|u| u.host().is_some())
                .ok_or_else(|| {
                    format!("-c {shown}: not a valid URL — expected http(s)://host/path")
                })?;
            let pin = match url.fragment() {
                None => None,
                Some(f) => {
                    let hex = f.strip_prefix("sha256=").ok_or_else(|| {
                        let f = crate::redact::text(&format!("#{f}")).into_owned();
                        format!("-c {shown}: unknown fragment {f} — expected #sha256=<64 hex digits> or none")
                    })?;
                    Some(decode_hex(hex).filter(|d| d.len() == 32).ok_or_else(|| {
                        format!("-c {shown}: #sha256= needs 64 hex digits — expected the document's SHA-256")
                    })?)
                }
            };
            url.set_fragment(None);
            entries.push(Entry::Url(Box::new(UrlSource {
                url,
                shown,
                pin,
                state: Mutex::new(Fetched::default()),
            })));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client for -c URLs: {e}"))?;
        Ok(Sources {
            entries,
            client,
            bearer,
            poll_interval,
            max_bytes: MAX_DOCUMENT_BYTES,
        })
    }

    /// Refuse documents larger than `n` bytes (`--config.max-file-size`).
    pub fn with_max_bytes(mut self, n: u64) -> Sources {
        self.max_bytes = n;
        self
    }

    pub fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|e| match e {
                Entry::Path(p) => p.display().to_string(),
                Entry::Url(u) => crate::redact::url(&u.url),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The files and folders among the inputs (to watch).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Path(p) => Some(p.clone()),
                Entry::Url(_) => None,
            })
            .collect()
    }

    /// Fetch every URL again, then load. Call from a blocking thread inside the runtime (the
    /// loader runs in `spawn_blocking`).
    pub fn load(&self, opts: &LoadOptions) -> Result<config::Loaded, Vec<ConfigError>> {
        let fetched = tokio::runtime::Handle::try_current()
            .map_err(|e| vec![self.error(format!("no async runtime to fetch with: {e}"))])?
            .block_on(self.fetch_all());
        fetched?;
        let mut inputs = Vec::new();
        for e in &self.entries {
            match e {
                Entry::Path(p) => inputs.push(Input::Path(p.clone())),
                Entry::Url(u) => {
                    let st = u.state.lock().unwrap_or_else(|e| e.into_inner());
                    let text = st.body.clone().unwrap_or_default();
                    inputs.push(Input::Text {
                        origin: crate::redact::url(&u.url),
                        text,
                    });
                }
            }
        }
        config::load_inputs(&inputs, opts)
    }

    fn error(&self, message: String) -> ConfigError {
        ConfigError {
            file: self.describe(),
            line: 0,
            column: 0,
            message,
        }
    }

    /// Fetch every URL; `Ok(true)` if any document changed since the last fetch.
    pub async fn fetch_all(&self) -> Result<bool, Vec<ConfigError>> {
        let mut changed = false;
        let mut errors = Vec::new();
        for e in &self.entries {
            if let Entry::Url(u) = e {
                match self.fetch(u).await {
                    Ok(c) => changed |= c,
                    Err(message) => errors.push(ConfigError {
                        file: crate::redact::url(&u.url),
                        line: 0,
                        column: 0,
                        message,
                    }),
                }
            }
        }
        if errors.is_empty() {
            Ok(changed)
        } else {
            Err(errors)
        }
    }

    async fn fetch(&self, u: &UrlSource) -> Result<bool, String> {
        let mut req = self.client.get(u.url.clone());
        {
            let st = u.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.body.is_some() {
                if let Some(etag) = &st.etag {
                    req = req.header(reqwest::header::IF_NONE_MATCH, etag);
                }
                if let Some(lm) = &st.last_modified {
                    req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
                }
            }
        }
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.map_err(|e| {
            format!(
                "cannot fetch: {} — expected a reachable server",
                crate::error_chain::error_chain(&e.without_url())
            )
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(format!(
                "the server answered {status} — expected 200 with a YAML document"
            ));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            format!(
                "the download broke off: {} — expected a whole document",
                crate::error_chain::error_chain(&e.without_url())
            )
        })? {
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(format!(
                    "the document is larger than {} — expected a configuration file within --config.max-file-size",
                    config::limits::human_bytes(self.max_bytes)
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if let Some(pin) = &u.pin {
            let got = ring::digest::digest(&ring::digest::SHA256, &body);
            if got.as_ref() != pin.as_slice() {
                return Err(format!(
                    "its SHA-256 is {} — expected the pinned {} (from {})",
                    encode_hex(got.as_ref()),
                    encode_hex(pin),
                    u.shown
                ));
            }
        }
        let text = String::from_utf8(body)
            .map_err(|_| "the document is not UTF-8 — expected a YAML file".to_string())?;
        let mut st = u.state.lock().unwrap_or_else(|e| e.into_inner());
        let changed = st.body.as_deref() != Some(text.as_str());
        *st = Fetched {
            etag,
            last_modified,
            body: Some(text),
        };
        Ok(changed)
    }
}

/// Poll the URLs until `stop`; reload when a document changed. A failed fetch is logged and
/// shown in `sonde_config_last_reload_successful`; the running configuration stays.
pub async fn poll(
    app: Arc<crate::serve::App>,
    sources: Arc<Sources>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(sources.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: the start-up load has just fetched
                       // After a failed fetch an unchanged document (304) still needs a reload: that is what
                       // clears `sonde_config_last_reload_successful`.
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sources.fetch_all().await {
            Ok(false) if !failing => {}
            Ok(changed) => {
                failing = false;
                if changed {
                    tracing::info!("a configuration URL changed; reloading");
                } else {
                    tracing::info!("the configuration URLs answer again; reloading");
                }
                let _ = app.reload().await;
            }
            Err(errors) => {
                failing = true;
                app.metrics.config_last_reload_successful.set(0);
                for e in errors {
                    tracing::error!(
                        "configuration poll failed, the last good configuration keeps running: {e}"
                    );
                }
            }
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
