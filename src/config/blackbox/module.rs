//! A loaded blackbox module, and how a module plus a `target` becomes one `sonde_probes` request,
//! parsing the target exactly as blackbox_exporter's prober for that module does.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sonde_probes::http::HttpRequest;
use sonde_probes::resolve::{ResolveOptions, Resolver};
use sonde_probes::tcp::TcpRequest;
use sonde_probes::tls::{TlsClient, TlsOptions};
use url::Url;

/// Every module loaded, by name.
pub type Modules = BTreeMap<String, Arc<Module>>;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Prober {
    Http,
    Tcp,
    Icmp,
    Dns,
    Grpc,
    /// blackbox 0.28: `query_response` over a Unix domain socket; the target is its path.
    Unix,
}

impl Prober {
    pub fn as_str(self) -> &'static str {
        match self {
            Prober::Http => "http",
            Prober::Tcp => "tcp",
            Prober::Icmp => "icmp",
            Prober::Dns => "dns",
            Prober::Grpc => "grpc",
            Prober::Unix => "unix",
        }
    }
}

/// One module of a blackbox configuration, compiled.
#[derive(Debug)]
pub struct Module {
    pub name: String,
    pub prober: Prober,
    /// `timeout:`; `None` when unset (or 0): the scrape timeout alone decides.
    pub timeout: Option<Duration>,
    pub spec: Spec,
    /// The module as written, secrets redacted, for `debug=true`.
    pub shown: serde_json::Value,
    /// The file it came from.
    pub defined_in: String,
}

#[derive(Debug)]
pub enum Spec {
    /// Boxed: an HTTP request with its checks is far larger than the others.
    Http(Box<HttpSpec>),
    Tcp(TcpSpec),
    Icmp(sonde_probes::icmp::IcmpRequest),
    Dns(sonde_probes::dns::DnsRequest),
    Grpc(GrpcSpec),
    /// The tcp prober's dialogue over a Unix socket.
    Unix(TcpSpec),
}

/// A TLS client and what it was built from: a `hostname` parameter asks for the same client
/// with another server name.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    pub opts: TlsOptions,
    pub alpn: &'static [&'static [u8]],
    pub client: TlsClient,
}

impl TlsSpec {
    /// The client to use when blackbox would set `server_name` to `name` (only when the module
    /// did not set one itself).
    pub fn with_default_server_name(&self, name: &str) -> Result<TlsClient, String> {
        if self.opts.server_name.is_some() {
            return Ok(self.client.clone());
        }
        let opts = TlsOptions {
            server_name: Some(name.to_string()),
            ..self.opts.clone()
        };
        TlsClient::new(&opts, self.alpn)
    }
}

#[derive(Debug)]
pub struct HttpSpec {
    /// The request with a placeholder URL; each probe sets its target.
    pub req: HttpRequest,
    pub tls: TlsSpec,
    /// `no_proxy` entries (lower case): targets they match bypass `proxy_url`.
    pub no_proxy: Vec<String>,
    /// `proxy_from_environment: true`: the proxies the environment named at load.
    pub env_proxy: Option<EnvProxy>,
    /// `oauth2`: the token request, sent before each probe (blackbox builds a new client, and so
    /// fetches a new token, for every probe).
    pub oauth2: Option<HttpRequest>,
}

/// `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` as Go's `httpproxy.FromEnvironment` reads them.
#[derive(Debug, Clone, Default)]
pub struct EnvProxy {
    pub http: Option<Url>,
    pub https: Option<Url>,
    pub no_proxy: Vec<String>,
}

impl EnvProxy {
    /// The proxy for `url`, with Go's rules: by scheme, none for `localhost` and loopback
    /// addresses, none for what `NO_PROXY` matches.
    pub fn for_url(&self, url: &Url) -> Option<Url> {
        let host = url.host_str().unwrap_or("");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        if bare.eq_ignore_ascii_case("localhost") || loopback {
            return None;
        }
        if no_proxy_matches(&self.no_proxy, host) {
            return None;
        }
        match url.scheme() {
            "https" => self.https.clone(),
            _ => self.http.clone(),
        }
    }
}

/// Whether `host` bypasses the proxy under `no_proxy` entries, with the rules of Go's
/// `httpproxy` (which prometheus/common uses): `*` matches everything; an IP address or CIDR
/// matches addresses; `example.com` matches it and its subdomains, `.example.com` subdomains
/// only. A `:port` suffix on an entry is ignored.
pub fn no_proxy_matches(entries: &[String], host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    entries.iter().any(|e| {
        if e == "*" {
            return true;
        }
        if let Some((net, bits)) = e.split_once('/') {
            let (Ok(net), Ok(bits), Some(ip)) =
                (net.parse::<std::net::IpAddr>(), bits.parse::<u32>(), ip)
            else {
                return false;
            };
            return match (net, ip) {
                (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) if bits <= 32 => {
                    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) if bits <= 128 => {
                    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            };
        }
        let bare = e.trim_start_matches('[');
        let name = match bare.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
            _ => bare,
        }
        .trim_end_matches(']');
        if let (Ok(a), Some(ip)) = (name.parse::<std::net::IpAddr>(), ip) {
            return a == ip;
        }
        match name.strip_prefix('.') {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == name || host.ends_with(&format!(".{name}")),
        }
    })
}

#[derive(Debug)]
pub struct TcpSpec {
    /// Host and port are filled from the target.
    pub req: TcpRequest,
    pub tls: TlsSpec,
    /// `query_response` items with `labels`: the dialogue index of their `expect`, its regex,
    /// and the label names with their value templates.
    pub expect_labels: Vec<ExpectLabels>,
}

#[derive(Debug, Clone)]
pub struct ExpectLabels {
    pub step: usize,
    pub regex: regex::bytes::Regex,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct GrpcSpec {
    pub service: String,
    pub tls: bool,
    pub ip: ResolveOptions,
    pub tls_spec: TlsSpec,
}

/// The resolver every module uses: the system's, as blackbox's. Built once per process; when
/// the system configuration cannot be read, a loopback resolver stands in so IP-literal targets
/// still work (and names fail with a DNS error naming it).
pub fn system_resolver() -> Resolver {
    static R: OnceLock<Resolver> = OnceLock::new();
    R.get_or_init(|| {
        Resolver::system().unwrap_or_else(|e| {
            tracing::warn!("{e}; blackbox modules resolve names through 127.0.0.1:53");
            Resolver::with_servers(&[([127, 0, 0, 1], 53).into()]).expect("loopback resolver")
        })
    })
    .clone()
}

/// The target of an http probe as blackbox reads it: `http://` is prepended when the target has
/// no `http://` or `https://` prefix.
pub fn http_url(target: &str) -> Result<Url, String> {
    let parsed = if target.starts_with("http://") || target.starts_with("https://") {
        Url::parse(target)
    } else {
        Url::parse(&format!("http://{target}"))
    };
    let url = parsed.map_err(|e| format!("could not parse target URL {target:?}: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("could not parse target URL {target:?}: no host"));
    }
    Ok(url)
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; the port must be present.
pub fn split_host_port(target: &str) -> Result<(String, String), String> {
    if let Some(rest) = target.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("address {target}: missing ']' in address"));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("address {target}: missing port in address"));
        };
        return Ok((host.to_string(), port.to_string()));
    }
    match target.rsplit_once(':') {
        None => Err(format!("address {target}: missing port in address")),
        Some((h, _)) if h.contains(':') => {
            Err(format!("address {target}: too many colons in address"))
        }
        Some((h, p)) => Ok((h.to_string(), p.to_string())),
    }
}

/// A port as Go's dialer takes it: a number 0–65535 (service names are not looked up).
pub fn parse_port(p: &str, target: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("address {target}: invalid port {p:?}"))
}

/// The host a target names, for `--probe.allow-target`: `None` when the target cannot be parsed
/// (the probe then fails on its own, without any traffic).
pub fn target_host(prober: Prober, target: &str) -> Option<String> {
    let bare = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_string();
    match prober {
        Prober::Http | Prober::Grpc => http_url(target).ok()?.host_str().map(bare),
        Prober::Tcp => split_host_port(target).ok().map(|(h, _)| h),
        Prober::Dns => Some(match split_host_port(target) {
            Ok((h, _)) => h,
            Err(_) => bare(target),
        }),
        Prober::Icmp => Some(bare(target)),
        Prober::Unix => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_follows_go() {
        let e: Vec<String> = ["example.com", ".y.com", "10.0.0.0/8", "127.0.0.1:8080"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(no_proxy_matches(&e, "example.com"));
        assert!(no_proxy_matches(&e, "api.example.com"));
        assert!(!no_proxy_matches(&e, "badexample.com"));
        assert!(no_proxy_matches(&e, "x.y.com"));
        assert!(!no_proxy_matches(&e, "y.com"));
        assert!(no_proxy_matches(&e, "10.1.2.3"));
        assert!(no_proxy_matches(&e, "127.0.0.1"));
        assert!(!no_proxy_matches(&e, "127.0.0.2"));
        assert!(no_proxy_matches(&["*".to_string()], "anything"));
    }

    #[test]
    fn environment_proxies_follow_go() {
        let u = |s: &str| Url::parse(s).unwrap();
        let env = EnvProxy {
            http: Some(u("http://proxy:3128")),
            https: Some(u("http://secure-proxy:3128")),
            no_proxy: vec![".internal".into()],
        };
        assert_eq!(env.for_url(&u("http://example.com/")), env.http);
        assert_eq!(env.for_url(&u("https://example.com/")), env.https);
        assert_eq!(env.for_url(&u("http://localhost:8080/")), None);
        assert_eq!(env.for_url(&u("http://127.0.0.1:8080/")), None);
        assert_eq!(env.for_url(&u("http://[::1]:8080/")), None);
        assert_eq!(env.for_url(&u("http://db.internal/")), None);
        assert_eq!(EnvProxy::default().for_url(&u("http://example.com/")), None);
    }
}
