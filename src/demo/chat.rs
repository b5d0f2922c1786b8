//! The reference chat server (`examples/chat_server.rs`, the same source the tests and the
//! example binary use) as a demo target for `scenarios/im-login-send-receive.yaml`.

#[allow(dead_code, clippy::all)]
#[path = "../../examples/chat_server.rs"]
mod server;

pub use server::ChatHandle as Handle;

/// Serve on `listener` with `CHAT_SECRET` (the variable the scenario reads) or the demo secret.
pub fn start(listener: tokio::net::TcpListener) -> Handle {
    let mut opts = server::ChatOptions::default();
    if let Ok(s) = std::env::var("CHAT_SECRET") {
        opts.secret = s;
    }
    server::start(listener, opts)
}
