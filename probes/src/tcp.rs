//! TCP probe: connect, optional TLS, then a send/expect dialogue with STARTTLS, in the manner of
//! blackbox_exporter's `query_response`.
//!
//! The dialogue reads the peer the way blackbox's `bufio.Scanner` does, so blackbox modules keep
//! their meaning: lines end at `\n`, one trailing `\r` is dropped, a final line without a newline
//! still counts when the peer closes, and a line longer than 64 KiB ([`MAX_LINE`]) fails the probe
//! instead of growing a buffer for a peer that never sends a newline.
//!
//! How an `Expect` fails, and why the reasons differ:
//! - lines arrived but none matched before the peer closed: [`FailureReason::Assertion`] — the
//!   service talked, it said the wrong thing (the regex is the assertion);
//! - the peer closed without sending a single line during that `Expect`:
//!   [`FailureReason::Protocol`] — nothing was said at all, which is a broken or overloaded
//!   service (a closed banner, an accept-and-drop), not a content mismatch, and alerting on it
//!   deserves its own label;
//! - the deadline passed while waiting: [`FailureReason::Timeout`];
//! - a TLS alert instead of data (a TLS 1.3 server refusing the client certificate after the
//!   handshake): [`FailureReason::Tls`]; any other read error: [`FailureReason::Protocol`].
//!
//! In the first two cases `failed_due_to_regex` is set, as blackbox sets
//! `probe_failed_due_to_regex` whenever the scanner ran out of lines without a match; on a timeout
//! or a read error it stays false, as in blackbox.
//!
//! STARTTLS upgrades the very connection the dialogue used. Bytes the peer sent *before* the TLS
//! handshake but that the dialogue has not consumed are refused (reason `protocol`): they would
//! otherwise be read as if they came over TLS (the STARTTLS command-injection class of bugs,
//! CVE-2011-0411). blackbox silently drops them; a prober should say so.
//!
//! Each expect that answers a `Send` adds send → match to the `processing` phase: from the
//! send's flush to the read that carried the end of the matched line (or of the expected
//! bytes), with the kernel's timestamps of both on Linux ([`crate::kts`]), also over TLS and
//! after STARTTLS. The trace names each expect's figures.

use std::fmt::Write as _;

use regex::bytes::Regex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use crate::resolve::{connect_tcp, ResolveOptions, Resolver};
use crate::tls::{TlsClient, TlsFacts};
use crate::{kts, with_deadline, Failure, FailureReason, Outcome, Phase, Recorder};

/// One move of the dialogue.
#[derive(Clone, Debug)]
pub enum TcpStep {
    /// Read lines until one matches; its groups feed the next `Send`. No match before EOF fails.
    Expect(Regex),
    /// Read exactly these bytes.
    ExpectBytes(Vec<u8>),
    /// Write this line (a `\n` is appended, as blackbox does); `$1`, `${name}` expand from the
    /// last `Expect` match. Before any `Expect` the text is sent as written.
    Send(String),
    /// The same with bytes that need not be text (blackbox's `send: !!binary …`).
    SendBytes(Vec<u8>),
    /// Upgrade the connection to TLS with the request's `tls_client`.
    StartTls,
}

#[derive(Clone, Debug)]
pub struct TcpRequest {
    pub host: String,
    pub port: u16,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Handshake TLS right after connecting.
    pub tls: bool,
    /// Used for `tls: true` and for `StartTls`.
    pub tls_client: TlsClient,
    pub dialogue: Vec<TcpStep>,
    /// Asked about every resolved address before connecting (see [`crate::policy`]).
    pub policy: Option<crate::policy::Policy>,
    /// Dial this Unix domain socket instead of `host:port` (blackbox's `unix` prober): no
    /// resolve phase; the connect phase is the socket's. `host` is still the TLS name.
    pub unix: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TcpFacts {
    /// The last TLS session (after STARTTLS, the upgraded one).
    pub tls: Option<TlsFacts>,
    /// Lines read (`< `) and written (`> `), and TLS upgrades (`-- `), bounded
    /// ([`MAX_TRANSCRIPT`] entries of at most [`MAX_TRANSCRIPT_LINE`] characters), for the trace.
    /// Sent lines appear verbatim: a caller that templated secrets into a `Send` must redact them.
    pub transcript: Vec<String>,
    pub failed_due_to_regex: bool,
    /// The line each `Expect` matched, by its index in the dialogue (at most
    /// [`MAX_TRANSCRIPT`] entries), for callers that expand the match (blackbox's
    /// `probe_expect_info` labels).
    #[serde(skip)]
    pub matched_lines: Vec<(usize, Vec<u8>)>,
}

pub type TcpOutcome = Outcome<TcpFacts>;

/// Longest line accepted, as Go's `bufio.MaxScanTokenSize`: beyond it blackbox's scanner fails,
/// and so do we (reason `protocol`).
pub const MAX_LINE: usize = 64 * 1024;
/// Transcript entries kept; a chatty peer cannot grow the trace without bound.
pub const MAX_TRANSCRIPT: usize = 200;
/// Characters kept of one transcript line.
pub const MAX_TRANSCRIPT_LINE: usize = 512;

/// The connection under the dialogue, plain or TLS, behind one type so STARTTLS can swap it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = BufReader<Box<dyn Io>>;

/// Run the probe under `deadline`.
pub async fn probe(req: &TcpRequest, deadline: Instant) -> TcpOutcome {
    let mut rec = Recorder::new();
    let mut facts = TcpFacts::default();
    // What the dialogue is waiting for, named in a timeout message.
    let mut pending = String::new();
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        run(req, rec, &mut facts, &mut pending).await
    })
    .await;
    let failure = match res {
        Ok(()) => None,
        Err(mut f) => {
            if f.reason == FailureReason::Timeout && !pending.is_empty() {
                let _ = write!(f.message, " ({pending})");
            }
            Some(f)
        }
    };
    rec.finish(failure, facts)
}

async fn run(
    req: &TcpRequest,
    rec: &mut Recorder,
    facts: &mut TcpFacts,
    pending: &mut String,
) -> Result<(), Failure> {
    // A dialogue is many exchanges: every read is noted, so each expect that answers a send
    // has the kernel's figure (see `Dialogue::answered`).
    let (tcp, marks): (Box<dyn Io>, kts::Marks) = match &req.unix {
        Some(path) => (
            Box::new(connect_unix(path, rec).await?),
            kts::Marks::none("a Unix socket carries no packets to timestamp"),
        ),
        None => {
            let addrs = req.resolver.resolve(&req.host, req.ip, rec).await?;
            crate::policy::check(req.policy.as_ref(), &req.host, &addrs, req.port, rec)?;
            let tcp = connect_tcp(&addrs, req.port, rec).await?;
            if !req.tls && req.dialogue.is_empty() {
                // A bare connect (blackbox's tcp_connect): nothing is sent or awaited, so there
                // is nothing to timestamp and no socket option to set.
                (
                    Box::new(tcp),
                    kts::Marks::none("nothing is exchanged after connecting"),
                )
            } else {
                let (tcp, marks) = kts::timestamped(tcp);
                marks.listen();
                (Box::new(tcp), marks)
            }
        }
    };
    let mut conn: Conn = if req.tls {
        let (tls, tls_facts) = req
            .tls_client
            .handshake(tcp, &req.host, rec, &marks)
            .await?;
        facts.tls = Some(tls_facts);
        BufReader::new(Box::new(tls))
    } else {
        BufReader::new(Box::new(tcp))
    };
    let mut dialogue = Dialogue {
        transcript: Transcript(&mut facts.transcript),
        matched_lines: &mut facts.matched_lines,
        failed_due_to_regex: &mut facts.failed_due_to_regex,
        last_match: None,
        pending,
        n: req.dialogue.len(),
        marks,
        last_send: None,
    };
    for (i, step) in req.dialogue.iter().enumerate() {
        match step {
            TcpStep::Expect(re) => dialogue.expect_line(&mut conn, i, re, rec).await?,
            TcpStep::ExpectBytes(want) => {
                dialogue.expect_bytes(&mut conn, i + 1, want, rec).await?
            }
            TcpStep::Send(template) => {
                dialogue
                    .send(&mut conn, i + 1, template.as_bytes(), rec)
                    .await?
            }
            TcpStep::SendBytes(template) => dialogue.send(&mut conn, i + 1, template, rec).await?,
            TcpStep::StartTls => {
                let (upgraded, tls_facts) = dialogue.start_tls(conn, i + 1, req, rec).await?;
                facts.tls = Some(tls_facts);
                conn = upgraded;
            }
        }
    }
    dialogue.pending.clear();
    // Close politely; the outcome does not depend on it.
    let _ = conn.get_mut().shutdown().await;
    Ok(())
}

/// Connect to a Unix domain socket, recording the `connect` phase. A permission error says so
/// (the socket exists, sonde's user may not use it), as blackbox does.
#[cfg(unix)]
async fn connect_unix(
    path: &std::path::Path,
    rec: &mut Recorder,
) -> Result<tokio::net::UnixStream, Failure> {
    let started = tokio::time::Instant::now();
    rec.doing("connecting to the unix socket");
    let res = tokio::net::UnixStream::connect(path).await;
    rec.timings.add_since(crate::Phase::Connect, started);
    let shown = path
        .display()
        .to_string()
        .chars()
        .take(256)
        .collect::<String>();
    match res {
        Ok(s) => {
            rec.event(format!("connected to unix socket {shown}"));
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Failure::new(
            FailureReason::Connect,
            format!("permission denied connecting to unix socket {shown}: {e}"),
        )),
        Err(e) => Err(Failure::new(
            FailureReason::Connect,
            format!("cannot connect to unix socket {shown}: {e}"),
        )),
    }
}

#[cfg(not(unix))]
async fn connect_unix(path: &std::path::Path, _rec: &mut Recorder) -> Result<Box<dyn Io>, Failure> {
    Err(Failure::new(
        FailureReason::Connect,
        format!("unix sockets are not available here ({})", path.display()),
    ))
}

/// The dialogue's in-flight state, one stage per kind of step. Every message names the step
/// (`step_no` of `n`, counted from 1) so a failure points at the scenario line that caused it.
struct Dialogue<'a> {
    transcript: Transcript<'a>,
    matched_lines: &'a mut Vec<(usize, Vec<u8>)>,
    failed_due_to_regex: &'a mut bool,
    /// The line the last `Expect` matched, and its regex, for `$1` / `${name}` in `Send`.
    last_match: Option<(Regex, Vec<u8>)>,
    /// What the dialogue is waiting for, named in a timeout message.
    pending: &'a mut String,
    n: usize,
    /// The kernel's timestamps of the connection's bytes.
    marks: kts::Marks,
    /// When the last `Send` was flushed (user space, and the key of its last byte for the
    /// kernel), until an expect answers it.
    last_send: Option<(Instant, Option<u32>)>,
}

impl Dialogue<'_> {
    /// An expect just took the bytes that answer the last `Send`: its latency (flushed → the
    /// read that carried the answer's end) is added to the `processing` phase, with the kernel's
    /// figure where the socket is timestamped. Returns how the trace says it ("" when no send
    /// preceded: a banner answers nothing).
    fn answered(&mut self, rec: &mut Recorder) -> String {
        let Some((at, key)) = self.last_send.take() else {
            return String::new();
        };
        let user = at.elapsed();
        let kernel = self.marks.between(key, self.marks.last_rx());
        rec.timings
            .add_measured(Phase::Processing, user, kernel.as_ref().ok().copied());
        format!(", answering the send: {}", kts::describe(user, &kernel))
    }

    /// `Expect`: read lines until one matches step `i` (0-based, as `matched_lines` records it).
    async fn expect_line(
        &mut self,
        conn: &mut Conn,
        i: usize,
        re: &Regex,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let (step_no, n) = (i + 1, self.n);
        rec.doing("waiting for a line matching an expect regex");
        *self.pending = format!("dialogue step {step_no}/{n}: expecting a line matching /{re}/");
        let mut last_line: Option<Vec<u8>> = None;
        loop {
            match read_line(conn).await {
                Ok(Some(line)) => {
                    self.transcript.push("< ", &line);
                    let matched = re.is_match(&line);
                    if matched {
                        let answered = self.answered(rec);
                        rec.event(format!(
                            "step {step_no}: /{re}/ matched {}{answered}",
                            quote(&line)
                        ));
                        if self.matched_lines.len() < MAX_TRANSCRIPT {
                            self.matched_lines.push((i, line.clone()));
                        }
                        self.last_match = Some((re.clone(), line));
                        return Ok(());
                    }
                    *self.pending = format!(
                        "dialogue step {step_no}/{n}: expecting a line matching /{re}/; \
                         last line read: {}",
                        quote(&line)
                    );
                    last_line = Some(line);
                }
                Ok(None) => {
                    *self.failed_due_to_regex = true;
                    return Err(no_match_before_eof(re, last_line, step_no, n));
                }
                Err(e) => return Err(e.into_failure(step_no, n)),
            }
        }
    }

    /// `ExpectBytes`: read exactly `want`; a short read is the peer's doing, a different one an
    /// assertion.
    async fn expect_bytes(
        &mut self,
        conn: &mut Conn,
        step_no: usize,
        want: &[u8],
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let n = self.n;
        rec.doing("waiting for expected bytes");
        *self.pending = format!(
            "dialogue step {step_no}/{n}: expecting {} byte(s) {}",
            want.len(),
            quote(want)
        );
        let got = read_exact_or_eof(conn, want.len())
            .await
            .map_err(|e| e.into_failure(step_no, n))?;
        self.transcript.push("< ", &got);
        if got == want {
            let answered = self.answered(rec);
            if !answered.is_empty() {
                rec.event(format!("step {step_no}: expected bytes read{answered}"));
            }
        }
        if got.len() < want.len() {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!(
                    "the peer closed the connection after {} of {} expected byte(s) \
                     (dialogue step {step_no}/{n}): got {}",
                    got.len(),
                    want.len(),
                    quote(&got)
                ),
            ));
        }
        if got != want {
            return Err(Failure::new(
                FailureReason::Assertion,
                format!(
                    "expected {} but read {} (dialogue step {step_no}/{n})",
                    quote(want),
                    quote(&got)
                ),
            ));
        }
        Ok(())
    }

    /// `Send`: expand the template from the last match and write it as one line.
    async fn send(
        &mut self,
        conn: &mut Conn,
        step_no: usize,
        template: &[u8],
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let n = self.n;
        rec.doing("sending a line");
        *self.pending = format!("dialogue step {step_no}/{n}: sending a line");
        let mut line = Vec::with_capacity(template.len() + 1);
        match &self.last_match {
            Some((re, matched)) => match re.captures(matched) {
                Some(caps) => caps.expand(template, &mut line),
                None => line.extend_from_slice(template),
            },
            None => line.extend_from_slice(template),
        }
        self.transcript.push("> ", &line);
        line.push(b'\n');
        let res = async {
            conn.get_mut().write_all(&line).await?;
            conn.get_mut().flush().await
        }
        .await;
        if res.is_ok() {
            self.last_send = Some((Instant::now(), self.marks.sent_key()));
        }
        res.map_err(|e| {
            Failure::new(
                FailureReason::Protocol,
                format!("sending failed (dialogue step {step_no}/{n}): {e}"),
            )
        })
    }

    /// `StartTls`: upgrade `conn`, refusing if the peer sent bytes we have not read (they would
    /// pass for TLS-protected data: the STARTTLS injection attack).
    async fn start_tls(
        &mut self,
        conn: Conn,
        step_no: usize,
        req: &TcpRequest,
        rec: &mut Recorder,
    ) -> Result<(Conn, TlsFacts), Failure> {
        let n = self.n;
        *self.pending = format!("dialogue step {step_no}/{n}: STARTTLS handshake");
        let unread = conn.buffer().len();
        if unread > 0 {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!(
                    "the peer sent {unread} byte(s) the dialogue did not read before \
                     STARTTLS (dialogue step {step_no}/{n}): refusing to upgrade, as they \
                     would be taken for TLS-protected data: {}",
                    quote(conn.buffer())
                ),
            ));
        }
        let plain = conn.into_inner();
        self.last_send = None;
        let (tls, tls_facts) = req
            .tls_client
            .handshake(plain, &req.host, rec, &self.marks)
            .await?;
        self.transcript.push_note(&format!(
            "-- STARTTLS: {}, {}",
            tls_facts.version, tls_facts.cipher
        ));
        Ok((BufReader::new(Box::new(tls)), tls_facts))
    }
}

/// The peer closed before an `Expect` matched: with no line at all it broke the dialogue;
/// with lines that did not match, the expectation failed.
fn no_match_before_eof(
    re: &Regex,
    last_line: Option<Vec<u8>>,
    step_no: usize,
    n: usize,
) -> Failure {
    match last_line {
        None => Failure::new(
            FailureReason::Protocol,
            format!(
                "the peer closed the connection without sending a line \
                 (dialogue step {step_no}/{n}: expecting a line matching \
                 /{re}/)"
            ),
        ),
        Some(l) => Failure::new(
            FailureReason::Assertion,
            format!(
                "no line matched /{re}/ before the peer closed the \
                 connection (dialogue step {step_no}/{n}); last line \
                 read: {}",
                quote(&l)
            ),
        ),
    }
}

/// Why reading failed (other than a clean EOF).
enum ReadError {
    TooLong,
    Io(std::io::Error),
}

impl ReadError {
    fn into_failure(self, step_no: usize, n: usize) -> Failure {
        match self {
            ReadError::TooLong => Failure::new(
                FailureReason::Protocol,
                format!(
                    "the peer sent a line longer than {} KiB (dialogue step {step_no}/{n})",
                    MAX_LINE / 1024
                ),
            ),
            // A TLS alert after the handshake, e.g. a TLS 1.3 server refusing the client
            // certificate only once it has read the client's last flight.
            ReadError::Io(e) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
                Failure::new(
                    FailureReason::Tls,
                    format!("TLS error from the peer (dialogue step {step_no}/{n}): {e}"),
                )
            }
            ReadError::Io(e) => Failure::new(
                FailureReason::Protocol,
                format!("reading from the peer failed (dialogue step {step_no}/{n}): {e}"),
            ),
        }
    }
}

/// One line as `bufio.ScanLines` yields it: without `\n` and one trailing `\r`; at EOF the
/// unterminated rest, if any. `None` at EOF with nothing left.
async fn read_line(conn: &mut Conn) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();
    loop {
        let buf = conn.fill_buf().await.map_err(ReadError::Io)?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            drop_cr(&mut line);
            return Ok(Some(line));
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if line.len() + i > MAX_LINE {
                    return Err(ReadError::TooLong);
                }
                line.extend_from_slice(&buf[..i]);
                conn.consume(i + 1);
                drop_cr(&mut line);
                return Ok(Some(line));
            }
            None => {
                let len = buf.len();
                if line.len() + len > MAX_LINE {
                    return Err(ReadError::TooLong);
                }
                line.extend_from_slice(buf);
                conn.consume(len);
            }
        }
    }
}

fn drop_cr(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

/// Up to `n` bytes; fewer only when the peer closed first.
async fn read_exact_or_eof(conn: &mut Conn, n: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::with_capacity(n.min(MAX_LINE));
    while out.len() < n {
        let buf = conn.fill_buf().await.map_err(ReadError::Io)?;
        if buf.is_empty() {
            break;
        }
        let take = buf.len().min(n - out.len());
        out.extend_from_slice(&buf[..take]);
        conn.consume(take);
    }
    Ok(out)
}

/// Bytes for humans: a quoted string with Rust-style escapes for anything unprintable,
/// shortened past [`MAX_TRANSCRIPT_LINE`] characters.
fn quote(b: &[u8]) -> String {
    format!("\"{}\"", printable(b))
}

fn printable(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut out = String::new();
    for (count, c) in s.chars().enumerate() {
        if count >= MAX_TRANSCRIPT_LINE {
            out.push('…');
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.push(c),
        }
    }
    out
}

/// The bounded transcript.
struct Transcript<'a>(&'a mut Vec<String>);

impl Transcript<'_> {
    fn push(&mut self, dir: &str, line: &[u8]) {
        self.push_note(&format!("{dir}{}", printable(line)));
    }

    fn push_note(&mut self, note: &str) {
        if self.0.len() < MAX_TRANSCRIPT {
            self.0.push(note.to_string());
        } else if self.0.len() == MAX_TRANSCRIPT {
            self.0.push("(transcript truncated)".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_over(bytes: &'static [u8]) -> Conn {
        BufReader::new(Box::new(tokio_test_io(bytes)))
    }

    /// A duplex whose far end wrote `bytes` and closed.
    fn tokio_test_io(bytes: &'static [u8]) -> tokio::io::DuplexStream {
        let (a, mut b) = tokio::io::duplex(256 * 1024);
        tokio::spawn(async move {
            let _ = b.write_all(bytes).await;
            let _ = b.shutdown().await;
            // Keep `b` alive until the bytes are read: dropping it is the EOF.
        });
        a
    }

    #[tokio::test]
    async fn lines_split_like_bufio_scanlines() {
        let mut c = conn_over(b"one\r\ntwo\n\nthree\r\r\nlast");
        let mut got = Vec::new();
        while let Ok(Some(l)) = read_line(&mut c).await {
            got.push(String::from_utf8(l).unwrap());
        }
        assert_eq!(got, vec!["one", "two", "", "three\r", "last"]);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_refused() {
        static BIG: [u8; MAX_LINE + 10] = [b'a'; MAX_LINE + 10];
        let mut c = conn_over(&BIG);
        assert!(matches!(read_line(&mut c).await, Err(ReadError::TooLong)));
    }

    #[tokio::test]
    async fn a_line_at_the_limit_is_accepted() {
        static BIG: [u8; MAX_LINE] = [b'a'; MAX_LINE];
        let mut c = conn_over(&BIG);
        assert_eq!(
            read_line(&mut c).await.ok().flatten().unwrap().len(),
            MAX_LINE
        );
    }

    #[test]
    fn quoting_escapes_and_shortens() {
        assert_eq!(quote(b"a\"b\\c\x01\t"), r#""a\"b\\c\u{1}\t""#);
        let long = vec![b'x'; MAX_TRANSCRIPT_LINE + 5];
        assert!(quote(&long).ends_with("…\""));
    }

    #[test]
    fn transcript_is_bounded() {
        let mut v = Vec::new();
        let mut t = Transcript(&mut v);
        for _ in 0..1000 {
            t.push("< ", b"x");
        }
        assert_eq!(v.len(), MAX_TRANSCRIPT + 1);
        assert_eq!(v.last().unwrap(), "(transcript truncated)");
    }
}
