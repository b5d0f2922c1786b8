//! A text-protocol fixture: XMPP over WebSocket (RFC 7395), just enough of it to prove that a
//! login needing a subprotocol, a base64 credential and several send/expect rounds is
//! expressible as scenario steps.
//!
//! The upgrade must offer subprotocol `xmpp` (otherwise: HTTP 400). Then, one stanza per text
//! frame (`S:` = server; `{user}`/`{password}` are [`XmppOptions`]):
//!
//! ```text
//! C: <open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="sonde.test" version="1.0"/>
//! S: <open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="sonde.test" id="<random>" version="1.0" xml:lang="en"/>
//! S: <stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>PLAIN</mechanism></mechanisms></stream:features>
//! C: <auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">BASE64("\0{user}\0{password}")</auth>
//! S: <success xmlns="urn:ietf:params:xml:ns:xmpp-sasl"/>
//!    or <failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><not-authorized/></failure> (may retry)
//! C: <open … to="sonde.test" …/>                       (the stream restarts after SASL)
//! S: <open …/>  then  <stream:features …><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></stream:features>
//! C: <iq type="set" id="b1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>probe</resource></bind></iq>
//! S: <iq type="result" id="b1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><jid>{user}@sonde.test/probe</jid></bind></iq>
//! C: <message to="echo@sonde.test" id="m1"><body>hello</body></message>
//! S: <presence from="buddy@sonde.test/phone"/>          (noise, when `presence_noise`)
//! S: <message from="echo@sonde.test" to="{user}@sonde.test/probe" id="m1" type="chat"><body>hello</body></message>
//! C: <close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>
//! S: <close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>  then a WebSocket close (1000)
//! ```
//!
//! Anything out of order gets `<stream:error><not-authorized/>…` (before login) or
//! `<stream:error><bad-format/>…` and a close: a scenario that skips a round fails loudly.
//! The parsing is deliberately naive string matching: this is a test peer, not an XMPP server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::ws::{listen, upgrade, AbortOnDrop, Io, Seen, Socket, Subprotocol};

/// The domain the fixture serves.
pub const DOMAIN: &str = "sonde.test";

const FRAMING_NS: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Accepted credentials and behaviour.
#[derive(Clone)]
pub struct XmppOptions {
    pub user: String,
    pub password: String,
    /// Send a `<presence/>` stanza before every echoed message (frames a scenario must skip).
    pub presence_noise: bool,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for XmppOptions {
    fn default() -> Self {
        XmppOptions {
            user: "probe".into(),
            password: "s3cret".into(),
            presence_noise: true,
            tls: None,
        }
    }
}

/// A running XMPP-over-WebSocket fixture; stops when dropped.
pub struct XmppServer {
    addr: SocketAddr,
    tls: bool,
    stats: Arc<Stats>,
    _task: AbortOnDrop,
}

#[derive(Default)]
struct Stats {
    logins: AtomicUsize,
    failed_logins: AtomicUsize,
    binds: AtomicUsize,
    messages: AtomicUsize,
}

impl XmppServer {
    pub async fn start(opts: XmppOptions) -> XmppServer {
        let stats = Arc::new(Stats::default());
        let seen = Arc::new(Seen::default());
        let tls = opts.tls.is_some();
        let opts = Arc::new(opts);
        let (addr, task) = {
            let (stats, seen) = (stats.clone(), seen.clone());
            listen(opts.tls.clone(), seen.clone(), move |io| {
                serve(io, opts.clone(), stats.clone(), seen.clone())
            })
            .await
        };
        XmppServer {
            addr,
            tls,
            stats,
            _task: task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/xmpp-websocket` (`wss://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/xmpp-websocket", self.addr)
    }

    /// Successful SASL logins.
    pub fn logins(&self) -> usize {
        self.stats.logins.load(Ordering::SeqCst)
    }

    /// Rejected SASL attempts.
    pub fn failed_logins(&self) -> usize {
        self.stats.failed_logins.load(Ordering::SeqCst)
    }

    /// Resources bound.
    pub fn binds(&self) -> usize {
        self.stats.binds.load(Ordering::SeqCst)
    }

    /// Messages echoed.
    pub fn messages(&self) -> usize {
        self.stats.messages.load(Ordering::SeqCst)
    }
}

/// The SASL PLAIN credential a client sends: `base64("\0user\0password")`.
pub fn plain_credential(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Where the client is in the dialogue.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum State {
    /// Waiting for the first `<open/>`.
    Opening,
    /// Features with SASL mechanisms sent; waiting for `<auth>`.
    Authenticating,
    /// Logged in; waiting for the restarted stream's `<open/>`.
    Reopening,
    /// Waiting for the resource binding `<iq>`.
    Binding,
    /// Bound: messages are echoed.
    Ready,
}

async fn serve(io: Box<dyn Io>, opts: Arc<XmppOptions>, stats: Arc<Stats>, seen: Arc<Seen>) {
    // RFC 7395 §3.1: a client that does not ask for `xmpp` is refused (HTTP 400).
    let Some(mut ws) = upgrade(io, &Subprotocol::Require("xmpp".into()), None, &seen).await else {
        return;
    };
    let mut state = State::Opening;
    let mut jid = String::new();
    while let Some(Ok(msg)) = ws.next().await {
        let text = match msg {
            Message::Text(t) => t.as_str().trim().to_string(),
            Message::Close(_) => return,
            Message::Binary(_) => {
                let _ = stream_error(&mut ws, "bad-format").await;
                return;
            }
            _ => continue,
        };
        let replies = match (state, stanza_name(&text)) {
            (_, "close") => {
                let _ = ws
                    .send(Message::text(format!("<close xmlns=\"{FRAMING_NS}\"/>")))
                    .await;
                let _ = close(&mut ws, CloseCode::Normal, "").await;
                return;
            }
            (State::Opening, "open") => {
                state = State::Authenticating;
                vec![
                    open_reply(),
                    "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\">\
                     <mechanisms xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\">\
                     <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                        .to_string(),
                ]
            }
            (State::Authenticating, "auth") => {
                let given = between(&text, ">", "</auth>").unwrap_or("").trim();
                let ok = attr(&text, "mechanism") == Some("PLAIN")
                    && check_plain(given, &opts.user, &opts.password);
                if ok {
                    stats.logins.fetch_add(1, Ordering::SeqCst);
                    state = State::Reopening;
                    vec!["<success xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"/>".to_string()]
                } else {
                    stats.failed_logins.fetch_add(1, Ordering::SeqCst);
                    vec!["<failure xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"><not-authorized/></failure>".to_string()]
                }
            }
            (State::Reopening, "open") => {
                state = State::Binding;
                vec![
                    open_reply(),
                    "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\">\
                     <bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
                        .to_string(),
                ]
            }
            (State::Binding, "iq") if attr(&text, "type") == Some("set") => {
                let Some(resource) = between(&text, "<resource>", "</resource>") else {
                    let _ = stream_error(&mut ws, "bad-format").await;
                    return;
                };
                jid = format!("{}@{DOMAIN}/{}", opts.user, xml_escape(resource));
                state = State::Ready;
                stats.binds.fetch_add(1, Ordering::SeqCst);
                vec![format!(
                    "<iq type=\"result\" id=\"{}\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\">\
                     <jid>{jid}</jid></bind></iq>",
                    xml_escape(attr(&text, "id").unwrap_or(""))
                )]
            }
            (State::Ready, "message") => {
                stats.messages.fetch_add(1, Ordering::SeqCst);
                let to = attr(&text, "to").unwrap_or(DOMAIN);
                let id = attr(&text, "id").unwrap_or("");
                let body = between(&text, "<body>", "</body>").unwrap_or("");
                let mut out = Vec::new();
                if opts.presence_noise {
                    out.push(format!("<presence from=\"buddy@{DOMAIN}/phone\"/>"));
                }
                out.push(format!(
                    "<message from=\"{}\" to=\"{jid}\" id=\"{}\" type=\"chat\"><body>{body}</body></message>",
                    xml_escape(to),
                    xml_escape(id)
                ));
                out
            }
            (State::Opening | State::Authenticating, _) => {
                let _ = stream_error(&mut ws, "not-authorized").await;
                return;
            }
            _ => {
                let _ = stream_error(&mut ws, "bad-format").await;
                return;
            }
        };
        for r in replies {
            if ws.send(Message::text(r)).await.is_err() {
                return;
            }
        }
    }
}

fn open_reply() -> String {
    let id: u64 = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        std::time::SystemTime::now(),
    );
    format!(
        "<open xmlns=\"{FRAMING_NS}\" from=\"{DOMAIN}\" id=\"{id:016x}\" version=\"1.0\" xml:lang=\"en\"/>"
    )
}

async fn stream_error(ws: &mut Socket, condition: &str) -> Result<(), ()> {
    let e = format!(
        "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\"><{condition} \
         xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
    );
    ws.send(Message::text(e)).await.map_err(|_| ())?;
    ws.send(Message::text(format!("<close xmlns=\"{FRAMING_NS}\"/>")))
        .await
        .map_err(|_| ())?;
    close(ws, CloseCode::Normal, "").await
}

async fn close(ws: &mut Socket, code: CloseCode, reason: &str) -> Result<(), ()> {
    ws.close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
    .await
    .map_err(|_| ())?;
    // Let the client's answering close arrive (briefly).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ws.next()).await;
    Ok(())
}

/// `<auth …>` → "auth", `<stream:features` → "stream:features".
fn stanza_name(s: &str) -> &str {
    let s = s.strip_prefix('<').unwrap_or("");
    let end = s
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(s.len());
    &s[..end]
}

/// The value of attribute `name` in the first tag of `s` (double or single quotes).
fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let tag_end = s.find('>').unwrap_or(s.len());
    let tag = &s[..tag_end];
    for quote in ['"', '\''] {
        let key = format!(" {name}={quote}");
        if let Some(i) = tag.find(&key) {
            let rest = &tag[i + key.len()..];
            return rest.find(quote).map(|j| &rest[..j]);
        }
    }
    None
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)?;
    Some(&s[i..i + j])
}

/// SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, base64.
fn check_plain(b64: &str, user: &str, password: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    matches!(parts.as_slice(), [authz, u, p]
        if (authz.is_empty() || *authz == user.as_bytes())
            && *u == user.as_bytes()
            && *p == password.as_bytes())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_credentials() {
        let c = plain_credential("probe", "s3cret");
        assert_eq!(c, "AHByb2JlAHMzY3JldA==");
        assert!(check_plain(&c, "probe", "s3cret"));
        assert!(!check_plain(&c, "probe", "wrong"));
        assert!(!check_plain("not base64!", "probe", "s3cret"));
    }

    #[test]
    fn naive_parsing() {
        let s = r#"<iq type="set" id="b1"><bind><resource>probe</resource></bind></iq>"#;
        assert_eq!(stanza_name(s), "iq");
        assert_eq!(attr(s, "id"), Some("b1"));
        assert_eq!(attr(s, "to"), None);
        assert_eq!(between(s, "<resource>", "</resource>"), Some("probe"));
        assert_eq!(stanza_name("<open/>"), "open");
        assert_eq!(stanza_name(""), "");
    }
}
