//! In-process fixture servers for sonde's tests. Everything listens on 127.0.0.1 (or ::1) on a
//! port the OS picks, and stops when its handle is dropped: tests need nothing installed and
//! send no traffic off the machine.

pub mod client;
pub mod dns;
pub mod framed;
pub mod grpc;
pub mod h3;
pub mod http;
pub mod lines;
pub mod mqtt;
pub mod pki;
pub mod process;
pub mod robots;
pub mod script;
pub mod smtp;
pub mod ws;
pub mod xmpp;

/// The runtime for fixtures of a test that drives a `sonde` process from its own (blocking)
/// thread: one worker, so the fixtures answer while the test waits on the child.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}
