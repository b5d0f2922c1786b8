//! blackbox_exporter's own example modules, for `/probe` without a configuration file.

use super::module::Modules;

/// blackbox_exporter's shipped example modules (its `blackbox.yml`): what `/probe` and
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
"#;

/// The built-in modules, compiled.
pub fn builtin_modules() -> Modules {
    let mut out = Modules::new();
    let errors = crate::config::load_blackbox_str("<built-in modules>", BUILTIN_MODULES, &mut out);
    debug_assert!(errors.is_empty(), "{errors:?}");
    out
}
