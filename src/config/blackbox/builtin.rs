//! blackbox_exporter's own example modules, for `/probe` without a configuration file.

use super::module::Modules;

/// blackbox_exporter's shipped example modules (its `blackbox.yml`; 0.23's, plus the modules
/// 0.28 added: `ssh_banner_extract`, `http_3xx` over HTTP/3, `postgresql`): what `/probe` and
/// `sonde probe` use when no blackbox configuration file is loaded.
pub const BUILTIN_MODULES: &str = r#"modules:
  http_2xx:
    prober: http
  http_post_2xx:
    prober: http
    http:
      method: POST
  tcp_connect:
    prober: tcp
  pop3s_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^+OK"
      tls: true
      tls_config:
        insecure_skip_verify: false
  grpc:
    prober: grpc
    grpc:
      tls: true
      preferred_ip_protocol: "ip4"
  grpc_plain:
    prober: grpc
    grpc:
      tls: false
      service: "service1"
  ssh_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^SSH-2.0-"
      - send: "SSH-2.0-blackbox-ssh-check"
  irc_banner:
    prober: tcp
    tcp:
      query_response:
      - send: "NICK prober"
      - send: "USER prober prober prober :prober"
      - expect: "PING :([^ ]+)"
        send: "PONG ${1}"
      - expect: "^:[^ ]+ 001"
  icmp:
    prober: icmp
  icmp_ttl5:
    prober: icmp
    timeout: 5s
    icmp:
      ttl: 5
  ssh_banner_extract:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
      - expect: "^SSH-2.0-([^ -]+)(?: (.*))?$"
        labels:
        - name: ssh_version
          value: "${1}"
        - name: ssh_comments
          value: "${2}"
  http_3xx:
    prober: http
    http:
      preferred_ip_protocol: "ip4"
      enable_http3: true
      enable_http2: false
      valid_http_versions: ["HTTP/3.0"]
  postgresql:
    prober: tcp
    tcp:
      query_response:
      - send: !!binary AAAACATSFi8=
      - expect_bytes: S
      - starttls: true
"#;

/// The built-in modules, compiled.
pub fn builtin_modules() -> Modules {
    let mut out = Modules::new();
    let errors = crate::config::load_blackbox_str("<built-in modules>", BUILTIN_MODULES, &mut out);
    debug_assert!(errors.is_empty(), "{errors:?}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::blackbox::module::Spec;

    #[test]
    fn builtin_modules_compile_with_the_0_28_additions() {
        let m = builtin_modules();
        for name in [
            "http_2xx",
            "icmp_ttl5",
            "ssh_banner_extract",
            "http_3xx",
            "postgresql",
        ] {
            assert!(m.contains_key(name), "{name} missing");
        }
        let Spec::Http(h) = &m["http_3xx"].spec else {
            panic!("http_3xx is not http")
        };
        assert!(h.req.http3);
        let Spec::Tcp(t) = &m["postgresql"].spec else {
            panic!("postgresql is not tcp")
        };
        assert!(matches!(
            &t.req.dialogue[0],
            sonde_probes::tcp::TcpStep::SendBytes(b) if b == &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]
        ));
    }
}
