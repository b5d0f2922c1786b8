//! The state of a run (or of a persistent session across runs): captures, the cookie jar, open
//! WebSocket connections, kept-alive HTTP connections and the secrets met so far.

use cookie_store::{CookieStore, RawCookie};
use sonde_probes::http::HttpFacts;
use tokio::time::Instant;
use url::Url;

use crate::config::scenario::Captured;
use crate::engine::capture;
use crate::engine::conns::Conns;

/// Cookies a jar keeps at most: a hostile server cannot grow it without bound.
pub const MAX_COOKIES: usize = 64;

/// The state of a run (or of a persistent session across runs).
#[derive(Default)]
pub struct RunCtx {
    pub captures: Vec<Captured>,
    /// What only http steps use, made by the first: the context of a persistent session sits
    /// in its idle task between runs (10,000 sessions), and inline these took 72 of its bytes.
    web: Option<Box<WebState>>,
    /// Open long-lived connections (WebSocket…) by name.
    pub conns: Conns,
    /// When the last `ws.send` of this run was written: `ws.expect` measures from it.
    pub last_send: Option<Instant>,
    /// The last `ws.send` or `tcp.send`: its connection and what the kernel needs to time its
    /// answer.
    pub last_ws_send: Option<(String, sonde_probes::ws::Sent)>,
    /// The last `mqtt.publish`: when it was written (as `last_send`) and the kernel's send
    /// timestamp of its last byte, where a receiver's kernel figure starts. Boxed, as only
    /// MQTT runs have one (40 bytes inline).
    pub last_publish: Option<Box<Published>>,
    /// Secrets met so far (see [`crate::engine::RunReport::secrets`]).
    pub secrets: Vec<String>,
}

/// An `mqtt.publish`'s write and the kernel's send timestamp of its last byte.
pub type Published = (Instant, Result<sonde_probes::kts::RealTime, String>);

/// The http steps' state across a run (or a persistent session).
#[derive(Default)]
struct WebState {
    /// Cookies, by the rules of RFC 6265 (Domain, Path, Expires, Secure).
    cookies: CookieStore,
    /// Kept-alive HTTP connections (`reuse_connections`).
    http: sonde_probes::http::ConnPool,
}

impl RunCtx {
    pub fn set_capture(&mut self, name: &str, value: serde_json::Value) {
        if sonde_probes::http::is_secret_header(name) {
            self.add_secret(capture::text(&value));
        }
        self.captures.retain(|(k, _)| k != name);
        // One at a time: a persistent session keeps its captures between runs, and a first
        // push would make room for four (a scenario has a capture or two).
        self.captures.reserve_exact(1);
        self.captures.push((name.to_string(), value));
    }

    /// Remember a secret value (too short ones would redact ordinary text).
    pub fn add_secret(&mut self, s: String) {
        if s.len() >= crate::config::MIN_SECRET_LEN && !self.secrets.contains(&s) {
            self.secrets.push(s);
        }
    }

    fn web(&mut self) -> &mut WebState {
        self.web.get_or_insert_with(Box::default)
    }

    /// Kept-alive HTTP connections (`reuse_connections`).
    pub fn http_pool(&mut self) -> &mut sonde_probes::http::ConnPool {
        &mut self.web().http
    }

    /// The `Cookie` header the jar has for a request to `url`, if any.
    pub fn cookie_header(&self, url: &Url) -> Option<String> {
        let jar = &self.web.as_ref()?.cookies;
        let v: Vec<String> = jar
            .get_request_values(url)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        (!v.is_empty()).then(|| v.join("; "))
    }

    /// Keep the cookies a response to `url` set (`Set-Cookie`, in the secret headers).
    pub fn store_cookies(&mut self, url: &Url, facts: &HttpFacts) {
        for (n, v) in facts.secret_headers.iter() {
            if n.eq_ignore_ascii_case("set-cookie") {
                self.store_cookie(v, url);
            }
        }
    }

    fn store_cookie(&mut self, set_cookie: &str, url: &Url) {
        let Ok(raw) = RawCookie::parse(set_cookie.to_string()) else {
            return;
        };
        self.add_secret(raw.value().to_string());
        let Ok(c) = cookie_store::Cookie::try_from_raw_cookie(&raw, url) else {
            return;
        };
        let (domain, path) = (String::from(&c.domain), String::from(&c.path));
        let jar = &mut self.web().cookies;
        let known = jar.contains_any(&domain, &path, c.name());
        if !known && jar.iter_any().count() >= MAX_COOKIES {
            // Expired cookies stay in the store until dropped: make room with them first.
            let live: Vec<_> = jar.iter_unexpired().cloned().collect();
            *jar = CookieStore::from_cookies(live.into_iter().map(Ok::<_, ()>), false)
                .unwrap_or_default();
            if jar.iter_any().count() >= MAX_COOKIES {
                return;
            }
        }
        let _ = jar.insert(c.into_owned(), url);
    }

    /// Whether every connection is still open (a persistent session's health).
    pub fn broken(&self) -> Option<String> {
        self.conns.broken()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ctx: &mut RunCtx, url: &str, cookies: &[&str]) {
        let facts = HttpFacts {
            secret_headers: cookies
                .iter()
                .map(|c| ("set-cookie".to_string(), c.to_string()))
                .collect(),
            ..Default::default()
        };
        ctx.store_cookies(&Url::parse(url).unwrap(), &facts);
    }

    fn sent(ctx: &RunCtx, url: &str) -> Option<String> {
        ctx.cookie_header(&Url::parse(url).unwrap())
    }

    #[test]
    fn a_host_cookie_goes_back_to_its_host_only() {
        let mut ctx = RunCtx::default();
        set(&mut ctx, "http://a.test/login", &["sid=abc; Path=/"]);
        assert_eq!(sent(&ctx, "http://a.test/x").as_deref(), Some("sid=abc"));
        assert_eq!(sent(&ctx, "http://b.test/x"), None);
        assert_eq!(sent(&ctx, "http://sub.a.test/x"), None);
    }

    #[test]
    fn a_domain_cookie_goes_to_subdomains() {
        let mut ctx = RunCtx::default();
        set(
            &mut ctx,
            "http://login.a.test/",
            &["sid=abc; Domain=a.test; Path=/"],
        );
        assert_eq!(
            sent(&ctx, "http://api.a.test/x").as_deref(),
            Some("sid=abc")
        );
        assert_eq!(sent(&ctx, "http://a.test/").as_deref(), Some("sid=abc"));
        assert_eq!(sent(&ctx, "http://other.test/"), None);
        // A server cannot set a cookie for a domain it is not in.
        set(&mut ctx, "http://evil.test/", &["x=1; Domain=a.test"]);
        assert_eq!(sent(&ctx, "http://a.test/").as_deref(), Some("sid=abc"));
    }

    #[test]
    fn the_path_is_respected() {
        let mut ctx = RunCtx::default();
        set(&mut ctx, "http://a.test/", &["p=1; Path=/api"]);
        assert_eq!(
            sent(&ctx, "http://a.test/api/orders").as_deref(),
            Some("p=1")
        );
        assert_eq!(sent(&ctx, "http://a.test/"), None);
        assert_eq!(sent(&ctx, "http://a.test/apixyz"), None);
    }

    #[test]
    fn a_secure_cookie_is_not_sent_over_plain_http() {
        let mut ctx = RunCtx::default();
        set(&mut ctx, "https://a.test/", &["s=1; Secure; Path=/"]);
        assert_eq!(sent(&ctx, "https://a.test/").as_deref(), Some("s=1"));
        assert_eq!(sent(&ctx, "http://a.test/"), None);
    }

    #[test]
    fn expired_cookies_are_dropped() {
        let mut ctx = RunCtx::default();
        set(&mut ctx, "http://a.test/", &["a=1; Path=/", "b=2; Path=/"]);
        set(
            &mut ctx,
            "http://a.test/",
            &[
                "a=gone; Path=/; Max-Age=0",
                "b=gone; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "c=old; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            ],
        );
        assert_eq!(sent(&ctx, "http://a.test/"), None);
    }

    #[test]
    fn the_jar_keeps_at_most_64_cookies() {
        let mut ctx = RunCtx::default();
        let many: Vec<String> = (0..100).map(|i| format!("c{i}=v; Path=/")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        set(&mut ctx, "http://a.test/", &refs);
        let header = sent(&ctx, "http://a.test/").unwrap();
        assert_eq!(header.split("; ").count(), MAX_COOKIES);
        // A known cookie can still be replaced, and expired ones make room.
        set(
            &mut ctx,
            "http://a.test/",
            &["c0=new; Path=/", "c1=x; Path=/; Max-Age=0"],
        );
        set(&mut ctx, "http://a.test/", &["fresh=1; Path=/"]);
        let header = sent(&ctx, "http://a.test/").unwrap();
        assert!(header.contains("c0=new"), "{header}");
        assert!(header.contains("fresh=1"), "{header}");
        assert!(!header.contains("c1="), "{header}");
        assert_eq!(header.split("; ").count(), MAX_COOKIES);
    }

    #[test]
    fn cookie_values_are_secrets() {
        let mut ctx = RunCtx::default();
        set(
            &mut ctx,
            "http://a.test/",
            &["sid=0123456789abcdef; Path=/"],
        );
        assert_eq!(ctx.secrets, ["0123456789abcdef"]);
    }
}
