//! Addresses as written in steps: `host:port` targets, DNS servers with a default port, bare
//! hosts, and resolver overrides (IP literals only: a resolver named by a host name would need a
//! resolver itself).

use std::net::{IpAddr, SocketAddr};

const TARGET_EXPECTED: &str = "host:port, like 127.0.0.1:8080, example.com:443 or [::1]:443";

fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// A host as the probes take it: a name, an IPv4 literal or a bracketed IPv6 literal.
fn host_part(h: &str, whole: &str, expected: &str) -> Result<String, String> {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(h.to_string()),
            Err(_) => Err(format!(
                "invalid IPv6 address in {whole:?} — expected {expected}"
            )),
        };
    }
    if h.parse::<std::net::Ipv4Addr>().is_ok() || valid_host_name(h) {
        return Ok(h.to_string());
    }
    Err(format!(
        "invalid host {h:?} in {whole:?} — expected {expected}"
    ))
}

fn port_part(p: &str, whole: &str, expected: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "invalid port {p:?} in {whole:?} — expected a port from 1 to 65535 ({expected})"
        )),
        Ok(n) => Ok(n),
    }
}

/// `host:port` (required port).
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    host_opt_port(s, None).map(|(h, p)| (h, p.unwrap_or(0)))
}

/// `host[:port]`, with `default` when no port is written; `None` default means required.
pub fn host_opt_port(s: &str, default: Option<u16>) -> Result<(String, Option<u16>), String> {
    let expected = if default.is_some() {
        "host or host:port, like 127.0.0.1, 127.0.0.1:5353 or [::1]:53"
    } else {
        TARGET_EXPECTED
    };
    let s = s.trim();
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => {
                let rest = &s[end + 1..];
                match rest.strip_prefix(':') {
                    Some(p) => (&s[..=end], Some(p)),
                    None if rest.is_empty() => (&s[..=end], None),
                    None => {
                        return Err(format!("invalid target {s:?} — expected {expected}"));
                    }
                }
            }
            None => return Err(format!("invalid target {s:?} — expected {expected}")),
        }
    } else if s.matches(':').count() > 1 {
        if default.is_some() && s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok((format!("[{s}]"), default));
        }
        return Err(format!(
            "invalid target {s:?}: an IPv6 address needs brackets — expected {expected}"
        ));
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host = host_part(host, s, expected)?;
    let port = match port {
        Some(p) => Some(port_part(p, s, expected)?),
        None if default.is_some() => default,
        None => {
            return Err(format!(
                "invalid target {s:?}: no port — expected {expected}"
            ))
        }
    };
    Ok((host, port))
}

/// A bare host (icmp): a name or an IP literal, IPv6 with or without brackets.
pub fn bare_host(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Ok(IpAddr::V6(_)) = s.parse::<IpAddr>() {
        return Ok(format!("[{s}]"));
    }
    host_part(s, s, "a host name or an IP address, like 127.0.0.1 or ::1")
}

/// Whether a host as returned above is an IP literal (then no resolver is ever asked).
pub fn is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
}

/// One resolver address: an IP literal with an optional port (53).
pub fn resolver_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "invalid resolver address {s:?} — expected an IP address with an optional port, like 127.0.0.1:5353 or [::1]:53"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(host_port("127.0.0.1:80").unwrap(), ("127.0.0.1".into(), 80));
        assert_eq!(host_port("[::1]:443").unwrap(), ("[::1]".into(), 443));
        assert_eq!(
            host_port("example.com:443").unwrap(),
            ("example.com".into(), 443)
        );
        assert!(host_port("example.com").unwrap_err().contains("no port"));
        assert!(host_port("::1:80").unwrap_err().contains("brackets"));
        assert!(host_port("a b:80").is_err());
        assert!(host_port("x:0").is_err());
        assert_eq!(
            host_opt_port("127.0.0.1", Some(53)).unwrap(),
            ("127.0.0.1".into(), Some(53))
        );
        assert_eq!(
            host_opt_port("::1", Some(53)).unwrap(),
            ("[::1]".into(), Some(53))
        );
        assert_eq!(bare_host("::1").unwrap(), "[::1]");
        assert!(is_ip_literal("[::1]"));
        assert_eq!(
            resolver_addr("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            resolver_addr("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        assert!(resolver_addr("dns.example").is_err());
    }
}
