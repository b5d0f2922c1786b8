//! The `http` prober: the target is a URL (`http://` when it names no scheme); `hostname` sets
//! the `Host` header; `oauth2` fetches a token first; counts are reported as Go's client counts.

use http::header::{HeaderValue, HOST};
use sonde_probes::http::{Auth, HttpOutcome, HttpRequest};
use tokio::time::Instant;

use super::{family_refused, resolved_then_failed, unresolved, Probe};
use crate::blackbox::handler::{BadRequest, Log};
use crate::blackbox::metrics::{self, HttpStage};
use crate::config::blackbox::module::{http_url, no_proxy_matches, HttpSpec};

pub async fn probe(spec: &HttpSpec, run: Probe<'_>) -> Result<bool, BadRequest> {
    let mut req = spec.req.clone();
    let mut parsed = None;
    if let Some(g) = run.guard {
        req.headers.insert(crate::blackbox::guard::MARKER, g.marker);
        req.policy = Some(g.policy);
        parsed = g.url;
    }
    if let Some(h) = run.hostname.filter(|h| !h.is_empty()) {
        set_host(&mut req, h)?;
    }
    let url = match parsed.map_or_else(|| http_url(run.target), Ok) {
        Ok(url) if req.http3 && url.scheme() == "http" => as_https(url, run.log),
        Ok(url) => url,
        Err(e) => {
            run.log
                .line("error", "Could not parse target URL", &[("err", &e)]);
            metrics::http(run.registry, HttpStage::BadTarget, None);
            cel_family(run.registry, &req, None);
            return Ok(false);
        }
    };
    if no_proxy_matches(&spec.no_proxy, url.host_str().unwrap_or("")) {
        req.proxy = None;
    }
    if let Some(env) = &spec.env_proxy {
        req.proxy = env.for_url(&url);
    }
    req.url = url;
    let host = req.url.host_str().unwrap_or_default().to_string();
    let refused = family_refused(&host, req.ip);
    let token = match (&spec.oauth2, &refused) {
        (Some(token_req), None) => Some(fetch_token(token_req, run.deadline, run.log).await),
        _ => None,
    };
    let mut o = match (refused, token) {
        (Some(why), _) => unresolved(why),
        (None, Some(Err(why))) => {
            // Go fails inside the client, after blackbox resolved the target.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            resolved_then_failed(&req.resolver, bare, req.ip, why).await
        }
        (None, Some(Ok(auth))) => {
            req.auth = Some(auth);
            sonde_probes::http::probe(&req, run.deadline).await
        }
        (None, None) => sonde_probes::http::probe(&req, run.deadline).await,
    };
    as_go_counts_redirects(&req, &mut o);
    run.log.outcome_http(&o);
    metrics::http(run.registry, HttpStage::Probed, Some(&o));
    cel_family(run.registry, &req, Some(&o));
    Ok(o.success())
}

/// blackbox 0.28 turns an `http://` target of an HTTP/3 module into `https://` (QUIC is always
/// TLS) and says so in the probe's log.
fn as_https(mut url: url::Url, log: &mut Log) -> url::Url {
    let original = url.to_string();
    if url.set_scheme("https").is_ok() {
        log.line(
            "warn",
            "Converting HTTP to HTTPS for HTTP/3 compatibility",
            &[
                ("original_target", &original),
                ("converted_target", url.as_str()),
            ],
        );
    }
    url
}

/// `probe_failed_due_to_cel`: only for modules with a CEL matcher, as in blackbox.
fn cel_family(r: &mut metrics::Registry, req: &HttpRequest, o: Option<&HttpOutcome>) {
    if req.checks.body_checks.is_empty() {
        return;
    }
    let failed = o.is_some_and(|o| o.facts.failed_due_to_body_check);
    r.gauge(
        "probe_failed_due_to_cel",
        "Indicates if probe failed due to CEL expression not matching",
        if failed { 1.0 } else { 0.0 },
    );
}

/// `hostname`: the `Host` header, unless the module set a different one (blackbox answers 400).
fn set_host(req: &mut HttpRequest, h: &str) -> Result<(), BadRequest> {
    if let Some(existing) = req.headers.get(HOST) {
        if existing.as_bytes() != h.as_bytes() {
            return Err(BadRequest(format!(
                "host header defined both in module configuration ({}) and with URL-parameter 'hostname' ({h})",
                String::from_utf8_lossy(existing.as_bytes())
            )));
        }
    }
    let v = HeaderValue::from_str(h).map_err(|_| BadRequest(format!("invalid hostname {h:?}")))?;
    req.headers.insert(HOST, v);
    Ok(())
}

/// `oauth2`: fetch a token (client credentials) before the probe, as Go's oauth2 transport
/// does for the first request of a new client. Err: why the token could not be had.
async fn fetch_token(
    token_req: &HttpRequest,
    deadline: Instant,
    log: &mut Log,
) -> Result<Auth, String> {
    let o = sonde_probes::http::probe(token_req, deadline).await;
    let url = token_req.url.as_str().to_string();
    if let Some(f) = &o.failure {
        let why = format!("oauth2: cannot fetch token from {url}: {}", f.message);
        log.line("error", "OAuth2 token request failed", &[("err", &why)]);
        return Err(why);
    }
    let json: serde_json::Value = serde_json::from_slice(&o.facts.body)
        .map_err(|e| format!("oauth2: cannot fetch token: the answer is not JSON: {e}"))?;
    let token = json["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "oauth2: server response missing access_token".to_string())?;
    log.line("info", "OAuth2 token fetched", &[("token_url", &url)]);
    Ok(Auth::Bearer(token.to_string()))
}

/// What blackbox's Go client reports differs from what the probe saw in three ways:
/// - it calls blackbox's redirect check with the hops so far *before* refusing to follow, so
///   blackbox counts a redirect it did not follow: 1 for a 3xx with `Location` under
///   `follow_redirects: false` (whose body it then never reads), 11 when it gives up after 10;
/// - it counts body bytes through the `body_size_limit` reader, so never more than the limit.
fn as_go_counts_redirects(req: &HttpRequest, o: &mut HttpOutcome) {
    let f = &mut o.facts;
    let is_redirect = matches!(f.status, Some(301 | 302 | 303 | 307 | 308))
        && f.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("location") && !v.trim().is_empty());
    // blackbox reads the body through a limit of `body_size_limit` bytes and counts what it
    // read: never more than the limit.
    if let Some(limit) = req.body_size_limit {
        f.body_bytes = f.body_bytes.min(limit);
        f.decoded_bytes = f.decoded_bytes.map(|n| n.min(limit));
    }
    if !req.follow_redirects && is_redirect {
        f.redirects = 1;
        f.body_bytes = 0;
        f.decoded_bytes = f.decoded_bytes.map(|_| 0);
    } else if o
        .failure
        .as_ref()
        .is_some_and(|x| x.message.starts_with("stopped after "))
    {
        f.redirects += 1;
    }
}

impl Log {
    fn outcome_http(&mut self, o: &HttpOutcome) {
        if !self.keeps() {
            return;
        }
        self.hold_time();
        self.resolved(o.remote_addr);
        self.events(&o.events);
        for (n, v) in o.facts.request_headers.iter() {
            self.line_joined("info", "Request header", "header", &[n, ": ", v]);
        }
        for (n, v) in o.facts.headers.iter() {
            self.line_joined("info", "Response header", "header", &[n, ": ", v]);
        }
        self.phases_and_failure(&o.timings, o.failure.as_ref());
        self.release_time();
    }
}
