//! Where `/probe` may go, hop by hop, and how sonde keeps from probing itself.
//!
//! The up-front check of [`super::safety::Safety::check`] sees only the target as given. A target
//! that answers with a redirect, or a name that resolves differently when the probe dials it,
//! would take the probe past it; so the same allow-list is also a
//! [`sonde_probes::policy::DialPolicy`], asked by the probe before every connection of every hop
//! about every resolved address.
//!
//! Self-recursion: a target that redirects to sonde's own `/probe?target=<itself>` (or two sondes
//! probing each other) would nest probes without end. Two defences, whatever the topology:
//!
//! - the dial policy refuses sonde's own listen addresses (with an unspecified listen address,
//!   `0.0.0.0:9115`, any loopback address on that port; the host's other interface addresses are
//!   left to the marker);
//! - every outgoing HTTP probe carries `X-Sonde-Probe:` the chain of sonde instances it passed
//!   through (random per process ids, comma-separated). A `/probe` request whose chain holds this
//!   instance, or is already [`MAX_NESTING`] long, is refused with 508 Loop Detected.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderValue};
use sonde_probes::policy::DialPolicy;

use super::safety::{cidr_contains, glob_match, Allow};

/// The header that marks sonde's own probe requests.
pub const MARKER: &str = "x-sonde-probe";

/// Probes nested through this many sonde `/probe` endpoints are refused: a chain of exporters
/// is legitimate (a sonde probing another sonde's `/probe`), a longer one is a loop.
pub const MAX_NESTING: usize = 3;

#[derive(Clone, Debug)]
pub struct Guard {
    allow: Vec<Allow>,
    own: Vec<SocketAddr>,
    /// This process's id in marker chains.
    instance: String,
    /// The chain of a request that carries none: this instance alone (made once; nearly every
    /// `/probe` comes from Prometheus, not through another sonde).
    alone: HeaderValue,
}

impl Guard {
    pub fn new(allow: Vec<Allow>) -> Self {
        let instance = format!("{:016x}", fastrand::u64(..));
        Guard {
            allow,
            own: Vec::new(),
            alone: HeaderValue::from_str(&instance).expect("hex digits are a header value"),
            instance,
        }
    }

    /// Refuse probes to `addr` from now on: an address this sonde serves on.
    pub fn add_own(&mut self, addr: SocketAddr) {
        self.own.push(addr);
    }

    /// Whether `addr` reaches this sonde's web server.
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.own.iter().any(|o| {
            o.port() == addr.port()
                && (canonical(o.ip()) == ip
                    || (o.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
        })
    }

    /// Admit a `/probe` request by its marker chain: Ok is the chain its probe sends on
    /// (this instance appended); Err the 508 message.
    pub fn admit(&self, headers: &HeaderMap) -> Result<HeaderValue, String> {
        if !headers.contains_key(MARKER) {
            return Ok(self.alone.clone());
        }
        let mut chain: Vec<String> = Vec::new();
        for v in headers.get_all(MARKER) {
            let text = String::from_utf8_lossy(v.as_bytes());
            chain.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
        if chain.contains(&self.instance) {
            return Err(
                "refusing to probe: this request comes from this sonde's own probe (X-Sonde-Probe); the target leads back to this /probe".into(),
            );
        }
        if chain.len() >= MAX_NESTING {
            return Err(format!(
                "refusing to probe: {} sonde probes are already nested in this request (X-Sonde-Probe); at most {MAX_NESTING}",
                chain.len()
            ));
        }
        chain.push(self.instance.clone());
        HeaderValue::from_str(&chain.join(", "))
            .map_err(|_| "refusing to probe: unreadable X-Sonde-Probe header".to_string())
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl DialPolicy for Guard {
    fn allow(&self, host: &str, addr: SocketAddr) -> Result<(), String> {
        if self.is_own(addr) {
            return Err(
                "that is this sonde's own listen address; sonde does not probe itself".into(),
            );
        }
        if self.allow.is_empty() {
            return Ok(());
        }
        let host = host.to_ascii_lowercase();
        let allowed = self.allow.iter().any(|a| match a {
            Allow::Glob(g) => host.parse::<IpAddr>().is_err() && glob_match(g, &host),
            Allow::Cidr(net, bits) => cidr_contains(*net, *bits, addr.ip()),
        });
        if allowed {
            Ok(())
        } else {
            Err("not allowed by --probe.allow-target".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn own_addresses_are_refused() {
        let mut g = Guard::new(vec![]);
        g.add_own(sa("127.0.0.1:9115"));
        g.add_own(sa("0.0.0.0:9200"));
        assert!(g.allow("x", sa("127.0.0.1:9115")).is_err());
        assert!(g.allow("x", sa("[::ffff:127.0.0.1]:9115")).is_err());
        assert!(g.allow("x", sa("127.0.0.2:9115")).is_ok());
        assert!(g.allow("x", sa("127.0.0.1:9116")).is_ok());
        assert!(g.allow("x", sa("127.0.0.9:9200")).is_err());
        assert!(g.allow("x", sa("[::1]:9200")).is_err());
        assert!(g.allow("x", sa("10.0.0.1:9200")).is_ok());
    }

    #[test]
    fn every_address_passes_the_allow_list() {
        let g = Guard::new(vec![
            "127.0.0.2/32".parse().unwrap(),
            "*.example.com".parse().unwrap(),
        ]);
        assert!(g.allow("127.0.0.2", sa("127.0.0.2:80")).is_ok());
        let e = g.allow("127.0.0.1", sa("127.0.0.1:80")).unwrap_err();
        assert!(e.contains("--probe.allow-target"), "{e}");
        assert!(g.allow("www.example.com", sa("10.9.9.9:443")).is_ok());
        assert!(g.allow("www.Example.com", sa("10.9.9.9:443")).is_ok());
        assert!(g.allow("evil.net", sa("10.9.9.9:443")).is_err());
    }

    #[test]
    fn marker_chains_are_bounded_and_never_hold_this_instance() {
        let g = Guard::new(vec![]);
        let mut h = HeaderMap::new();
        let out = g.admit(&h).unwrap();
        assert_eq!(out.to_str().unwrap(), g.instance);
        // Back to itself.
        h.insert(MARKER, out.clone());
        assert!(g.admit(&h).unwrap_err().contains("own probe"));
        // Another sonde's chain: passed on, this instance appended.
        h.insert(MARKER, HeaderValue::from_static("aaaa"));
        let out = g.admit(&h).unwrap();
        assert_eq!(out.to_str().unwrap(), format!("aaaa, {}", g.instance));
        // Too deep, split across two header lines.
        h.insert(MARKER, HeaderValue::from_static("a, b"));
        h.append(MARKER, HeaderValue::from_static("c"));
        assert!(g.admit(&h).unwrap_err().contains("at most 3"));
    }
}
