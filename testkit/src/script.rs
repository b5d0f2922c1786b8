//! A scripted byte-stream server for line and binary protocols (POP3, SSH and IRC banners, IMAP
//! and SMTP STARTTLS, AMQP, PostgreSQL's SSLRequest): each connection plays the same script of
//! sends, reads and TLS upgrades, on TCP (127.0.0.1) or on a Unix domain socket. It records
//! whether each connection played its script to the end, and what it read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One move of the server.
#[derive(Clone)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read one line (up to `\n`); its text (without the line end) is recorded. A line that does
    /// not start with the prefix ends the connection (the client spoke out of turn).
    ReadLine(String),
    /// Read exactly these bytes; anything else ends the connection.
    ReadBytes(Vec<u8>),
    /// TLS handshake as the server from here on.
    Tls(Arc<rustls::ServerConfig>),
    /// Close the connection now (the script counts as played).
    Close,
}

impl Step {
    pub fn send(s: &str) -> Step {
        Step::Send(s.as_bytes().to_vec())
    }

    pub fn line(prefix: &str) -> Step {
        Step::ReadLine(prefix.to_string())
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A running scripted server; stops when dropped.
pub struct ScriptServer {
    addr: Option<SocketAddr>,
    path: Option<PathBuf>,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    completed: usize,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl ScriptServer {
    /// On 127.0.0.1, a port the OS picks.
    pub async fn tcp(script: Vec<Step>) -> ScriptServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local_addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(play(Box::new(s), script.clone(), l.clone()));
            }
        });
        ScriptServer {
            addr: Some(addr),
            path: None,
            log,
            task,
        }
    }

    /// On a Unix domain socket at `path` (removed again on drop).
    #[cfg(unix)]
    pub fn unix(path: &Path, script: Vec<Step>) -> ScriptServer {
        let listener = tokio::net::UnixListener::bind(path).expect("bind the unix socket");
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(play(Box::new(s), script.clone(), l.clone()));
            }
        });
        ScriptServer {
            addr: None,
            path: Some(path.to_path_buf()),
            log,
            task,
        }
    }

    /// `127.0.0.1:port` of a TCP server.
    pub fn target(&self) -> String {
        match (&self.addr, &self.path) {
            (Some(a), _) => a.to_string(),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => unreachable!("a server listens somewhere"),
        }
    }

    /// The lines read so far, over all connections.
    pub fn lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    /// Connections that played the whole script.
    pub fn completed(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).completed
    }
}

async fn play(stream: Box<dyn Io>, script: Vec<Step>, log: Arc<Mutex<Log>>) {
    let mut s: BufReader<Box<dyn Io>> = BufReader::new(stream);
    for step in script {
        match step {
            Step::Send(b) => {
                if s.get_mut().write_all(&b).await.is_err() || s.get_mut().flush().await.is_err() {
                    return;
                }
            }
            Step::ReadLine(prefix) => {
                let mut line = Vec::new();
                let mut limited = (&mut s).take(8192);
                if limited.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                let ok = text.starts_with(&prefix);
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .lines
                    .push(text);
                if !ok {
                    return;
                }
            }
            Step::ReadBytes(want) => {
                let mut got = vec![0u8; want.len()];
                if s.read_exact(&mut got).await.is_err() || got != want {
                    return;
                }
            }
            Step::Tls(config) => {
                // Nothing may be buffered past the upgrade point: the client waits for us.
                let inner = s.into_inner();
                let Ok(tls) = TlsAcceptor::from(config).accept(inner).await else {
                    return;
                };
                s = BufReader::new(Box::new(tls));
            }
            Step::Close => {
                let _ = s.get_mut().shutdown().await;
                log.lock().unwrap_or_else(|e| e.into_inner()).completed += 1;
                return;
            }
        }
    }
    let _ = s.get_mut().flush().await;
    log.lock().unwrap_or_else(|e| e.into_inner()).completed += 1;
    // Leave the connection open until the client closes it.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
}
