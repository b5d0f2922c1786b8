//! The demo targets the shipped `scenarios/` probe, so `sonde run scenarios/` passes on a fresh
//! machine: `sonde serve` without configuration starts them beside its self-check, and
//! `sonde demo` serves them alone. All on loopback:
//!
//! | target | default | scenario variable |
//! |---|---|---|
//! | HTTP/1.1: `/`, `/health` (JSON) | 127.0.0.1:9180 | `SONDE_EXAMPLE_HTTP` |
//! | HTTPS (h2 and HTTP/1.1), certificate for localhost/127.0.0.1 from the demo CA | 127.0.0.1:9443 | `SONDE_EXAMPLE_HTTPS` |
//! | DNS (UDP and TCP), zone `sonde.test` | 127.0.0.1:9053 | `SONDE_EXAMPLE_DNS` |
//! | the reference chat server (WebSocket, `examples/chat_server.rs`) | ws://127.0.0.1:9300/chat | `SONDE_IM_URL` |
//! | the same chat over raw TCP, length-prefixed protobuf frames (`examples/chat.proto`) | 127.0.0.1:9301 | `SONDE_IM_TCP` |
//!
//! The scenarios read the same variables with these defaults (`{{ env.X | default(...) }}`),
//! so setting one moves both sides; the interop suite sets them to its nginx and dnsmasq.
//!
//! The demo certificate is issued by `scenarios/demo-ca.pem`, a CA whose key was thrown away
//! after signing and whose name constraints allow only `localhost`, 127.0.0.0/8 and ::1: the
//! leaf's key ships inside sonde, and trusting the demo CA can vouch for nothing but loopback.

mod chat;
mod dns;
mod web;

use std::net::SocketAddr;

use tokio::task::JoinHandle;

pub const DEFAULT_HTTP: &str = "127.0.0.1:9180";
pub const DEFAULT_HTTPS: &str = "127.0.0.1:9443";
pub const DEFAULT_DNS: &str = "127.0.0.1:9053";
pub const DEFAULT_IM_URL: &str = "ws://127.0.0.1:9300/chat";
pub const DEFAULT_IM_TCP: &str = "127.0.0.1:9301";

/// The demo CA's certificate as shipped in `scenarios/demo-ca.pem`.
pub const CA_PEM: &str = include_str!("../../scenarios/demo-ca.pem");

/// `sonde demo`: serve the demo targets until interrupted.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

/// Where each target listens: the scenarios' variables, or their defaults.
#[derive(Clone, Debug)]
pub struct Addrs {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub dns: SocketAddr,
    pub chat: SocketAddr,
    pub chat_tcp: SocketAddr,
}

impl Addrs {
    /// From `env` (the process environment in use): loopback addresses only — the demo is
    /// for this machine.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Addrs, String> {
        let loopback = |var: &str, v: &str, default: &str| {
            let a: SocketAddr = v.parse().map_err(|_| {
                format!("{var}={v:?} — expected a loopback address and port such as {default}")
            })?;
            if !a.ip().is_loopback() {
                return Err(format!(
                    "{var}={v:?} — the demo targets listen on loopback only (127.0.0.0/8 or ::1)"
                ));
            }
            Ok(a)
        };
        let addr = |var: &str, default: &str| {
            loopback(
                var,
                &env(var).unwrap_or_else(|| default.to_string()),
                default,
            )
        };
        let im = env("SONDE_IM_URL").unwrap_or_else(|| DEFAULT_IM_URL.to_string());
        let chat = url::Url::parse(&im)
            .ok()
            .filter(|u| u.scheme() == "ws" && u.path() == "/chat")
            .and_then(|u| Some(format!("{}:{}", u.host()?, u.port().unwrap_or(80))))
            .ok_or_else(|| {
                format!(
                    "SONDE_IM_URL={im:?} — expected ws://HOST:PORT/chat such as {DEFAULT_IM_URL}"
                )
            })?;
        Ok(Addrs {
            http: addr("SONDE_EXAMPLE_HTTP", DEFAULT_HTTP)?,
            https: addr("SONDE_EXAMPLE_HTTPS", DEFAULT_HTTPS)?,
            dns: addr("SONDE_EXAMPLE_DNS", DEFAULT_DNS)?,
            chat: loopback("SONDE_IM_URL", &chat, "127.0.0.1:9300")?,
            chat_tcp: addr("SONDE_IM_TCP", DEFAULT_IM_TCP)?,
        })
    }
}

/// The running targets; they stop when this is dropped.
pub struct Demo {
    tasks: Vec<JoinHandle<()>>,
    _chat: chat::Handle,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// Bind every target (inside a tokio runtime). Errors name the target, the address and the
/// variable that moves it.
pub async fn start(a: &Addrs) -> Result<Demo, String> {
    let bind_err = |what: &str, at: SocketAddr, var: &str, e: std::io::Error| {
        format!(
            "cannot listen on {at} for the demo {what}: {} — stop what listens there, or set {var} (for both `sonde demo` and the scenarios)",
            crate::config::io_reason(&e)
        )
    };
    let http = tokio::net::TcpListener::bind(a.http)
        .await
        .map_err(|e| bind_err("HTTP target", a.http, "SONDE_EXAMPLE_HTTP", e))?;
    let https = tokio::net::TcpListener::bind(a.https)
        .await
        .map_err(|e| bind_err("HTTPS target", a.https, "SONDE_EXAMPLE_HTTPS", e))?;
    let (udp, tcp) = dns::bind(a.dns)
        .await
        .map_err(|e| bind_err("DNS server", a.dns, "SONDE_EXAMPLE_DNS", e))?;
    let chat = tokio::net::TcpListener::bind(a.chat)
        .await
        .map_err(|e| bind_err("chat server", a.chat, "SONDE_IM_URL", e))?;
    let chat_tcp = tokio::net::TcpListener::bind(a.chat_tcp)
        .await
        .map_err(|e| bind_err("chat server (raw TCP)", a.chat_tcp, "SONDE_IM_TCP", e))?;
    let tls = web::tls_config()?;
    let tasks = vec![
        tokio::spawn(web::serve(http, None)),
        tokio::spawn(web::serve(https, Some(tls))),
        tokio::spawn(dns::serve_udp(udp)),
        tokio::spawn(dns::serve_tcp(tcp)),
    ];
    Ok(Demo {
        tasks,
        _chat: chat::start(chat, chat_tcp),
    })
}

/// `sonde serve` without configuration: the demo targets too, so the shipped scenarios pass at
/// once. A target that cannot start is a warning: the self-check runs anyway.
pub async fn beside_builtin(source: &crate::serve::ConfigSource) -> Option<Demo> {
    if !matches!(source, crate::serve::ConfigSource::BuiltIn(_)) {
        return None;
    }
    let started = match Addrs::from_env(|k| std::env::var(k).ok()) {
        Ok(a) => start(&a).await.map(|d| (d, a)),
        Err(e) => Err(e),
    };
    match started {
        Ok((d, a)) => {
            tracing::info!(
                http = %a.http, https = %a.https, dns = %a.dns, chat = %a.chat, chat_tcp = %a.chat_tcp,
                "demo targets for scenarios/ are up (`sonde run scenarios/` probes them)"
            );
            Some(d)
        }
        Err(e) => {
            tracing::warn!("demo targets not started: {e}");
            None
        }
    }
}

/// `sonde demo`.
pub fn main(_args: DemoArgs) -> std::process::ExitCode {
    let addrs = match Addrs::from_env(|k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sonde demo: {e}");
            return std::process::ExitCode::from(crate::cli::EXIT_USAGE);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sonde demo: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let _demo = match start(&addrs).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("sonde demo: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        eprintln!(
            "sonde demo: HTTP {} · HTTPS {} · DNS {} (zone sonde.test) · chat ws://{}/chat and tcp://{} (protobuf) — Ctrl-C to stop",
            addrs.http, addrs.https, addrs.dns, addrs.chat, addrs.chat_tcp
        );
        let _ = tokio::signal::ctrl_c().await;
        std::process::ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_scenario_variables_and_stay_on_loopback() {
        let a = Addrs::from_env(|_| None).unwrap();
        assert_eq!(a.http.to_string(), DEFAULT_HTTP);
        assert_eq!(a.chat.to_string(), "127.0.0.1:9300");
        let a = Addrs::from_env(|k| {
            (k == "SONDE_IM_URL").then(|| "ws://127.0.0.1:7000/chat".to_string())
        })
        .unwrap();
        assert_eq!(a.chat.port(), 7000);
        let e = Addrs::from_env(|k| (k == "SONDE_EXAMPLE_DNS").then(|| "0.0.0.0:53".to_string()))
            .unwrap_err();
        assert!(e.contains("loopback only"), "{e}");
    }
}
