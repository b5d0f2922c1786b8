//! The reference chat server (`examples/chat_server.rs`, the same source the tests and the
//! example binary use) as a demo target for `scenarios/im-login-send-receive.yaml` (WebSocket) and
//! `scenarios/im-tcp-protobuf.yaml` (raw TCP, length-prefixed protobuf frames).

#[allow(dead_code, clippy::all)]
#[path = "../../examples/chat_server.rs"]
mod server;

pub use server::ChatHandle as Handle;

/// Serve WebSocket on `listener` and raw TCP (protobuf frames) on `tcp`, with `CHAT_SECRET` (the
/// variable the scenarios read) or the demo secret.
pub fn start(listener: tokio::net::TcpListener, tcp: tokio::net::TcpListener) -> Handle {
    let mut opts = server::ChatOptions::default();
    if let Ok(s) = std::env::var("CHAT_SECRET") {
        opts.secret = s;
    }
    let mut h = server::start(listener, opts);
    h.serve_tcp(tcp);
    h
}
