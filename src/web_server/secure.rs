//! `--web.config.file` at run time: the configuration in force, re-loaded when the file or a
//! certificate, key or CA file it names changes (checked on every connection and request: a
//! `stat` and a digest of a few small files, so a rotated certificate is served from the next handshake, a removed user
//! refused from the next request, with no restart and no signal); basic auth; the rate limit.
//!
//! A changed file that does not load is logged once and the previous configuration stays in
//! force: a half-written certificate must not take the endpoints down.
//!
//! Basic auth, as exporter-toolkit's: the password is checked against the user's bcrypt hash
//! (in constant time, by the bcrypt crate); an unknown user is checked against a fixed hash so
//! timing does not tell which users exist. A success is remembered, keyed by an HMAC (a key
//! drawn at start) of user, hash and password, so Prometheus' scrape every few seconds does
//! not cost a bcrypt each time; a failure is never remembered, and bcrypt runs one at a time
//! off the async workers, so guessing costs a full bcrypt per guess and cannot starve probes.
//! The cache lookup is by that keyed digest, which an attacker cannot compute, so its timing
//! tells nothing about the password.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::config::web::WebConfig;
use crate::config::ConfigError;

/// The remembered successes at most; beyond, the memory starts over.
const CACHE_MAX: usize = 1024;

/// What identifies a file's version: its metadata, and a digest of its content, because two
/// writes within one kernel timestamp tick (a few ms) leave the same mtime, and a password hash
/// replaced in place keeps the length and the inode.
type Stamp = Option<(SystemTime, u64, u64, [u8; 32])>;

/// Files above this are not digested (they are not certificates or web configurations).
const DIGEST_MAX: u64 = 1024 * 1024;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mut digest = [0u8; 32];
    if m.len() <= DIGEST_MAX {
        let bytes = std::fs::read(path).ok()?;
        digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    }
    Some((m.modified().ok()?, m.len(), m.ino(), digest))
}

struct Current {
    config: Arc<WebConfig>,
    stamps: Vec<Stamp>,
}

/// The web configuration of a running server.
pub struct WebSecurity {
    path: PathBuf,
    current: Mutex<Current>,
    cache_key: ring::hmac::Key,
    successes: Mutex<HashSet<[u8; 32]>>,
    bcrypt_one_at_a_time: tokio::sync::Semaphore,
    bucket: Mutex<(f64, Instant)>,
    /// bcrypt verifications run so far (what a guess costs; cached successes cost none).
    bcrypt_runs: std::sync::atomic::AtomicU64,
}

/// Nothing of it is shown: it holds the password hashes.
impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WebSecurity {
    /// Load `path`; its errors are the configuration's (located, secrets left out).
    pub fn load(path: PathBuf) -> Result<Arc<WebSecurity>, Vec<ConfigError>> {
        let config = crate::config::web::load(&path)?;
        let stamps = config.watched.iter().map(stamp).collect();
        let rng = ring::rand::SystemRandom::new();
        let cache_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).map_err(|_| {
            vec![ConfigError {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                message: "no randomness for the credential cache".into(),
            }]
        })?;
        let burst = config.rate_limit.map_or(0.0, |(b, _)| b as f64);
        Ok(Arc::new(WebSecurity {
            path,
            current: Mutex::new(Current {
                config: Arc::new(config),
                stamps,
            }),
            cache_key,
            successes: Mutex::new(HashSet::new()),
            bcrypt_one_at_a_time: tokio::sync::Semaphore::new(1),
            bucket: Mutex::new((burst, Instant::now())),
            bcrypt_runs: Default::default(),
        }))
    }

    /// The configuration in force, re-loaded first if a file of it changed.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now: Vec<Stamp> = cur.config.watched.iter().map(stamp).collect();
        if now == cur.stamps {
            return cur.config.clone();
        }
        // Remember what was seen either way: a broken file is reported once, not per request.
        cur.stamps = now;
        match crate::config::web::load(&self.path) {
            Ok(c) => {
                tracing::info!(file = %self.path.display(), "web configuration reloaded");
                cur.stamps = c.watched.iter().map(stamp).collect();
                cur.config = Arc::new(c);
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!("web configuration not reloaded: {e}");
                }
                tracing::error!(
                    "the previous web configuration (certificates, users) stays in force"
                );
            }
        }
        cur.config.clone()
    }

    /// `Ok` when the request may go on; else the answer (429 over the rate limit, 401 without
    /// valid credentials).
    pub async fn admit(&self, cfg: &WebConfig, headers: &HeaderMap) -> Result<(), Response<Body>> {
        if let Some((burst, interval)) = cfg.rate_limit {
            if !self.take_token(burst, interval) {
                return Err(plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"));
            }
        }
        if cfg.users.is_empty() || self.authenticated(cfg, headers).await {
            return Ok(());
        }
        let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        Err(r)
    }

    fn take_token(&self, burst: u32, interval: std::time::Duration) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() / interval.as_secs_f64();
        b.0 = (b.0 + refill).min(burst as f64);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    async fn authenticated(&self, cfg: &WebConfig, headers: &HeaderMap) -> bool {
        let Some((user, pass)) = basic_credentials(headers) else {
            return false;
        };
        let known = cfg.users.get(&user).cloned();
        let key = known
            .as_ref()
            .map(|hash| self.cache_key_of(&user, hash, &pass));
        if let Some(key) = &key {
            if self
                .successes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(key)
            {
                return true;
            }
        }
        let Ok(_turn) = self.bcrypt_one_at_a_time.acquire().await else {
            return false;
        };
        self.bcrypt_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The dummy hash too is made (once) off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            let matched = match &known {
                Some(hash) => bcrypt::verify(pass, hash),
                None => bcrypt::verify(pass, dummy_hash()),
            };
            known.is_some() && matched.unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if let (true, Some(key)) = (ok, key) {
            let mut s = self.successes.lock().unwrap_or_else(|e| e.into_inner());
            if s.len() >= CACHE_MAX {
                s.clear();
            }
            s.insert(key);
            return true;
        }
        false
    }

    fn cache_key_of(&self, user: &str, hash: &str, pass: &str) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.cache_key);
        for part in [user, hash, pass] {
            // Length-prefixed: ("ab", "c") and ("a", "bc") differ.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// A valid bcrypt hash of no one's password, for unknown users (cost 10, as htpasswd -B).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("sonde: no such user", 10).unwrap_or_default())
}

/// `Authorization: Basic …` as (user, password).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `http_server_config.headers` on a response.
pub fn decorate(cfg: &WebConfig, r: &mut Response<Body>) {
    for (k, v) in &cfg.headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
}

/// Whether the client's certificate (DER) has one of `allowed` among its SANs (DNS names,
/// e-mail addresses, IP addresses, URIs), as exporter-toolkit's `client_allowed_sans`.
pub fn san_allowed(der: &[u8], allowed: &[String]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return false;
    };
    ext.value.general_names.iter().any(|n| {
        let v =
            match n {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    s.to_string()
                }
                GeneralName::IPAddress(b) => match b.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                        .to_string(),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                        .to_string(),
                    _ => return false,
                },
                _ => return false,
            };
        allowed.contains(&v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn basic(user: &str, pass: &str) -> HeaderMap {
        use base64::Engine;
        let mut h = HeaderMap::new();
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {b}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn successes_are_cached_and_failures_always_cost_a_bcrypt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        let hash = bcrypt::hash("right", 4).unwrap();
        std::fs::write(&path, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let sec = WebSecurity::load(path.clone()).unwrap();
        let runs = || sec.bcrypt_runs.load(Ordering::Relaxed);
        let cfg = sec.current();
        assert!(sec.admit(&cfg, &basic("alice", "right")).await.is_ok());
        assert!(sec.admit(&cfg, &basic("alice", "right")).await.is_ok());
        assert_eq!(runs(), 1, "the second success must come from the cache");
        for _ in 0..3 {
            let r = sec.admit(&cfg, &basic("alice", "wrong")).await.unwrap_err();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(runs(), 4, "every failed guess costs a bcrypt");
        // An unknown user costs one too (no timing difference to find users by).
        assert!(sec.admit(&cfg, &basic("mallory", "right")).await.is_err());
        assert_eq!(runs(), 5);
        assert!(sec.admit(&cfg, &HeaderMap::new()).await.is_err());

        // A new hash for alice: the cached success of the old one does not let the old
        // password in.
        let new = bcrypt::hash("rotated", 4).unwrap();
        std::fs::write(&path, format!("basic_auth_users:\n  alice: '{new}'\n")).unwrap();
        let cfg = sec.current();
        assert!(sec.admit(&cfg, &basic("alice", "right")).await.is_err());
        assert!(sec.admit(&cfg, &basic("alice", "rotated")).await.is_ok());
    }

    #[tokio::test]
    async fn the_rate_limit_answers_429_beyond_its_burst() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, "rate_limit: {interval: 1h, burst: 2}\n").unwrap();
        let sec = WebSecurity::load(path).unwrap();
        let cfg = sec.current();
        assert!(sec.admit(&cfg, &HeaderMap::new()).await.is_ok());
        assert!(sec.admit(&cfg, &HeaderMap::new()).await.is_ok());
        let r = sec.admit(&cfg, &HeaderMap::new()).await.unwrap_err();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn basic_credentials_are_read_as_go_reads_them() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpwOmFzcw=="),
        );
        assert_eq!(basic_credentials(&h), Some(("u".into(), "p:ass".into())));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer dTpw"),
        );
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h), None);
    }
}
