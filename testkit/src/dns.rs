//! An in-process authoritative DNS server for tests: UDP and TCP on the same loopback port,
//! serving one zone given as a small table, built with hickory-proto.
//!
//! Besides the zone's own answers (with the zone's NS records in the authority section and
//! their in-zone addresses as glue in the additional section, as an authoritative server sends
//! them), a few names under the zone misbehave on purpose:
//!
//! | name (under the origin) | behaviour |
//! |---|---|
//! | [`SERVFAIL`] | rcode SERVFAIL, no records |
//! | [`SILENT`] | never answered (the query is still counted) |
//! | [`MALFORMED`] | a reply with the right id whose body cannot be parsed |
//! | [`WRONG_ID`] | first a valid reply with another id (A 127.0.0.99), then the real one |
//!
//! Unknown names under the origin get NXDOMAIN with the SOA in the authority section, known
//! names without records of the asked type get an empty NOERROR (NODATA) with the SOA, names
//! outside the zone get REFUSED. A query without EDNS is answered over UDP within 512 bytes
//! (more: an empty reply with the TC bit, as real servers do), with EDNS within its stated size.
//!
//! ```no_run
//! # async fn demo() {
//! use sonde_testkit::dns::{DnsServer, Zone};
//! let server = DnsServer::start(Zone::example()).await;
//! let addr = server.addr(); // 127.0.0.1:PORT, UDP and TCP
//! # }
//! ```

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// Answers SERVFAIL.
pub const SERVFAIL: &str = "servfail";
/// Never answered.
pub const SILENT: &str = "silent";
/// Answered with an unparsable message carrying the right id.
pub const MALFORMED: &str = "malformed";
/// Answered first with a wrong id (A 127.0.0.99), then correctly from the zone.
pub const WRONG_ID: &str = "wrongid";

/// UDP answer size without EDNS (RFC 1035 §4.2.1).
const CLASSIC_UDP: usize = 512;

/// A zone: an origin and its records.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    ttl: u32,
    records: Vec<Record>,
}

impl Zone {
    /// An empty zone for `origin` ("sonde.test"; made fully qualified). Add an SOA and NS records
    /// for answers to carry authority data.
    pub fn new(origin: &str) -> Zone {
        let mut origin = Name::from_ascii(origin).expect("zone origin");
        origin.set_fqdn(true);
        Zone {
            origin,
            ttl: 300,
            records: Vec::new(),
        }
    }

    /// The zone most tests use, origin `sonde.test.` (a reserved name, RFC 2606):
    ///
    /// ```text
    /// sonde.test.        3600 SOA   ns1.sonde.test. hostmaster.sonde.test. 2024010101 7200 3600 1209600 300
    /// sonde.test.        3600 NS    ns1.sonde.test.
    /// sonde.test.        3600 NS    ns2.sonde.test.
    /// ns1.sonde.test.    3600 A     127.0.0.53
    /// ns1.sonde.test.    3600 AAAA  ::1
    /// ns2.sonde.test.    3600 A     127.0.0.54
    /// sonde.test.         300 A     127.0.0.1
    /// sonde.test.         300 MX    10 mail.sonde.test.
    /// sonde.test.         300 TXT   "v=spf1 -all"
    /// sonde.test.         300 TXT   "hello" "world"
    /// mail.sonde.test.    300 A     127.0.0.1
    /// www.sonde.test.     300 CNAME sonde.test.
    /// dual.sonde.test.    300 A     127.0.0.1
    /// dual.sonde.test.    300 AAAA  ::1
    /// v4.sonde.test.      300 A     127.0.0.1
    /// v6.sonde.test.      300 AAAA  ::1
    /// multi.sonde.test.   300 A     127.0.0.1, 127.0.0.2
    /// multi.sonde.test.   300 AAAA  ::1
    /// wrongid.sonde.test. 300 A     127.0.0.1
    /// big.sonde.test.     300 TXT   30 strings of 40 bytes (over 512 bytes: truncated over UDP)
    /// ```
    pub fn example() -> Zone {
        let mut z = Zone::new("sonde.test.");
        z.ttl = 3600;
        z = z
            .soa("ns1", "hostmaster", 2024010101)
            .ns("@", "ns1")
            .ns("@", "ns2")
            .a("ns1", "127.0.0.53")
            .aaaa("ns1", "::1")
            .a("ns2", "127.0.0.54")
            .with_ttl(300)
            .a("@", "127.0.0.1")
            .mx("@", 10, "mail")
            .txt("@", &["v=spf1 -all"])
            .txt("@", &["hello", "world"])
            .a("mail", "127.0.0.1")
            .cname("www", "@")
            .a("dual", "127.0.0.1")
            .aaaa("dual", "::1")
            .a("v4", "127.0.0.1")
            .aaaa("v6", "::1")
            .a("multi", "127.0.0.1")
            .a("multi", "127.0.0.2")
            .aaaa("multi", "::1")
            .a(WRONG_ID, "127.0.0.1");
        for i in 0..30 {
            z = z.txt("big", &[&format!("{i:02}-{}", "x".repeat(37))]);
        }
        z
    }

    /// The origin, fully qualified ("sonde.test.").
    pub fn origin(&self) -> String {
        self.origin.to_ascii()
    }

    /// `name` under the origin, fully qualified, as a string ("www" → "www.sonde.test.").
    pub fn fqdn(&self, name: &str) -> String {
        self.name(name).to_ascii()
    }

    /// TTL of the records added after this call.
    pub fn with_ttl(mut self, ttl: u32) -> Zone {
        self.ttl = ttl;
        self
    }

    /// `@` is the origin, a name ending in `.` is absolute, anything else is under the origin.
    fn name(&self, name: &str) -> Name {
        if name == "@" {
            return self.origin.clone();
        }
        let n = Name::from_ascii(name).expect("record name");
        if name.ends_with('.') {
            n
        } else {
            n.append_domain(&self.origin).expect("record name")
        }
    }

    /// Add any record.
    pub fn record(mut self, name: &str, rdata: RData) -> Zone {
        let r = Record::from_rdata(self.name(name), self.ttl, rdata);
        self.records.push(r);
        self
    }

    pub fn a(self, name: &str, ip: &str) -> Zone {
        let ip: Ipv4Addr = ip.parse().expect("IPv4 address");
        self.record(name, RData::A(A(ip)))
    }

    pub fn aaaa(self, name: &str, ip: &str) -> Zone {
        let ip: Ipv6Addr = ip.parse().expect("IPv6 address");
        self.record(name, RData::AAAA(AAAA(ip)))
    }

    pub fn mx(self, name: &str, preference: u16, exchange: &str) -> Zone {
        let ex = self.name(exchange);
        self.record(name, RData::MX(MX::new(preference, ex)))
    }

    /// One TXT record of these character-strings.
    pub fn txt(self, name: &str, strings: &[&str]) -> Zone {
        let s = strings.iter().map(|s| s.to_string()).collect();
        self.record(name, RData::TXT(TXT::new(s)))
    }

    pub fn cname(self, name: &str, target: &str) -> Zone {
        let t = self.name(target);
        self.record(name, RData::CNAME(CNAME(t)))
    }

    pub fn ns(self, name: &str, target: &str) -> Zone {
        let t = self.name(target);
        self.record(name, RData::NS(NS(t)))
    }

    /// The zone's SOA (refresh 7200, retry 3600, expire 1209600, minimum 300).
    pub fn soa(self, mname: &str, rname: &str, serial: u32) -> Zone {
        let m = self.name(mname);
        let r = self.name(rname);
        self.record(
            "@",
            RData::SOA(SOA::new(m, r, serial, 7200, 3600, 1_209_600, 300)),
        )
    }

    fn special(&self, qname: &Name) -> Option<&'static str> {
        [SERVFAIL, SILENT, MALFORMED, WRONG_ID]
            .into_iter()
            .find(|s| self.name(s) == *qname)
    }

    fn of(&self, name: &Name) -> impl Iterator<Item = &Record> {
        let name = name.clone();
        self.records.iter().filter(move |r| r.name == name)
    }

    fn of_type(&self, name: &Name, t: RecordType) -> Vec<Record> {
        self.of(name)
            .filter(|r| t == RecordType::ANY || r.record_type() == t)
            .cloned()
            .collect()
    }

    fn soa_record(&self) -> Vec<Record> {
        self.of_type(&self.origin, RecordType::SOA)
    }

    /// The answer to `query` from the zone alone (special names aside).
    fn answer(&self, query: &Message) -> Message {
        let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.add_queries(query.queries.iter().cloned());
        let Some(q) = query.queries.first() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        let qname = q.name().clone();
        let qtype = q.query_type();
        if !self.origin.zone_of(&qname) {
            reply.metadata.response_code = ResponseCode::Refused;
            return reply;
        }
        if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
            reply.metadata.response_code = ResponseCode::Refused;
            return reply;
        }
        if self.of(&qname).next().is_none() {
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.insert_authorities(self.soa_record());
            return reply;
        }
        let mut answers = self.of_type(&qname, qtype);
        if answers.is_empty() && qtype != RecordType::CNAME {
            // Follow a CNAME inside the zone (one level is all the example needs; loops stop).
            let cnames = self.of_type(&qname, RecordType::CNAME);
            if let Some(RData::CNAME(target)) = cnames.first().map(|r| &r.data) {
                answers.extend(cnames.iter().cloned());
                answers.extend(self.of_type(&target.0, qtype));
            }
        }
        if answers.is_empty() {
            reply.insert_authorities(self.soa_record());
            return reply;
        }
        reply.insert_answers(answers);
        let ns = self.of_type(&self.origin, RecordType::NS);
        let mut glue = Vec::new();
        for r in &ns {
            if let RData::NS(target) = &r.data {
                glue.extend(self.of_type(&target.0, RecordType::A));
                glue.extend(self.of_type(&target.0, RecordType::AAAA));
            }
        }
        if qtype != RecordType::NS {
            reply.insert_authorities(ns);
        }
        reply.insert_additionals(glue);
        reply
    }
}

/// What the server sends back for one query.
enum Response {
    Silence,
    One(Vec<u8>),
    /// Datagrams/messages sent in order (the wrong-id case).
    Many(Vec<Vec<u8>>),
}

fn respond(zone: &Zone, raw: &[u8], udp: bool) -> Response {
    let Ok(query) = Message::from_vec(raw) else {
        // Not even a query: say FORMERR when there is an id to answer to.
        if raw.len() < 2 {
            return Response::Silence;
        }
        let reply = Message::error_msg(
            u16::from_be_bytes([raw[0], raw[1]]),
            OpCode::Query,
            ResponseCode::FormErr,
        );
        return Response::One(reply.to_vec().unwrap_or_default());
    };
    let id = query.metadata.id;
    let special = query.queries.first().and_then(|q| zone.special(q.name()));
    let encode = |mut reply: Message| -> Vec<u8> {
        let limit = match &query.edns {
            Some(e) => {
                let mut edns = Edns::new();
                edns.set_max_payload(e.max_payload().max(CLASSIC_UDP as u16));
                reply.set_edns(edns);
                e.max_payload().max(CLASSIC_UDP as u16) as usize
            }
            None => CLASSIC_UDP,
        };
        let bytes = reply.to_vec().expect("encode reply");
        if udp && bytes.len() > limit {
            reply.truncate().to_vec().expect("encode truncated reply")
        } else {
            bytes
        }
    };
    match special {
        Some(SILENT) => Response::Silence,
        Some(SERVFAIL) => {
            let mut reply = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
            reply.add_queries(query.queries.iter().cloned());
            Response::One(encode(reply))
        }
        Some(MALFORMED) => {
            // A header announcing one answer record, followed by half a record.
            let mut b = id.to_be_bytes().to_vec();
            b.extend_from_slice(&[0x84, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c, 0x00]);
            Response::One(b)
        }
        Some(WRONG_ID) => {
            let mut decoy = zone.answer(&query);
            decoy.metadata.id = id.wrapping_add(1);
            decoy.answers = vec![Record::from_rdata(
                query.queries[0].name().clone(),
                300,
                RData::A(A(Ipv4Addr::new(127, 0, 0, 99))),
            )];
            Response::Many(vec![encode(decoy), encode(zone.answer(&query))])
        }
        _ => Response::One(encode(zone.answer(&query))),
    }
}

/// Aborts the server's tasks (and every connection they own) on drop.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One query as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenQuery {
    /// Fully qualified, as sent ("sonde.test.").
    pub name: String,
    pub query_type: RecordType,
    pub query_class: DNSClass,
    pub recursion_desired: bool,
    /// The query carried an EDNS OPT record.
    pub edns: bool,
    pub tcp: bool,
}

/// How many queries [`DnsServer::seen`] remembers; older ones are dropped.
const MAX_SEEN: usize = 1024;

#[derive(Default)]
struct Log {
    count: AtomicUsize,
    seen: Mutex<Vec<SeenQuery>>,
}

impl Log {
    fn record(&self, raw: &[u8], tcp: bool) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let Ok(m) = Message::from_vec(raw) else {
            return;
        };
        let Some(q) = m.queries.first() else {
            return;
        };
        let mut seen = self.seen.lock().unwrap();
        if seen.len() >= MAX_SEEN {
            seen.remove(0);
        }
        seen.push(SeenQuery {
            name: q.name().to_ascii(),
            query_type: q.query_type(),
            query_class: q.query_class(),
            recursion_desired: m.metadata.recursion_desired,
            edns: m.edns.is_some(),
            tcp,
        });
    }
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    log: Arc<Log>,
    _tasks: AbortOnDrop,
}

impl DnsServer {
    /// Serve `zone` on 127.0.0.1, UDP and TCP on the same port.
    pub async fn start(zone: Zone) -> DnsServer {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), zone)
            .await
            .expect("start the DNS fixture on 127.0.0.1")
    }

    /// Serve `zone` on `ip` (a loopback address), UDP and TCP on the same port.
    pub async fn start_on(ip: IpAddr, zone: Zone) -> io::Result<DnsServer> {
        assert!(ip.is_loopback(), "fixtures listen on loopback only");
        // The UDP port the OS picks may be taken for TCP; try a few.
        let mut last_err = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => return Ok(Self::serve(addr, udp, tcp, zone)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
    }

    fn serve(addr: SocketAddr, udp: UdpSocket, tcp: TcpListener, zone: Zone) -> DnsServer {
        let zone = Arc::new(zone);
        let log = Arc::new(Log::default());
        let udp_task = {
            let (zone, log) = (zone.clone(), log.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    log.record(&buf[..n], false);
                    match respond(&zone, &buf[..n], true) {
                        Response::Silence => {}
                        Response::One(b) => {
                            let _ = udp.send_to(&b, peer).await;
                        }
                        Response::Many(all) => {
                            for b in all {
                                let _ = udp.send_to(&b, peer).await;
                            }
                        }
                    }
                }
            })
        };
        let tcp_task = {
            let (zone, log) = (zone.clone(), log.clone());
            tokio::spawn(async move {
                let mut conns = JoinSet::new();
                loop {
                    let Ok((stream, _)) = tcp.accept().await else {
                        continue;
                    };
                    let (zone, log) = (zone.clone(), log.clone());
                    conns.spawn(serve_tcp(stream, zone, log));
                    // Reap finished connections so the set does not grow.
                    while conns.try_join_next().is_some() {}
                }
            })
        };
        DnsServer {
            addr,
            log,
            _tasks: AbortOnDrop(vec![udp_task, tcp_task]),
        }
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received so far, over both transports (answered or not).
    pub fn queries(&self) -> usize {
        self.log.count.load(Ordering::SeqCst)
    }

    /// The parsable queries received so far, oldest first (the last 1024).
    pub fn seen(&self) -> Vec<SeenQuery> {
        self.log.seen.lock().unwrap().clone()
    }
}

async fn serve_tcp(mut stream: TcpStream, zone: Arc<Zone>, log: Arc<Log>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut msg).await.is_err() {
            return;
        }
        log.record(&msg, true);
        let out = match respond(&zone, &msg, false) {
            Response::Silence => continue,
            Response::One(b) => vec![b],
            Response::Many(all) => all,
        };
        for b in out {
            let mut framed = (b.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&b);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
    }
}

/// A random 16-bit value (no `rand` dependency needed for one id).
pub fn random_id() -> u16 {
    (RandomState::new().hash_one(std::time::SystemTime::now()) & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn query(zone: &Zone, name: &str, t: RecordType) -> Message {
        let mut m = Message::new(random_id(), MessageType::Query, OpCode::Query);
        m.add_query(Query::query(zone.name(name), t));
        m
    }

    fn answer(zone: &Zone, q: &Message, udp: bool) -> Message {
        match respond(zone, &q.to_vec().unwrap(), udp) {
            Response::One(b) => Message::from_vec(&b).unwrap(),
            _ => panic!("expected one reply"),
        }
    }

    #[test]
    fn answers_with_authority_and_glue() {
        let z = Zone::example();
        let r = answer(&z, &query(&z, "dual", RecordType::A), true);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.authorities.len(), 2);
        assert_eq!(r.additionals.len(), 3);
    }

    #[test]
    fn nxdomain_nodata_refused_cname() {
        let z = Zone::example();
        let r = answer(&z, &query(&z, "nope", RecordType::A), true);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
        let r = answer(&z, &query(&z, "v4", RecordType::AAAA), true);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        let r = answer(&z, &query(&z, "other.invalid.", RecordType::A), true);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        let r = answer(&z, &query(&z, "www", RecordType::A), true);
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    }

    #[test]
    fn big_answers_truncate_over_udp_only() {
        let z = Zone::example();
        let r = answer(&z, &query(&z, "big", RecordType::TXT), true);
        assert!(r.metadata.truncation);
        assert!(r.answers.is_empty());
        let r = answer(&z, &query(&z, "big", RecordType::TXT), false);
        assert!(!r.metadata.truncation);
        assert_eq!(r.answers.len(), 30);
    }
}
