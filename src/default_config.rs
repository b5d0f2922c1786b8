//! The built-in configuration `sonde serve` runs when given no `-c` and there is no
//! `./sonde.yaml`: it probes sonde's own endpoints on loopback, so a fresh install shows live,
//! successful data on `/metrics` and `/` within seconds, and shows the format by example
//! (`GET /config` prints it). It runs beside the demo targets (`crate::demo`) that `scenarios/`
//! probe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The address to probe for a listen address: a wildcard listen is probed on loopback.
pub fn loopback_for(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The built-in configuration as YAML. `icmp` adds an ICMP check (only when this process may
/// open ICMP sockets, so the default never shows a failure that is a local permission matter).
pub fn builtin(listen: SocketAddr, icmp: bool) -> String {
    let target = loopback_for(listen);
    let mut yaml = format!(
        r#"# sonde's built-in configuration: it probes sonde's own endpoints on loopback.
# Give `sonde serve -c FILE_OR_FOLDER` (or create ./sonde.yaml) to probe your own services.
scenarios:
  - scenario: sonde-self-http
    interval: 10s
    timeout: 5s
    tags: [self]
    http:
      url: http://{target}/-/healthy
    expect:
      status: 200
      body: {{contains: Healthy}}
      duration: {{lt: 1s}}
  - scenario: sonde-self-tcp
    interval: 10s
    timeout: 5s
    tags: [self]
    tcp:
      target: "{target}"
"#
    );
    if icmp {
        yaml.push_str(&format!(
            r#"  - scenario: sonde-self-icmp
    interval: 10s
    timeout: 5s
    tags: [self]
    icmp:
      target: "{}"
"#,
            target.ip()
        ));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_probed_on_loopback() {
        assert_eq!(
            loopback_for("0.0.0.0:9115".parse().unwrap()),
            "127.0.0.1:9115".parse().unwrap()
        );
        assert_eq!(
            loopback_for("[::]:9115".parse().unwrap()),
            "[::1]:9115".parse().unwrap()
        );
        assert_eq!(
            loopback_for("127.0.0.5:80".parse().unwrap()),
            "127.0.0.5:80".parse().unwrap()
        );
    }
}
