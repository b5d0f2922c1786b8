//! Framed TCP fixtures for the `tcp.*` steps: an echo server for each framing mode (lines, a
//! delimiter, a length prefix of any width/endianness/header, fixed size), and hostile peers
//! that write raw bytes (half a frame then silence, an absurd length prefix, garbage).
//!
//! The echo server answers every frame it receives with two frames: a noise frame first
//! (`noise`, or `~` repeated for fixed-size frames) and then the frame itself — so a test sees
//! a skipped frame before its match. Frames are decoded here by hand, independently of the
//! prober's codec, so a shared bug cannot hide.
//!
//! Servers listen on 127.0.0.1 on a port the OS picks and stop (with their connections) when
//! dropped. `kick_all` drops every open connection (a server restart, as a client sees it).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How the fixture frames what it reads and writes.
#[derive(Clone, Debug)]
pub enum WireFraming {
    /// `\n`-terminated (a trailing `\r` is dropped); answers end with `\r\n` when `crlf`.
    Lines {
        crlf: bool,
    },
    Delimiter(Vec<u8>),
    Length {
        width: usize,
        little: bool,
        includes_header: bool,
        header: Vec<u8>,
    },
    Fixed(usize),
}

impl WireFraming {
    /// `body` framed.
    pub fn encode(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            WireFraming::Lines { crlf } => {
                out.extend_from_slice(body);
                out.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
            }
            WireFraming::Delimiter(d) => {
                out.extend_from_slice(body);
                out.extend_from_slice(d);
            }
            WireFraming::Length {
                width,
                little,
                includes_header,
                header,
            } => {
                let n = body.len() as u64
                    + if *includes_header {
                        (header.len() + width) as u64
                    } else {
                        0
                    };
                out.extend_from_slice(header);
                let be = n.to_be_bytes();
                let le = n.to_le_bytes();
                if *little {
                    out.extend_from_slice(&le[..*width]);
                } else {
                    out.extend_from_slice(&be[8 - width..]);
                }
                out.extend_from_slice(body);
            }
            WireFraming::Fixed(_) => out.extend_from_slice(body),
        }
        out
    }

    /// The first whole frame of `buf` (removed from it), if there is one.
    pub fn decode(&self, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
        match self {
            WireFraming::Lines { .. } => {
                let i = buf.iter().position(|b| *b == b'\n')?;
                let mut line: Vec<u8> = buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(line)
            }
            WireFraming::Delimiter(d) => {
                let i = buf.windows(d.len()).position(|w| w == &d[..])?;
                let frame: Vec<u8> = buf.drain(..i).collect();
                buf.drain(..d.len());
                Some(frame)
            }
            WireFraming::Length {
                width,
                little,
                includes_header,
                header,
            } => {
                let head = header.len() + width;
                if buf.len() < head {
                    return None;
                }
                let field = &buf[header.len()..head];
                let mut n: u64 = 0;
                for (i, b) in field.iter().enumerate() {
                    n |= if *little {
                        (*b as u64) << (8 * i)
                    } else {
                        (*b as u64) << (8 * (width - 1 - i))
                    };
                }
                let body = if *includes_header {
                    n as usize - head
                } else {
                    n as usize
                };
                if buf.len() < head + body {
                    return None;
                }
                let frame: Vec<u8> = buf.drain(..head + body).skip(head).collect();
                Some(frame)
            }
            WireFraming::Fixed(n) => (buf.len() >= *n).then(|| buf.drain(..*n).collect()),
        }
    }

    fn noise(&self) -> Vec<u8> {
        match self {
            WireFraming::Fixed(n) => vec![b'~'; *n],
            _ => b"noise".to_vec(),
        }
    }
}

/// What the server does with each connection.
#[derive(Clone, Debug)]
enum Act {
    Echo(WireFraming),
    /// Write these bytes at once, then stay silent (or close).
    Raw {
        bytes: Vec<u8>,
        then_close: bool,
    },
}

pub struct FramedServer {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    kick: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Drop for FramedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FramedServer {
    /// Echo every frame after a noise frame.
    pub async fn echo(framing: WireFraming) -> FramedServer {
        Self::start(Act::Echo(framing)).await
    }

    /// Write `bytes` on every connection, then keep it open and silent (`then_close`: close).
    pub async fn raw(bytes: impl Into<Vec<u8>>, then_close: bool) -> FramedServer {
        Self::start(Act::Raw {
            bytes: bytes.into(),
            then_close,
        })
        .await
    }

    async fn start(act: Act) -> FramedServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (kick, kicked) = watch::channel(0u64);
        let (o, a, r) = (open.clone(), accepted.clone(), received.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (act, o, r, mut kicked) = (act.clone(), o.clone(), r.clone(), kicked.clone());
                kicked.borrow_and_update();
                conns.spawn(async move {
                    tokio::select! {
                        _ = serve(sock, act, r) => {}
                        _ = kicked.changed() => {}
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FramedServer {
            addr,
            open,
            accepted,
            received,
            kick,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:port`, as a `target:`.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every frame the echo server received, in order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    /// Drop every open connection (without a goodbye).
    pub fn kick_all(&self) {
        self.kick.send_modify(|g| *g += 1);
    }
}

async fn serve(mut sock: TcpStream, act: Act, received: Arc<Mutex<Vec<Vec<u8>>>>) {
    match act {
        Act::Raw { bytes, then_close } => {
            let _ = sock.write_all(&bytes).await;
            if !then_close {
                std::future::pending::<()>().await;
            }
        }
        Act::Echo(framing) => {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                while let Some(frame) = framing.decode(&mut buf) {
                    received.lock().unwrap().push(frame.clone());
                    let mut out = framing.encode(&framing.noise());
                    out.extend(framing.encode(&frame));
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    }
}
