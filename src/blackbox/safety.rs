//! What sonde adds to `/probe`, off by default so a drop-in swap behaves as blackbox_exporter
//! does:
//!
//! - `--probe.allow-target` (repeatable): CIDRs (`10.0.0.0/8`, `::1/128`) and host globs
//!   (`*.example.com`, `localhost`). With at least one given, a target is probed only when its
//!   host matches a glob, or is an address inside a CIDR, or is a name all of whose resolved
//!   addresses are inside the CIDRs; anything else gets 403. This stops `/probe` from being used
//!   to reach internal services (SSRF). The probe resolves the name again itself: a name whose
//!   records change between the check and the probe is not caught, so prefer globs for names
//!   and CIDRs for addresses.
//! - `--probe.max-concurrent N`: at most N `/probe` requests at once; beyond that, 503 at once
//!   (Prometheus retries at the next scrape) instead of queueing work past its deadline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sonde_probes::resolve::{IpProtocol, ResolveOptions};
use sonde_probes::Recorder;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::blackbox::guard::Guard;
use crate::config::blackbox::module::{
    http_url, split_host_port, system_resolver, target_host, Prober,
};

/// One `--probe.allow-target` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    Cidr(IpAddr, u8),
    /// Lower-case glob over host names: `*` matches any run of characters.
    Glob(String),
}

impl std::str::FromStr for Allow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty --probe.allow-target — expected a CIDR like 10.0.0.0/8 or a host glob like *.example.com".into());
        }
        if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| {
                format!("{s:?} is not a CIDR — expected an address/prefix like 10.0.0.0/8")
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?;
            return Ok(Allow::Cidr(ip, bits));
        }
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(Allow::Cidr(ip, bits));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_'))
        {
            return Err(format!(
                "{s:?} is neither a CIDR nor a host glob — expected something like 10.0.0.0/8 or *.example.com"
            ));
        }
        Ok(Allow::Glob(s.to_ascii_lowercase()))
    }
}

pub(super) fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    let ip = match (net, ip) {
        (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
        (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => return false,
        },
        _ => ip,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// `*` matches any run of characters (dots included).
pub(super) fn glob_match(glob: &str, s: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == s;
    }
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.len() >= p.len() && rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

/// The safety options of `serve`.
#[derive(Clone, Debug)]
pub struct Safety {
    pub allow: Vec<Allow>,
    /// `None`: no cap.
    pub slots: Option<Arc<Semaphore>>,
    /// The allow-list and sonde's own addresses, for every hop of a probe (see [`super::guard`]).
    pub guard: Arc<Guard>,
}

impl Safety {
    pub fn new(allow: Vec<Allow>, max_concurrent: Option<usize>) -> Self {
        Safety {
            guard: Arc::new(Guard::new(allow.clone())),
            allow,
            slots: max_concurrent.map(|n| Arc::new(Semaphore::new(n))),
        }
    }

    /// sonde serves on `addr`: probes there are refused (no probing itself).
    pub fn listening_on(mut self, addr: SocketAddr) -> Self {
        Arc::make_mut(&mut self.guard).add_own(addr);
        self
    }

    /// A target that is written as one of sonde's own listen addresses (an IP literal or
    /// `localhost`, with the port the prober would use): the 508 message. Names are caught when
    /// the probe resolves them (the dial policy refuses the address).
    pub fn self_target(&self, prober: Prober, target: &str) -> Option<String> {
        let url = match prober {
            Prober::Http | Prober::Grpc => http_url(target).ok(),
            _ => None,
        };
        self.self_target_parsed(prober, target, url.as_ref())
    }

    /// [`Self::self_target`] with an http or grpc target already parsed (`/probe` parses it
    /// once for this check and the probe).
    pub fn self_target_parsed(
        &self,
        prober: Prober,
        target: &str,
        url: Option<&url::Url>,
    ) -> Option<String> {
        let tcp_host;
        let (host, port) = match prober {
            Prober::Http | Prober::Grpc => {
                let url = url?;
                (url.host_str()?, url.port_or_known_default()?)
            }
            Prober::Tcp => {
                let (h, p) = split_host_port(target).ok()?;
                tcp_host = h;
                (tcp_host.as_str(), p.parse().ok()?)
            }
            Prober::Dns | Prober::Icmp | Prober::Unix => return None,
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let own = |ip: IpAddr| self.guard.is_own(SocketAddr::new(ip, port));
        let is_own = if bare.eq_ignore_ascii_case("localhost") {
            own(IpAddr::from([127, 0, 0, 1])) || own(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        } else {
            own(bare.parse().ok()?)
        };
        is_own
            .then(|| format!("refusing to probe {target:?}: it is this sonde's own listen address"))
    }

    pub fn off() -> Self {
        Safety::new(vec![], None)
    }

    /// A slot for one probe, or `None` when all are taken (→ 503). Without a cap, always a slot.
    pub fn slot(&self) -> Option<Option<OwnedSemaphorePermit>> {
        match &self.slots {
            None => Some(None),
            Some(s) => s.clone().try_acquire_owned().ok().map(Some),
        }
    }

    /// Whether `target` may be probed with a module of `prober`; Err is the 403 message.
    pub async fn check(&self, prober: Prober, target: &str) -> Result<(), String> {
        if self.allow.is_empty() {
            return Ok(());
        }
        let refuse = |why: &str| {
            Err(format!(
                "target {target:?} is not allowed by --probe.allow-target{why}"
            ))
        };
        // The allow-list speaks of hosts and networks: a socket path is on none of them.
        if prober == Prober::Unix {
            return refuse(" (unix socket targets are refused whenever an allow-list is set)");
        }
        // A target that does not parse is probed (and fails) without traffic, as blackbox does.
        let Some(host) = target_host(prober, target) else {
            return Ok(());
        };
        let host = host.to_ascii_lowercase();
        let cidrs: Vec<(IpAddr, u8)> = self
            .allow
            .iter()
            .filter_map(|a| match a {
                Allow::Cidr(ip, b) => Some((*ip, *b)),
                Allow::Glob(_) => None,
            })
            .collect();
        let in_cidrs = |ip: IpAddr| cidrs.iter().any(|(n, b)| cidr_contains(*n, *b, ip));
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if in_cidrs(ip) { Ok(()) } else { refuse("") };
        }
        if self
            .allow
            .iter()
            .any(|a| matches!(a, Allow::Glob(g) if glob_match(g, &host)))
        {
            return Ok(());
        }
        if cidrs.is_empty() {
            return refuse("");
        }
        let mut rec = Recorder::new();
        let opts = ResolveOptions {
            preferred: IpProtocol::Auto,
            fallback: true,
        };
        let resolved = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            system_resolver().resolve(&host, opts, &mut rec),
        )
        .await;
        match resolved {
            Ok(Ok(ips)) if !ips.is_empty() => match ips.iter().find(|ip| !in_cidrs(**ip)) {
                None => Ok(()),
                Some(ip) => refuse(&format!(": it resolves to {ip}, outside the allowed CIDRs")),
            },
            Ok(Err(f)) => refuse(&format!(": {}", f.message)),
            _ => refuse(": its name could not be resolved to check it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        assert_eq!(
            "10.0.0.0/8".parse::<Allow>().unwrap(),
            Allow::Cidr("10.0.0.0".parse().unwrap(), 8)
        );
        assert_eq!(
            "::1".parse::<Allow>().unwrap(),
            Allow::Cidr("::1".parse().unwrap(), 128)
        );
        assert_eq!(
            "*.Example.com".parse::<Allow>().unwrap(),
            Allow::Glob("*.example.com".into())
        );
        assert!("10.0.0.0/33".parse::<Allow>().is_err());
        assert!("a b".parse::<Allow>().is_err());
    }

    #[test]
    fn cidrs_and_globs_match() {
        let lo: IpAddr = "127.0.0.0".parse().unwrap();
        assert!(cidr_contains(lo, 8, "127.1.2.3".parse().unwrap()));
        assert!(!cidr_contains(lo, 8, "10.0.0.1".parse().unwrap()));
        assert!(cidr_contains(
            "::".parse().unwrap(),
            0,
            "::1".parse().unwrap()
        ));
        assert!(glob_match("*.example.com", "a.b.example.com"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(!glob_match("*.example.com", "example.com.evil.net"));
        assert!(glob_match("localhost", "localhost"));
        assert!(glob_match("web-*-prod", "web-12-prod"));
    }

    #[tokio::test]
    async fn allow_list_checks_the_target_host() {
        let s = Safety::new(
            vec![
                "127.0.0.0/8".parse().unwrap(),
                "*.example.com".parse().unwrap(),
            ],
            None,
        );
        assert!(s
            .check(Prober::Http, "http://127.0.0.1:8080/x")
            .await
            .is_ok());
        assert!(s.check(Prober::Tcp, "127.0.0.2:22").await.is_ok());
        // A socket path is on no allow-list: with one set, unix targets are refused.
        let e = s
            .check(Prober::Unix, "/var/run/docker.sock")
            .await
            .unwrap_err();
        assert!(e.contains("unix socket targets are refused"), "{e}");
        assert!(s
            .check(Prober::Http, "https://www.example.com/")
            .await
            .is_ok());
        let e = s.check(Prober::Http, "http://10.1.2.3/").await.unwrap_err();
        assert!(e.contains("not allowed"), "{e}");
        assert!(s.check(Prober::Icmp, "10.1.2.3").await.is_err());
        assert!(s.check(Prober::Dns, "[::1]:53").await.is_err());
        assert!(Safety::off()
            .check(Prober::Http, "http://10.1.2.3/")
            .await
            .is_ok());
    }
}
