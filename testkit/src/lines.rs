//! Line-protocol TCP fixtures for the tcp and tls probes: an SMTP-like server (banner, EHLO,
//! STARTTLS upgrade, and on to the same dialogue over TLS), the same over TLS from the first
//! byte, and hostile variants (silent, an endless line, close at once, plaintext injected before
//! the TLS handshake, fixed bytes then close).
//!
//! The SMTP-like dialogue, every line ending in `\r\n`:
//!
//! ```text
//! S: 220 mail.sonde.test ESMTP sonde-testkit token=<per-connection random hex>
//! C: EHLO <name>            S: 250-mail.sonde.test greets <name>
//!                           S: 250-SIZE 1000000
//!                           S: 250-STARTTLS          (only when offered and not yet upgraded)
//!                           S: 250 HELP
//! C: STARTTLS               S: 220 2.0.0 Ready to start TLS   → TLS handshake, dialogue goes on
//! C: ECHO <text>            S: 250 <text>
//! C: NOOP                   S: 250 2.0.0 OK
//! C: QUIT                   S: 221 2.0.0 Bye                  → close
//! C: anything else          S: 500 5.5.2 unrecognized command
//! ```
//!
//! The banner's token changes with every connection, so a test that expands `${token}` into an
//! `ECHO` proves the substitution happened rather than matching a constant.
//!
//! Every server listens on 127.0.0.1 on a port the OS picks and stops (with its connections)
//! when dropped. It remembers what TLS clients presented: the SNI and whether a client
//! certificate came along (for mutual-TLS tests).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::pki::{self, Leaf};

/// The host name the SMTP-like server calls itself.
pub const HOSTNAME: &str = "mail.sonde.test";

/// Longest command line the fixture reads; a longer one ends the connection.
const MAX_COMMAND: usize = 8 * 1024;

#[derive(Clone)]
enum Mode {
    /// SMTP-like; STARTTLS offered when a TLS config is given.
    Smtp { starttls: Option<TlsAcceptor> },
    /// TLS from the first byte, then the SMTP-like dialogue.
    Implicit(TlsAcceptor),
    /// STARTTLS answered with the 220 line *and* an extra plaintext line in the same write.
    Injection(TlsAcceptor),
    /// Accept, read and discard, never write.
    Silent,
    /// Write one line that never ends.
    EndlessLine,
    /// Accept and close at once.
    CloseAtOnce,
    /// Write these bytes, then close.
    SendAndClose(Arc<Vec<u8>>),
}

/// What TLS clients presented to the fixture.
#[derive(Default)]
struct TlsSeen {
    sni: Mutex<Vec<Option<String>>>,
    client_certs: AtomicUsize,
    handshakes: AtomicUsize,
}

/// A running line server; stops when dropped.
pub struct LineServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    tls: Arc<TlsSeen>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn acceptor(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

impl LineServer {
    /// SMTP-like, plaintext only (EHLO does not offer STARTTLS; STARTTLS is refused).
    pub async fn smtp() -> LineServer {
        Self::start(Mode::Smtp { starttls: None }).await
    }

    /// SMTP-like with STARTTLS presenting `leaf`.
    pub async fn smtp_starttls(leaf: &Leaf) -> LineServer {
        Self::smtp_starttls_with(pki::server_config(leaf, &[], None)).await
    }

    /// SMTP-like with STARTTLS using this server configuration.
    pub async fn smtp_starttls_with(config: Arc<rustls::ServerConfig>) -> LineServer {
        Self::start(Mode::Smtp {
            starttls: Some(acceptor(config)),
        })
        .await
    }

    /// TLS from the first byte (like SMTPS on 465), then the SMTP-like dialogue. Build `config`
    /// with [`pki::server_config`] (pass a client CA there to require client certificates).
    pub async fn implicit_tls(config: Arc<rustls::ServerConfig>) -> LineServer {
        Self::start(Mode::Implicit(acceptor(config))).await
    }

    /// Answers STARTTLS with `220 …` followed, in the same write, by a plaintext line that a
    /// careless client would read as if it came over TLS.
    pub async fn starttls_injection(leaf: &Leaf) -> LineServer {
        Self::start(Mode::Injection(acceptor(pki::server_config(
            leaf,
            &[],
            None,
        ))))
        .await
    }

    /// Accepts connections and never sends a byte.
    pub async fn silent() -> LineServer {
        Self::start(Mode::Silent).await
    }

    /// Sends one line that never ends (until the client goes away).
    pub async fn endless_line() -> LineServer {
        Self::start(Mode::EndlessLine).await
    }

    /// Accepts and closes at once, without a byte.
    pub async fn close_at_once() -> LineServer {
        Self::start(Mode::CloseAtOnce).await
    }

    /// Sends `bytes`, then closes.
    pub async fn send_and_close(bytes: impl Into<Vec<u8>>) -> LineServer {
        Self::start(Mode::SendAndClose(Arc::new(bytes.into()))).await
    }

    async fn start(mode: Mode) -> LineServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the line fixture on 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let connections = Arc::new(AtomicUsize::new(0));
        let tls = Arc::new(TlsSeen::default());
        let task = {
            let (connections, tls) = (connections.clone(), tls.clone());
            tokio::spawn(async move {
                let mut conns = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    conns.spawn(serve(stream, mode.clone(), tls.clone()));
                    while conns.try_join_next().is_some() {}
                }
            })
        };
        LineServer {
            addr,
            connections,
            tls,
            _task: AbortOnDrop(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn tls_handshakes(&self) -> usize {
        self.tls.handshakes.load(Ordering::SeqCst)
    }

    /// Wait until the server has completed at least `n` TLS handshakes (at most 5 s, a hang
    /// guard) and return how many it has. Under TLS 1.3 a client finishes its side of the
    /// handshake before the server has read the client's Finished message, so a test that asks
    /// right after the probe returned would race the server.
    pub async fn wait_tls_handshakes(&self, n: usize) -> usize {
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.tls_handshakes() < n && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.tls_handshakes()
    }

    /// Completed handshakes in which the client presented a certificate.
    pub fn client_certificates_seen(&self) -> usize {
        self.tls.client_certs.load(Ordering::SeqCst)
    }

    /// The SNI of each completed handshake, in order (`None`: the client sent none, as for an IP
    /// address).
    pub fn sni_seen(&self) -> Vec<Option<String>> {
        self.tls.sni.lock().unwrap().clone()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn serve(mut stream: TcpStream, mode: Mode, seen: Arc<TlsSeen>) {
    match mode {
        Mode::Silent => {
            let mut buf = [0u8; 4096];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        Mode::EndlessLine => {
            let chunk = vec![b'a'; 16 * 1024];
            while stream.write_all(&chunk).await.is_ok() {}
        }
        Mode::CloseAtOnce => drop(stream),
        Mode::SendAndClose(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Mode::Smtp { starttls } => {
            let _ = smtp(Box::new(stream), starttls, false, seen).await;
        }
        Mode::Injection(acc) => {
            let _ = smtp(Box::new(stream), Some(acc), true, seen).await;
        }
        Mode::Implicit(acc) => {
            if let Some(tls) = accept(&acc, stream, &seen).await {
                let _ = smtp(tls, None, false, seen).await;
            }
        }
    }
}

async fn accept<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    acc: &TlsAcceptor,
    stream: S,
    seen: &TlsSeen,
) -> Option<Box<dyn Io>> {
    let tls = acc.accept(stream).await.ok()?;
    {
        let conn = tls.get_ref().1;
        seen.sni
            .lock()
            .unwrap()
            .push(conn.server_name().map(str::to_string));
        if conn.peer_certificates().is_some_and(|c| !c.is_empty()) {
            seen.client_certs.fetch_add(1, Ordering::SeqCst);
        }
    }
    seen.handshakes.fetch_add(1, Ordering::SeqCst);
    Some(Box::new(tls))
}

fn token() -> String {
    format!(
        "{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

/// The SMTP-like dialogue over `io`; `starttls` is offered while the connection is plaintext.
async fn smtp(
    io: Box<dyn Io>,
    mut starttls: Option<TlsAcceptor>,
    inject: bool,
    seen: Arc<TlsSeen>,
) -> std::io::Result<()> {
    let mut conn = BufReader::new(io);
    conn.get_mut()
        .write_all(format!("220 {HOSTNAME} ESMTP sonde-testkit token={}\r\n", token()).as_bytes())
        .await?;
    loop {
        let mut line = Vec::new();
        let n = (&mut conn)
            .take(MAX_COMMAND as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 || !line.ends_with(b"\n") {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let cmd = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" => {
                let mut r = format!("250-{HOSTNAME} greets {arg}\r\n250-SIZE 1000000\r\n");
                if starttls.is_some() {
                    r.push_str("250-STARTTLS\r\n");
                }
                r.push_str("250 HELP\r\n");
                r
            }
            "STARTTLS" => match starttls.take() {
                Some(acc) => {
                    let mut r = b"220 2.0.0 Ready to start TLS\r\n".to_vec();
                    if inject {
                        r.extend_from_slice(b"250 injected before the handshake\r\n");
                    }
                    conn.get_mut().write_all(&r).await?;
                    conn.get_mut().flush().await?;
                    // A well-behaved client sent nothing after STARTTLS; whatever it did send
                    // belongs to the plaintext session and is dropped with it.
                    let plain = conn.into_inner();
                    let Some(tls) = accept(&acc, plain, &seen).await else {
                        return Ok(());
                    };
                    conn = BufReader::new(tls);
                    continue;
                }
                None => "502 5.5.1 STARTTLS not available\r\n".to_string(),
            },
            "ECHO" => format!("250 {arg}\r\n"),
            "NOOP" => "250 2.0.0 OK\r\n".to_string(),
            "QUIT" => {
                conn.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                let _ = conn.get_mut().shutdown().await;
                return Ok(());
            }
            _ => "500 5.5.2 unrecognized command\r\n".to_string(),
        };
        conn.get_mut().write_all(reply.as_bytes()).await?;
    }
}
