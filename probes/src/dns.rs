//! DNS probe: one query of name/type/class sent to a given server over UDP or TCP with
//! hickory-proto, the rcode and resource records checked as blackbox_exporter does.
//!
//! The query is the one blackbox sends (Go miekg/dns `Msg` with one question): a random id, the
//! RD flag as configured, and **no EDNS**. blackbox sets no OPT record, so a server answers it
//! within 512 bytes over UDP and puts no OPT pseudo-record in the additional section; sending
//! EDNS would change both the truncation point and what `validate_additional_rrs` regexes see.
//! A truncated UDP answer (TC bit) is reported and checked as received, as blackbox does
//! ([`DnsFacts::truncated`] says so); use TCP for the full answer.
//!
//! UDP uses a connected socket and ignores datagrams whose id is not the query's (as miekg's
//! client does), so a late answer to an earlier probe cannot be taken for this one. TCP frames
//! messages with the 2-byte length prefix of RFC 1035 §4.2.2.
//!
//! Phases are blackbox's `probe_dns_duration_seconds` ones: `resolve` (the server's name),
//! `connect` (socket set-up, TCP handshake), `request` (query sent until the answer is parsed).
//!
//! Records are checked in Go miekg/dns `RR.String()` text form ([`rr_to_string`]), e.g.
//! `example.com.\t300\tIN\tA\t192.0.2.1`, so regexes written for blackbox keep working.
//!
//! The checks run in blackbox's order — rcode, then answer, authority, additional — and stop at
//! the first failure. Per section ([`RrChecks`]), exactly as blackbox's `validRRs`:
//! - `fail_if_matches`: fail when any record matches any of the regexes;
//! - `fail_if_not_matches`: fail when some record does not match one of the regexes, or when the
//!   section is empty;
//! - `fail_if_none_matches`: fail when no record matches any of the regexes (an empty section
//!   fails too);
//! - `fail_if_all_match`: **despite its name, blackbox fails when some record does *not* match
//!   every one of these regexes** (it passes when all records match all of them, and on an
//!   empty section). blackbox's own test suite pins that behaviour ("Not all RRs matched
//!   regexp"), and the blackbox configurations in use were tuned against it, so sonde keeps it:
//!   a module moved from blackbox must give the same verdict.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

pub use hickory_proto::op::ResponseCode;
use hickory_proto::op::{Message, Query};
pub use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::rr::{Name, RData, Record};
use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::resolve::{connect_tcp, ResolveOptions, Resolver};
use crate::{fmt_duration, with_deadline, Failure, FailureReason, Outcome, Phase, Recorder};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

/// Regex checks over one section's records, each record in Go miekg/dns text form
/// (`name\tttl\tclass\ttype\trdata`) so blackbox regexes keep working. See the module docs for
/// the exact meaning of each list (`fail_if_all_match` is blackbox's, not its name's).
#[derive(Clone, Debug, Default)]
pub struct RrChecks {
    pub fail_if_matches: Vec<Regex>,
    pub fail_if_all_match: Vec<Regex>,
    pub fail_if_not_matches: Vec<Regex>,
    pub fail_if_none_matches: Vec<Regex>,
}

#[derive(Clone, Debug, Default)]
pub struct DnsChecks {
    /// Empty means NOERROR.
    pub valid_rcodes: Vec<ResponseCode>,
    pub answer: RrChecks,
    pub authority: RrChecks,
    pub additional: RrChecks,
}

#[derive(Clone, Debug)]
pub struct DnsRequest {
    /// The DNS server to ask: host name or IP, and port (53 by default).
    pub server: String,
    pub port: u16,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    pub query_name: String,
    pub query_type: RecordType,
    pub query_class: DNSClass,
    pub transport: DnsTransport,
    pub recursion_desired: bool,
    pub checks: DnsChecks,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DnsFacts {
    /// "NOERROR", "NXDOMAIN"… as miekg/dns names them.
    pub rcode: Option<String>,
    pub answer: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
    /// The SOA serial, when the answer holds one (the last one, as blackbox's loop keeps).
    pub serial: Option<u32>,
    /// A well-formed answer arrived (blackbox `probe_dns_query_succeeded`).
    pub query_succeeded: bool,
    /// The answer had the TC bit set (UDP only): it is reported as received, possibly incomplete.
    pub truncated: bool,
}

pub type DnsOutcome = Outcome<DnsFacts>;

/// Largest DNS message: a UDP datagram, or a TCP frame (16-bit length).
const MAX_MESSAGE: usize = 65_535;

/// Parse a query name the way blackbox does: IDNA names become punycode, and the name is made
/// fully qualified. Callers validate names with this at configuration load.
pub fn parse_query_name(name: &str) -> Result<Name, String> {
    let parsed = if name.is_ascii() {
        Name::from_ascii(name)
    } else {
        Name::from_utf8(name)
    };
    let mut n = parsed.map_err(|e| format!("{name:?} is not a valid DNS name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Run the probe under `deadline`.
pub async fn probe(req: &DnsRequest, deadline: Instant) -> DnsOutcome {
    let mut rec = Recorder::new();
    let mut facts = DnsFacts::default();
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        run(req, rec, &mut facts).await
    })
    .await;
    rec.finish(res.err(), facts)
}

async fn run(req: &DnsRequest, rec: &mut Recorder, facts: &mut DnsFacts) -> Result<(), Failure> {
    let name =
        parse_query_name(&req.query_name).map_err(|e| Failure::new(FailureReason::Protocol, e))?;
    let addrs = req.resolver.resolve(&req.server, req.ip, rec).await?;
    // blackbox asks one address of the server (the first of the preferred family).
    let ip = addrs[0];
    let target = SocketAddr::new(ip, req.port);

    // A random id (hickory draws it), as miekg's `dns.Id()`.
    let mut query = Message::query();
    query.metadata.recursion_desired = req.recursion_desired;
    let mut q = Query::query(name.clone(), req.query_type);
    q.set_query_class(req.query_class);
    query.add_query(q);
    let id = query.metadata.id;
    let wire = query.to_vec().map_err(|e| {
        Failure::new(
            FailureReason::Protocol,
            format!("cannot encode the query for {name}: {e}"),
        )
    })?;

    let (raw, sent_at) = match req.transport {
        DnsTransport::Udp => exchange_udp(target, &wire, id, rec).await?,
        DnsTransport::Tcp => exchange_tcp(ip, req.port, &wire, id, rec).await?,
    };
    let parsed = Message::from_vec(&raw);
    rec.timings.add_since(Phase::Request, sent_at);
    let reply = parsed.map_err(|e| {
        Failure::new(
            FailureReason::Protocol,
            format!(
                "malformed DNS answer from {target} ({} bytes): {e}",
                raw.len()
            ),
        )
    })?;
    facts.query_succeeded = true;
    let rcode = reply.metadata.response_code;
    facts.rcode = Some(rcode_name(rcode));
    facts.truncated = reply.metadata.truncation;
    facts.answer = reply.answers.iter().map(rr_to_string).collect();
    facts.authority = reply.authorities.iter().map(rr_to_string).collect();
    facts.additional = reply.additionals.iter().map(rr_to_string).collect();
    for r in &reply.answers {
        if let RData::SOA(soa) = &r.data {
            facts.serial = Some(soa.serial);
        }
    }
    rec.event(format!(
        "answer from {target} in {}: {}, {} answer, {} authority, {} additional record(s){}",
        fmt_duration(sent_at.elapsed()),
        rcode_name(rcode),
        facts.answer.len(),
        facts.authority.len(),
        facts.additional.len(),
        if facts.truncated {
            " — truncated (TC bit): checked as received; use TCP for the full answer"
        } else {
            ""
        }
    ));
    for (section, rrs) in [
        ("answer", &facts.answer),
        ("authority", &facts.authority),
        ("additional", &facts.additional),
    ] {
        for rr in rrs.iter().take(16) {
            rec.event(format!("{section}: {rr}"));
        }
        if rrs.len() > 16 {
            rec.event(format!("{section}: … {} more", rrs.len() - 16));
        }
    }

    check_rcode(rcode, &req.checks.valid_rcodes)?;
    check_section("answer", &facts.answer, &req.checks.answer)?;
    check_section("authority", &facts.authority, &req.checks.authority)?;
    check_section("additional", &facts.additional, &req.checks.additional)?;
    Ok(())
}

/// Send over a connected UDP socket; return the first datagram carrying our id, and when the
/// query was sent.
async fn exchange_udp(
    target: SocketAddr,
    wire: &[u8],
    id: u16,
    rec: &mut Recorder,
) -> Result<(Vec<u8>, Instant), Failure> {
    let started = Instant::now();
    rec.doing("opening the UDP socket");
    let bind: SocketAddr = match target.ip() {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let connect_err =
        |e: std::io::Error| Failure::new(FailureReason::Connect, format!("udp {target}: {e}"));
    let sock = UdpSocket::bind(bind).await.map_err(connect_err)?;
    sock.connect(target).await.map_err(connect_err)?;
    rec.timings.add_since(Phase::Connect, started);
    rec.remote_addr = Some(target);

    let sent_at = Instant::now();
    rec.doing("waiting for the DNS answer over UDP");
    sock.send(wire).await.map_err(connect_err)?;
    rec.event(format!("query sent to udp {target} (id {id})"));
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut ignored = 0usize;
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| {
            // A refused port shows up here, as the ICMP error of the datagram we sent.
            Failure::new(
                FailureReason::Connect,
                format!("no DNS server answering on udp {target}: {e}"),
            )
        })?;
        if n < 2 {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!("malformed DNS answer from {target}: {n} byte(s)"),
            ));
        }
        let got = u16::from_be_bytes([buf[0], buf[1]]);
        if got == id {
            return Ok((buf[..n].to_vec(), sent_at));
        }
        ignored += 1;
        if ignored <= 4 {
            rec.event(format!(
                "ignored a {n}-byte datagram with id {got} (the query's id is {id})"
            ));
        }
    }
}

/// Send over TCP with the 2-byte length prefix; return the first message carrying our id.
async fn exchange_tcp(
    ip: IpAddr,
    port: u16,
    wire: &[u8],
    id: u16,
    rec: &mut Recorder,
) -> Result<(Vec<u8>, Instant), Failure> {
    let mut stream = connect_tcp(&[ip], port, rec).await?;
    let target = SocketAddr::new(ip, port);
    let sent_at = Instant::now();
    rec.doing("waiting for the DNS answer over TCP");
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    framed.extend_from_slice(wire);
    stream.write_all(&framed).await.map_err(|e| {
        Failure::new(
            FailureReason::Protocol,
            format!("sending the query to tcp {target} failed: {e}"),
        )
    })?;
    rec.event(format!("query sent to tcp {target} (id {id})"));
    let closed = |e: std::io::Error| {
        Failure::new(
            FailureReason::Protocol,
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("tcp {target} closed the connection before a complete answer")
            } else {
                format!("reading the answer from tcp {target} failed: {e}")
            },
        )
    };
    let mut ignored = 0usize;
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(closed)?;
        let len = u16::from_be_bytes(len) as usize;
        let mut msg = vec![0u8; len];
        stream.read_exact(&mut msg).await.map_err(closed)?;
        if len < 2 {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!("malformed DNS answer from tcp {target}: {len} byte(s)"),
            ));
        }
        let got = u16::from_be_bytes([msg[0], msg[1]]);
        if got == id {
            return Ok((msg, sent_at));
        }
        ignored += 1;
        if ignored <= 4 {
            rec.event(format!(
                "ignored a {len}-byte message with id {got} (the query's id is {id})"
            ));
        }
    }
}

fn check_rcode(rcode: ResponseCode, valid: &[ResponseCode]) -> Result<(), Failure> {
    let ok = if valid.is_empty() {
        rcode == ResponseCode::NoError
    } else {
        valid.contains(&rcode)
    };
    if ok {
        return Ok(());
    }
    let expected = if valid.is_empty() {
        "NOERROR".to_string()
    } else if valid.len() == 1 {
        rcode_name(valid[0])
    } else {
        format!(
            "one of {}",
            valid
                .iter()
                .map(|c| rcode_name(*c))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(Failure::new(
        FailureReason::Status,
        format!("rcode {} — expected {expected}", rcode_name(rcode)),
    ))
}

/// blackbox's `validRRs`, with messages that name the section, the regex and the record.
fn check_section(section: &str, rrs: &[String], c: &RrChecks) -> Result<(), Failure> {
    let fail = |msg: String| Err(Failure::new(FailureReason::Assertion, msg));
    if rrs.is_empty() {
        if let Some(re) = c.fail_if_not_matches.first() {
            return fail(format!(
                "no {section} records, but fail_if_not_matches_regexp /{re}/ needs some"
            ));
        }
        if !c.fail_if_none_matches.is_empty() {
            return fail(format!(
                "no {section} records, but fail_if_none_matches_regexp {} needs one to match",
                list(&c.fail_if_none_matches)
            ));
        }
    }
    let mut any_match = false;
    let mut not_all: Option<(&Regex, &String)> = None;
    for rr in rrs {
        if let Some(re) = c.fail_if_matches.iter().find(|re| re.is_match(rr)) {
            return fail(format!(
                "{section} record matches fail_if_matches_regexp /{re}/: {rr}"
            ));
        }
        if not_all.is_none() {
            if let Some(re) = c.fail_if_all_match.iter().find(|re| !re.is_match(rr)) {
                not_all = Some((re, rr));
            }
        }
        if let Some(re) = c.fail_if_not_matches.iter().find(|re| !re.is_match(rr)) {
            return fail(format!(
                "{section} record does not match fail_if_not_matches_regexp /{re}/: {rr}"
            ));
        }
        if c.fail_if_none_matches.iter().any(|re| re.is_match(rr)) {
            any_match = true;
        }
    }
    if let Some((re, rr)) = not_all {
        return fail(format!(
            "not every {section} record matches fail_if_all_match_regexp /{re}/ (blackbox \
             fails this check unless all records match): {rr}"
        ));
    }
    if !c.fail_if_none_matches.is_empty() && !any_match {
        return fail(format!(
            "none of the {} {section} record(s) matches fail_if_none_matches_regexp {}",
            rrs.len(),
            list(&c.fail_if_none_matches)
        ));
    }
    Ok(())
}

fn list(res: &[Regex]) -> String {
    res.iter()
        .map(|r| format!("/{r}/"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// miekg/dns's rcode names (`RcodeToString`, what blackbox logs and users write in
/// `valid_rcodes`) with their codes: the one table every `valid_rcodes` compiler and every
/// report uses. `BADVERS` is 16, like `BADSIG`; it comes last so a code's name is the first
/// entry with it.
pub const RCODES: [(&str, u16); 20] = [
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("YXDOMAIN", 6),
    ("YXRRSET", 7),
    ("NXRRSET", 8),
    ("NOTAUTH", 9),
    ("NOTZONE", 10),
    ("BADSIG", 16),
    ("BADKEY", 17),
    ("BADTIME", 18),
    ("BADMODE", 19),
    ("BADNAME", 20),
    ("BADALG", 21),
    ("BADTRUNC", 22),
    ("BADCOOKIE", 23),
    ("BADVERS", 16),
];

/// The rcode as miekg/dns's `RcodeToString` names it; `RCODE<n>` for codes it does not know.
pub fn rcode_name(rcode: ResponseCode) -> String {
    let n = u16::from(rcode);
    match RCODES.iter().find(|(_, c)| *c == n) {
        Some((name, _)) => name.to_string(),
        None => format!("RCODE{n}"),
    }
}

/// The rcode for a miekg/dns name (`valid_rcodes` values), case-insensitive.
pub fn rcode_from_name(name: &str) -> Option<ResponseCode> {
    let (_, n) = RCODES.iter().find(|(s, _)| s.eq_ignore_ascii_case(name))?;
    Some(<ResponseCode as From<u16>>::from(*n))
}

/// A record in Go miekg/dns `RR.String()` form: `name.\tTTL\tCLASS\tTYPE\tRDATA`.
///
/// RDATA follows miekg for A, AAAA, NS, CNAME, PTR, MX, SOA, TXT, SRV, CAA, HINFO, NAPTR, SSHFP,
/// TLSA and types hickory does not know (RFC 3597 `\# len hex`); other types use hickory's
/// presentation form, which may differ in detail from miekg's.
pub fn rr_to_string(r: &Record) -> String {
    let mut s = String::new();
    let rtype = r.record_type();
    let _ = write!(
        s,
        "{}\t{}\t{}\t{}\t",
        name_to_string(&r.name),
        r.ttl,
        class_name(r.dns_class),
        type_name(rtype)
    );
    let _ = match &r.data {
        RData::A(a) => write!(s, "{}", a.0),
        RData::AAAA(a) => write!(s, "{}", a.0),
        RData::NS(n) => write!(s, "{}", name_to_string(&n.0)),
        RData::CNAME(n) => write!(s, "{}", name_to_string(&n.0)),
        RData::PTR(n) => write!(s, "{}", name_to_string(&n.0)),
        RData::MX(mx) => write!(s, "{} {}", mx.preference, name_to_string(&mx.exchange)),
        RData::SOA(soa) => write!(
            s,
            "{} {} {} {} {} {} {}",
            name_to_string(&soa.mname),
            name_to_string(&soa.rname),
            soa.serial,
            soa.refresh as u32,
            soa.retry as u32,
            soa.expire as u32,
            soa.minimum
        ),
        RData::TXT(txt) => {
            let parts: Vec<String> = txt.txt_data.iter().map(|t| quote_txt(t)).collect();
            write!(s, "{}", parts.join(" "))
        }
        RData::SRV(srv) => write!(
            s,
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name_to_string(&srv.target)
        ),
        RData::CAA(caa) => write!(s, "{} {} {}", caa.flags(), caa.tag, quote_txt(&caa.value)),
        RData::HINFO(h) => write!(s, "{} {}", quote_txt(&h.cpu), quote_txt(&h.os)),
        RData::NAPTR(n) => write!(
            s,
            "{} {} {} {} {} {}",
            n.order,
            n.preference,
            quote_txt(&n.flags),
            quote_txt(&n.services),
            quote_txt(&n.regexp),
            name_to_string(&n.replacement)
        ),
        RData::SSHFP(f) => write!(
            s,
            "{} {} {}",
            u8::from(f.algorithm),
            u8::from(f.fingerprint_type),
            hex(&f.fingerprint).to_uppercase()
        ),
        RData::TLSA(t) => write!(
            s,
            "{} {} {} {}",
            u8::from(t.cert_usage),
            u8::from(t.selector),
            u8::from(t.matching),
            hex(&t.cert_data)
        ),
        RData::Unknown { rdata, .. } => {
            write!(s, "\\# {} {}", rdata.anything.len(), hex(&rdata.anything))
        }
        other => write!(s, "{other}"),
    };
    s
}

/// miekg's `sprintName`: labels joined by dots, a trailing dot, `.` for the root; label bytes
/// that are special in zone files backslash-escaped, unprintable ones as `\DDD` (decimal).
pub fn name_to_string(n: &Name) -> String {
    if n.is_root() || n.num_labels() == 0 {
        return ".".into();
    }
    let mut out = String::new();
    for label in n.iter() {
        for &b in label {
            match b {
                b'.' | b' ' | b'\'' | b'@' | b';' | b'(' | b')' | b'"' | b'\\' => {
                    out.push('\\');
                    out.push(b as char);
                }
                b if !(b' '..=b'~').contains(&b) => {
                    let _ = write!(out, "\\{b:03}");
                }
                b => out.push(b as char),
            }
        }
        out.push('.');
    }
    out
}

/// miekg's `sprintTxt` for one character-string: quoted, `"` and `\` escaped, unprintable bytes
/// as `\DDD`.
fn quote_txt(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    for &c in b {
        match c {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            c if !(b' '..=b'~').contains(&c) => {
                let _ = write!(out, "\\{c:03}");
            }
            c => out.push(c as char),
        }
    }
    out.push('"');
    out
}

fn class_name(c: DNSClass) -> String {
    match u16::from(c) {
        1 => "IN".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        n => format!("CLASS{n}"),
    }
}

fn type_name(t: RecordType) -> String {
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, SRV, TXT};

    fn rec(name: &str, ttl: u32, data: RData) -> Record {
        Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, data)
    }

    #[test]
    fn miekg_text_form() {
        let cases = [
            (
                rec("example.com.", 300, RData::A(A::new(192, 0, 2, 1))),
                "example.com.\t300\tIN\tA\t192.0.2.1",
            ),
            (
                rec("example.com.", 60, RData::AAAA(AAAA("2001:db8::1".parse().unwrap()))),
                "example.com.\t60\tIN\tAAAA\t2001:db8::1",
            ),
            (
                rec(
                    "example.com.",
                    3600,
                    RData::MX(MX::new(10, Name::from_ascii("mail.example.com.").unwrap())),
                ),
                "example.com.\t3600\tIN\tMX\t10 mail.example.com.",
            ),
            (
                rec(
                    "example.com.",
                    3600,
                    RData::SOA(SOA::new(
                        Name::from_ascii("ns.example.com.").unwrap(),
                        Name::from_ascii("noc.example.com.").unwrap(),
                        1000,
                        7200,
                        3600,
                        1209600,
                        3600,
                    )),
                ),
                "example.com.\t3600\tIN\tSOA\tns.example.com. noc.example.com. 1000 7200 3600 1209600 3600",
            ),
            (
                rec(
                    "example.com.",
                    300,
                    RData::TXT(TXT::new(vec!["v=spf1 -all".into(), "say \"hi\"\\".into()])),
                ),
                "example.com.\t300\tIN\tTXT\t\"v=spf1 -all\" \"say \\\"hi\\\"\\\\\"",
            ),
            (
                rec(
                    "www.example.com.",
                    300,
                    RData::CNAME(CNAME(Name::from_ascii("example.com.").unwrap())),
                ),
                "www.example.com.\t300\tIN\tCNAME\texample.com.",
            ),
            (
                rec(
                    "example.com.",
                    7200,
                    RData::NS(NS(Name::from_ascii("ns1.isp.net.").unwrap())),
                ),
                "example.com.\t7200\tIN\tNS\tns1.isp.net.",
            ),
            (
                rec(
                    "_sip._tcp.example.com.",
                    300,
                    RData::SRV(SRV::new(1, 2, 5060, Name::from_ascii("sip.example.com.").unwrap())),
                ),
                "_sip._tcp.example.com.\t300\tIN\tSRV\t1 2 5060 sip.example.com.",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(rr_to_string(&r), want);
        }
    }

    #[test]
    fn chaos_class_and_unknown_types() {
        let mut r = rec(
            "example.com.",
            3600,
            RData::TXT(TXT::new(vec!["goCHAOS".into()])),
        );
        r.dns_class = DNSClass::CH;
        assert_eq!(rr_to_string(&r), "example.com.\t3600\tCH\tTXT\t\"goCHAOS\"");
        let u = rec(
            "example.com.",
            1,
            RData::Unknown {
                code: RecordType::Unknown(65280),
                rdata: hickory_proto::rr::rdata::NULL::with(vec![0xde, 0xad]),
            },
        );
        assert_eq!(
            rr_to_string(&u),
            "example.com.\t1\tIN\tTYPE65280\t\\# 2 dead"
        );
    }

    #[test]
    fn names_escape_like_miekg() {
        assert_eq!(name_to_string(&Name::root()), ".");
        let n = Name::from_labels(vec![&b"a b"[..], &b"x\x01"[..], &b"com"[..]]).unwrap();
        assert_eq!(name_to_string(&n), "a\\ b.x\\001.com.");
    }

    #[test]
    fn idna_query_names_become_punycode() {
        let n = parse_query_name("bücher.example").unwrap();
        assert_eq!(name_to_string(&n), "xn--bcher-kva.example.");
        let n = parse_query_name("_sip._tcp.example.com").unwrap();
        assert_eq!(name_to_string(&n), "_sip._tcp.example.com.");
        assert!(parse_query_name("a..b").is_err());
    }

    #[test]
    fn rcode_names_round_trip() {
        for n in [
            "NOERROR",
            "FORMERR",
            "SERVFAIL",
            "NXDOMAIN",
            "NOTIMP",
            "REFUSED",
            "BADCOOKIE",
        ] {
            assert_eq!(rcode_name(rcode_from_name(n).unwrap()), n);
        }
        assert_eq!(rcode_from_name("nxdomain"), Some(ResponseCode::NXDomain));
        assert_eq!(rcode_from_name("NOPE"), None);
        assert_eq!(
            rcode_name(<ResponseCode as From<u16>>::from(3000)),
            "RCODE3000"
        );
    }

    #[test]
    fn every_rcode_name_reads_as_replies_carry_it() {
        for (name, n) in RCODES {
            let code = rcode_from_name(name).unwrap();
            // What a reply with this code parses to: `valid_rcodes` must compare equal to it.
            assert_eq!(code, <ResponseCode as From<u16>>::from(n), "{name}");
        }
        // BADVERS and BADSIG share 16; replies name it BADSIG, as miekg does.
        assert_eq!(rcode_name(rcode_from_name("BADVERS").unwrap()), "BADSIG");
    }

    fn re(s: &str) -> Regex {
        Regex::new(s).unwrap()
    }

    #[test]
    fn rcode_check_messages() {
        let f = check_rcode(ResponseCode::NXDomain, &[]).unwrap_err();
        assert_eq!(f.reason, FailureReason::Status);
        assert_eq!(f.message, "rcode NXDOMAIN — expected NOERROR");
        let f = check_rcode(
            ResponseCode::NoError,
            &[ResponseCode::ServFail, ResponseCode::NXDomain],
        )
        .unwrap_err();
        assert_eq!(
            f.message,
            "rcode NOERROR — expected one of SERVFAIL, NXDOMAIN"
        );
        assert!(check_rcode(ResponseCode::ServFail, &[ResponseCode::ServFail]).is_ok());
    }

    /// The additional section of blackbox's own `authoritativeDNSHandler` test fixture, with the
    /// verdicts blackbox's test expects.
    #[test]
    fn section_checks_match_blackbox_verdicts() {
        let extra: Vec<String> = [
            "ns1.isp.net.\t7200\tIN\tA\t127.0.0.1",
            "ns1.isp.net.\t7200\tIN\tAAAA\t::1",
            "ns2.isp.net.\t7200\tIN\tA\t127.0.0.2",
        ]
        .map(String::from)
        .to_vec();
        let ok = |c: RrChecks| check_section("additional", &extra, &c);
        assert!(ok(RrChecks {
            fail_if_not_matches: vec![re("^ns.*.isp")],
            ..Default::default()
        })
        .is_ok());
        let f = ok(RrChecks {
            fail_if_matches: vec![re("^ns.*.isp")],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(f.reason, FailureReason::Assertion);
        assert!(f.message.contains("additional record matches fail_if_matches_regexp /^ns.*.isp/: ns1.isp.net.\t7200\tIN\tA\t127.0.0.1"), "{}", f.message);
        let f = ok(RrChecks {
            fail_if_all_match: vec![re(".*127.0.0.*")],
            ..Default::default()
        })
        .unwrap_err();
        assert!(f.message.contains("::1"), "{}", f.message);
        assert!(ok(RrChecks {
            fail_if_all_match: vec![re("isp")],
            ..Default::default()
        })
        .is_ok());
        let f = ok(RrChecks {
            fail_if_none_matches: vec![re(".*127.0.0.3.*")],
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            f.message.contains("none of the 3 additional record(s)"),
            "{}",
            f.message
        );
        assert!(ok(RrChecks {
            fail_if_none_matches: vec![re("nope"), re("127.0.0.2")],
            ..Default::default()
        })
        .is_ok());
        let f = ok(RrChecks {
            fail_if_not_matches: vec![re("\tA\t")],
            ..Default::default()
        })
        .unwrap_err();
        assert!(f.message.contains("does not match fail_if_not_matches_regexp /\tA\t/: ns1.isp.net.\t7200\tIN\tAAAA\t::1"), "{}", f.message);
    }

    #[test]
    fn empty_sections() {
        let none: Vec<String> = vec![];
        let f = check_section(
            "answer",
            &none,
            &RrChecks {
                fail_if_not_matches: vec![re(".*3600.*")],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(f.message.contains("no answer records"), "{}", f.message);
        assert!(check_section(
            "answer",
            &none,
            &RrChecks {
                fail_if_none_matches: vec![re("x")],
                ..Default::default()
            },
        )
        .is_err());
        // blackbox: vacuously true.
        assert!(check_section(
            "answer",
            &none,
            &RrChecks {
                fail_if_all_match: vec![re("x")],
                fail_if_matches: vec![re("x")],
                ..Default::default()
            },
        )
        .is_ok());
    }
}
