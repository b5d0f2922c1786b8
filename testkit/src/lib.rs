//! In-process fixture servers for sonde's tests. Everything listens on 127.0.0.1 (or ::1) on a
//! port the OS picks, and stops when its handle is dropped: tests need nothing installed and
//! send no traffic off the machine.

pub mod client;
pub mod dns;
pub mod framed;
pub mod grpc;
pub mod http;
pub mod lines;
pub mod pki;
pub mod process;
pub mod robots;
pub mod smtp;
pub mod ws;
pub mod xmpp;
