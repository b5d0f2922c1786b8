//! The demo DNS server: zone `sonde.test` over UDP and TCP on one port, the records the
//! interop suite's dnsmasq serves for the same names (IPv4 only):
//! `web` A 127.0.0.1, `www` CNAME `web`, `mail` A 127.0.0.2, the apex MX 10 `mail` and TXT
//! "v=spf1 -all". Unknown names under the zone get NXDOMAIN, names outside it REFUSED.

use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const ORIGIN: &str = "sonde.test.";

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_default()
}

/// Every record of the zone.
fn zone() -> Vec<Record> {
    let rec = |n: &str, d: RData| Record::from_rdata(name(n), 60, d);
    vec![
        rec(
            ORIGIN,
            RData::SOA(SOA::new(
                name("ns.sonde.test."),
                name("hostmaster.sonde.test."),
                1,
                7200,
                3600,
                1_209_600,
                60,
            )),
        ),
        rec(ORIGIN, RData::MX(MX::new(10, name("mail.sonde.test.")))),
        rec(ORIGIN, RData::TXT(TXT::new(vec!["v=spf1 -all".into()]))),
        rec("web.sonde.test.", RData::A(A(Ipv4Addr::LOCALHOST))),
        rec("mail.sonde.test.", RData::A(A(Ipv4Addr::new(127, 0, 0, 2)))),
        rec(
            "www.sonde.test.",
            RData::CNAME(CNAME(name("web.sonde.test."))),
        ),
    ]
}

/// The reply to one query, encoded; `None` when the query cannot be parsed.
fn respond(raw: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(raw).ok()?;
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.add_queries(query.queries.iter().cloned());
    let records = zone();
    let soa: Vec<Record> = records.iter().take(1).cloned().collect();
    match query.queries.first() {
        None => reply.metadata.response_code = ResponseCode::FormErr,
        Some(q) if !name(ORIGIN).zone_of(q.name()) => {
            reply.metadata.response_code = ResponseCode::Refused
        }
        Some(q) => {
            let qname = q.name().to_lowercase();
            let of = |n: &Name, t: RecordType| -> Vec<Record> {
                records
                    .iter()
                    .filter(|r| &r.name == n && r.record_type() == t)
                    .cloned()
                    .collect()
            };
            if !records.iter().any(|r| r.name == qname) {
                reply.metadata.response_code = ResponseCode::NXDomain;
                reply.insert_authorities(soa);
            } else {
                let mut answers = of(&qname, q.query_type());
                if answers.is_empty() && q.query_type() != RecordType::CNAME {
                    let cname = of(&qname, RecordType::CNAME);
                    if let Some(RData::CNAME(t)) = cname.first().map(|r| &r.data) {
                        answers.extend(of(&t.0, q.query_type()));
                        answers.splice(0..0, cname);
                    }
                }
                if answers.is_empty() {
                    reply.insert_authorities(soa);
                }
                reply.insert_answers(answers);
            }
        }
    }
    reply.to_vec().ok()
}

/// UDP and TCP on the same address.
pub async fn bind(at: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(at).await?;
    let tcp = TcpListener::bind(udp.local_addr()?).await?;
    Ok((udp, tcp))
}

pub async fn serve_udp(udp: UdpSocket) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(b) = respond(&buf[..n]) {
            let _ = udp.send_to(&b, peer).await;
        }
    }
}

pub async fn serve_tcp(tcp: TcpListener) {
    loop {
        let Ok((stream, _)) = tcp.accept().await else {
            continue;
        };
        tokio::spawn(connection(stream));
    }
}

async fn connection(mut stream: TcpStream) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut msg).await.is_err() {
            return;
        }
        let Some(b) = respond(&msg) else { return };
        let mut framed = (b.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&b);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
