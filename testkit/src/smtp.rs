//! An SMTP submission server that captures what it accepts: STARTTLS (or TLS from the first
//! byte), AUTH PLAIN and AUTH LOGIN checked against a user list, and the rules a real submission
//! server enforces — no AUTH and no mail before STARTTLS when TLS is offered (RFC 3207: 530;
//! RFC 4954: 538), no mail without AUTH when users are configured (530), a new EHLO after the
//! upgrade, and nothing pipelined before the TLS handshake (refused, as injection). It listens
//! on 127.0.0.1 on a port the OS picks and stops when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The name the server gives itself.
pub const HOSTNAME: &str = "mail.sonde.test";

/// Longest line read; a longer one ends the connection.
const MAX_LINE: usize = 64 * 1024;

/// One accepted message.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed, lines ending in `\r\n`.
    pub data: String,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The AUTH mechanism and user that authenticated, if any.
    pub auth: Option<(String, String)>,
}

/// What the server offers and requires.
#[derive(Clone, Default)]
pub struct SmtpOptions {
    /// Offer STARTTLS with this configuration (and require it before AUTH and mail).
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    /// TLS from the first byte instead.
    pub implicit_tls: Option<Arc<rustls::ServerConfig>>,
    /// (user, password): when not empty, AUTH is offered and required.
    pub users: Vec<(String, String)>,
    /// The AUTH mechanisms offered (of PLAIN and LOGIN); empty: both.
    pub mechanisms: Vec<&'static str>,
    /// Answer DATA's end with this line instead of 250 (e.g. `451 4.3.0 try again later`).
    pub data_reply: Option<String>,
}

/// A running server; stops when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    /// Every AUTH attempt: (mechanism, user, accepted).
    auths: Arc<Mutex<Vec<(String, String, bool)>>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    pub async fn start(opts: SmtpOptions) -> SmtpServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the SMTP fixture on 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let mails = Arc::new(Mutex::new(Vec::new()));
        let auths = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            opts,
            mails: mails.clone(),
            auths: auths.clone(),
        });
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(serve(stream, shared.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        SmtpServer {
            addr,
            mails,
            auths,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Every AUTH attempt: (mechanism, user, accepted).
    pub fn auth_attempts(&self) -> Vec<(String, String, bool)> {
        self.auths.lock().unwrap().clone()
    }
}

struct Shared {
    opts: SmtpOptions,
    mails: Arc<Mutex<Vec<Mail>>>,
    auths: Arc<Mutex<Vec<(String, String, bool)>>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection's state.
struct Session {
    conn: BufReader<Box<dyn Io>>,
    tls: bool,
    greeted: bool,
    auth: Option<(String, String)>,
    from: Option<String>,
    to: Vec<String>,
}

impl Session {
    async fn reply(&mut self, line: &str) -> std::io::Result<()> {
        self.conn
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.conn.get_mut().flush().await
    }

    /// The next line without its line end; `None` at EOF or when too long.
    async fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = (&mut self.conn)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
            .ok()?;
        if n == 0 || !buf.ends_with(b"\n") {
            return None;
        }
        let s = String::from_utf8_lossy(&buf);
        Some(s.trim_end_matches(['\r', '\n']).to_string())
    }
}

async fn serve(stream: TcpStream, sh: Arc<Shared>) {
    let (io, tls): (Box<dyn Io>, bool) = match &sh.opts.implicit_tls {
        Some(cfg) => match TlsAcceptor::from(cfg.clone()).accept(stream).await {
            Ok(s) => (Box::new(s), true),
            Err(_) => return,
        },
        None => (Box::new(stream), false),
    };
    let mut s = Session {
        conn: BufReader::new(io),
        tls,
        greeted: false,
        auth: None,
        from: None,
        to: Vec::new(),
    };
    if s.reply(&format!("220 {HOSTNAME} ESMTP sonde-testkit"))
        .await
        .is_err()
    {
        return;
    }
    while let Some(line) = s.line().await {
        match command(&mut s, &sh, &line).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// Handle one command; `Ok(false)` ends the connection.
async fn command(s: &mut Session, sh: &Shared, line: &str) -> std::io::Result<bool> {
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    let tls_pending = sh.opts.starttls.is_some() && !s.tls;
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => {
            s.greeted = true;
            let mut lines = vec![format!("{HOSTNAME} greets {arg}")];
            if tls_pending {
                lines.push("STARTTLS".into());
            }
            if !sh.opts.users.is_empty() && !tls_pending {
                lines.push(format!("AUTH {}", offered(&sh.opts).join(" ")));
            }
            lines.push("8BITMIME".into());
            lines.push("HELP".into());
            let last = lines.len() - 1;
            for (i, l) in lines.iter().enumerate() {
                let sep = if i == last { ' ' } else { '-' };
                s.reply(&format!("250{sep}{l}")).await?;
            }
        }
        "HELO" => {
            s.greeted = true;
            s.reply(&format!("250 {HOSTNAME}")).await?;
        }
        "STARTTLS" if tls_pending => {
            s.reply("220 2.0.0 Ready to start TLS").await?;
            if !s.conn.buffer().is_empty() {
                // Commands sent before the handshake could be injected by a man in the middle.
                return Ok(false);
            }
            let cfg = sh.opts.starttls.clone().expect("checked");
            let plain = std::mem::replace(
                &mut s.conn,
                BufReader::new(Box::new(tokio::io::join(
                    tokio::io::empty(),
                    tokio::io::sink(),
                ))),
            );
            let Ok(tls) = TlsAcceptor::from(cfg).accept(plain.into_inner()).await else {
                return Ok(false);
            };
            s.conn = BufReader::new(Box::new(tls));
            s.tls = true;
            s.greeted = false;
            s.auth = None;
            s.from = None;
            s.to.clear();
        }
        "AUTH" if tls_pending => {
            s.reply("538 5.7.11 Encryption required for requested authentication mechanism")
                .await?
        }
        "AUTH" if sh.opts.users.is_empty() || !s.greeted => {
            s.reply("503 5.5.1 AUTH not available").await?
        }
        "AUTH" => auth(s, sh, arg).await?,
        "MAIL" if tls_pending => {
            s.reply("530 5.7.0 Must issue a STARTTLS command first")
                .await?
        }
        "MAIL" if !sh.opts.users.is_empty() && s.auth.is_none() => {
            s.reply("530 5.7.0 Authentication required").await?
        }
        "MAIL" => {
            s.from = Some(path(arg, "FROM:"));
            s.to.clear();
            s.reply("250 2.1.0 Ok").await?;
        }
        "RCPT" if s.from.is_none() => s.reply("503 5.5.1 Need MAIL first").await?,
        "RCPT" => {
            s.to.push(path(arg, "TO:"));
            s.reply("250 2.1.5 Ok").await?;
        }
        "DATA" if s.to.is_empty() => s.reply("503 5.5.1 Need RCPT first").await?,
        "DATA" => {
            s.reply("354 End data with <CR><LF>.<CR><LF>").await?;
            let mut data = String::new();
            loop {
                let Some(l) = s.line().await else {
                    return Ok(false);
                };
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push_str("\r\n");
            }
            match &sh.opts.data_reply {
                Some(r) => s.reply(r).await?,
                None => {
                    sh.mails.lock().unwrap().push(Mail {
                        from: s.from.take().unwrap_or_default(),
                        to: std::mem::take(&mut s.to),
                        data,
                        tls: s.tls,
                        auth: s.auth.clone(),
                    });
                    s.reply("250 2.0.0 Ok: queued").await?;
                }
            }
        }
        "RSET" => {
            s.from = None;
            s.to.clear();
            s.reply("250 2.0.0 Ok").await?;
        }
        "NOOP" => s.reply("250 2.0.0 Ok").await?,
        "QUIT" => {
            s.reply("221 2.0.0 Bye").await?;
            return Ok(false);
        }
        _ => s.reply("500 5.5.2 unrecognized command").await?,
    }
    Ok(true)
}

/// `<addr>` out of `FROM:<addr> PARAMS`.
fn path(arg: &str, prefix: &str) -> String {
    let rest = arg.get(prefix.len()..).unwrap_or("");
    rest.trim_start()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .to_string()
}

fn offered(opts: &SmtpOptions) -> Vec<&'static str> {
    if opts.mechanisms.is_empty() {
        vec!["PLAIN", "LOGIN"]
    } else {
        opts.mechanisms.clone()
    }
}

async fn auth(s: &mut Session, sh: &Shared, arg: &str) -> std::io::Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mech, initial) = arg.split_once(' ').unwrap_or((arg, ""));
    let mech = mech.to_ascii_uppercase();
    if !offered(&sh.opts).contains(&mech.as_str()) {
        return s.reply("504 5.5.4 Unrecognized authentication type").await;
    }
    let decode = |s: &str| {
        b64.decode(s.trim())
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let (user, pass) = match mech.as_str() {
        "PLAIN" => {
            let resp = if initial.is_empty() {
                s.reply("334 ").await?;
                s.line().await.unwrap_or_default()
            } else {
                initial.to_string()
            };
            let Some(d) = decode(&resp) else {
                return s.reply("501 5.5.2 Cannot decode response").await;
            };
            let mut parts = d.split('\0');
            let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
            (
                user.unwrap_or("").to_string(),
                pass.unwrap_or("").to_string(),
            )
        }
        "LOGIN" => {
            let user = if initial.is_empty() {
                s.reply(&format!("334 {}", b64.encode("Username:"))).await?;
                s.line().await.unwrap_or_default()
            } else {
                initial.to_string()
            };
            s.reply(&format!("334 {}", b64.encode("Password:"))).await?;
            let pass = s.line().await.unwrap_or_default();
            match (decode(&user), decode(&pass)) {
                (Some(u), Some(p)) => (u, p),
                _ => return s.reply("501 5.5.2 Cannot decode response").await,
            }
        }
        _ => return s.reply("504 5.5.4 Unrecognized authentication type").await,
    };
    let ok = sh.opts.users.iter().any(|(u, p)| *u == user && *p == pass);
    sh.auths
        .lock()
        .unwrap()
        .push((mech.clone(), user.clone(), ok));
    if ok {
        s.auth = Some((mech, user));
        s.reply("235 2.7.0 Authentication successful").await
    } else {
        s.reply("535 5.7.8 Authentication credentials invalid")
            .await
    }
}
