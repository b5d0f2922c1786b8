//! The dns probe against the in-process authoritative DNS fixture, over UDP and TCP.

use std::time::Duration;

use regex::Regex;
use sonde_probes::dns::{
    probe, DNSClass, DnsChecks, DnsOutcome, DnsRequest, DnsTransport, RecordType, ResponseCode,
    RrChecks,
};
use sonde_probes::{FailureReason, Phase, ResolveOptions, Resolver};
use sonde_testkit::dns::{DnsServer, Zone, MALFORMED, SERVFAIL, SILENT, WRONG_ID};
use tokio::time::Instant;

const BOTH: [DnsTransport; 2] = [DnsTransport::Udp, DnsTransport::Tcp];

fn request(server: &DnsServer, name: &str, t: RecordType, transport: DnsTransport) -> DnsRequest {
    DnsRequest {
        server: "127.0.0.1".into(),
        port: server.addr().port(),
        // The server is an IP literal; the resolver is the fixture anyway, never the system's.
        resolver: Resolver::with_servers(&[server.addr()]).unwrap(),
        ip: ResolveOptions::default(),
        query_name: name.into(),
        query_type: t,
        query_class: DNSClass::IN,
        transport,
        recursion_desired: true,
        checks: DnsChecks::default(),
    }
}

async fn run(req: &DnsRequest, deadline: Duration) -> DnsOutcome {
    let d = Instant::now() + deadline;
    // Hang guard: a probe must return within its deadline + 2 s.
    tokio::time::timeout(deadline + Duration::from_secs(2), probe(req, d))
        .await
        .expect("the dns probe overran its deadline (hang guard)")
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap()
}

#[tokio::test]
async fn answer_authority_additional_over_both_transports() {
    let server = DnsServer::start(Zone::example()).await;
    for t in BOTH {
        let out = run(
            &request(&server, "dual.sonde.test", RecordType::A, t),
            Duration::from_secs(5),
        )
        .await;
        assert!(out.success(), "{t:?}: {:?}", out.failure);
        let f = &out.facts;
        assert!(f.query_succeeded);
        assert_eq!(f.rcode.as_deref(), Some("NOERROR"));
        assert_eq!(f.answer, vec!["dual.sonde.test.\t300\tIN\tA\t127.0.0.1"]);
        assert_eq!(
            f.authority,
            vec![
                "sonde.test.\t3600\tIN\tNS\tns1.sonde.test.",
                "sonde.test.\t3600\tIN\tNS\tns2.sonde.test.",
            ]
        );
        assert_eq!(
            f.additional,
            vec![
                "ns1.sonde.test.\t3600\tIN\tA\t127.0.0.53",
                "ns1.sonde.test.\t3600\tIN\tAAAA\t::1",
                "ns2.sonde.test.\t3600\tIN\tA\t127.0.0.54",
            ]
        );
        assert!(!f.truncated);
        assert_eq!(f.serial, None);
        for p in [Phase::Resolve, Phase::Connect, Phase::Request] {
            assert!(out.timings.contains(p), "{t:?}: phase {p:?} missing");
        }
        assert_eq!(out.remote_addr, Some(server.addr()));
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].tcp && seen[1].tcp);
    for q in &seen {
        assert_eq!(q.name, "dual.sonde.test.");
        assert_eq!(q.query_type, RecordType::A);
        assert!(q.recursion_desired);
        // Like blackbox: no EDNS, so the additional section holds no OPT pseudo-record.
        assert!(!q.edns);
    }
}

#[tokio::test]
async fn recursion_desired_flag_is_sent_as_configured() {
    let server = DnsServer::start(Zone::example()).await;
    for t in BOTH {
        let mut req = request(&server, "sonde.test", RecordType::A, t);
        req.recursion_desired = false;
        assert!(run(&req, Duration::from_secs(5)).await.success());
    }
    assert!(server.seen().iter().all(|q| !q.recursion_desired));
    assert_eq!(server.queries(), 2);
}

/// Records come out in Go miekg/dns `RR.String()` form, so blackbox regexes apply unchanged.
#[tokio::test]
async fn records_are_rendered_like_miekg() {
    let server = DnsServer::start(Zone::example()).await;
    let cases: [(&str, RecordType, &[&str]); 5] = [
        ("v6.sonde.test", RecordType::AAAA, &["v6.sonde.test.\t300\tIN\tAAAA\t::1"]),
        (
            "sonde.test",
            RecordType::MX,
            &["sonde.test.\t300\tIN\tMX\t10 mail.sonde.test."],
        ),
        (
            "sonde.test",
            RecordType::TXT,
            &[
                "sonde.test.\t300\tIN\tTXT\t\"v=spf1 -all\"",
                "sonde.test.\t300\tIN\tTXT\t\"hello\" \"world\"",
            ],
        ),
        (
            "www.sonde.test",
            RecordType::A,
            &[
                "www.sonde.test.\t300\tIN\tCNAME\tsonde.test.",
                "sonde.test.\t300\tIN\tA\t127.0.0.1",
            ],
        ),
        (
            "sonde.test",
            RecordType::SOA,
            &["sonde.test.\t3600\tIN\tSOA\tns1.sonde.test. hostmaster.sonde.test. 2024010101 7200 3600 1209600 300"],
        ),
    ];
    for t in BOTH {
        for (name, rt, want) in cases {
            let out = run(&request(&server, name, rt, t), Duration::from_secs(5)).await;
            assert!(out.success(), "{name} {rt}: {:?}", out.failure);
            assert_eq!(out.facts.answer, want, "{name} {rt} over {t:?}");
        }
    }
    let out = run(
        &request(&server, "sonde.test", RecordType::SOA, DnsTransport::Udp),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(out.facts.serial, Some(2024010101));
}

#[tokio::test]
async fn rcodes_against_valid_rcodes() {
    let server = DnsServer::start(Zone::example()).await;
    for t in BOTH {
        // NXDOMAIN with the default (NOERROR only).
        let out = run(
            &request(&server, "nope.sonde.test", RecordType::A, t),
            Duration::from_secs(5),
        )
        .await;
        let f = out.failure.as_ref().expect("NXDOMAIN must fail by default");
        assert_eq!(f.reason, FailureReason::Status);
        assert_eq!(f.message, "rcode NXDOMAIN — expected NOERROR");
        assert!(out.facts.query_succeeded, "a well-formed answer arrived");
        assert_eq!(out.facts.rcode.as_deref(), Some("NXDOMAIN"));
        assert_eq!(out.facts.authority.len(), 1, "the SOA comes along");

        // NXDOMAIN accepted.
        let mut req = request(&server, "nope.sonde.test", RecordType::A, t);
        req.checks.valid_rcodes = vec![ResponseCode::NXDomain];
        assert!(run(&req, Duration::from_secs(5)).await.success());

        // SERVFAIL.
        let name = format!("{SERVFAIL}.sonde.test");
        let out = run(
            &request(&server, &name, RecordType::A, t),
            Duration::from_secs(5),
        )
        .await;
        let f = out.failure.unwrap();
        assert_eq!(f.reason, FailureReason::Status);
        assert_eq!(f.message, "rcode SERVFAIL — expected NOERROR");
        let mut req = request(&server, &name, RecordType::A, t);
        req.checks.valid_rcodes = vec![ResponseCode::ServFail, ResponseCode::NXDomain];
        assert!(run(&req, Duration::from_secs(5)).await.success());

        // REFUSED (outside the zone); NOERROR now rejected by a list that lacks it.
        let out = run(
            &request(&server, "elsewhere.invalid", RecordType::A, t),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(out.facts.rcode.as_deref(), Some("REFUSED"));
        assert_eq!(
            out.failure.unwrap().message,
            "rcode REFUSED — expected NOERROR"
        );
        let mut req = request(&server, "sonde.test", RecordType::A, t);
        req.checks.valid_rcodes = vec![ResponseCode::ServFail, ResponseCode::NXDomain];
        assert_eq!(
            run(&req, Duration::from_secs(5))
                .await
                .failure
                .unwrap()
                .message,
            "rcode NOERROR — expected one of SERVFAIL, NXDOMAIN"
        );
    }
}

/// Each validation kind on each section, over both transports, with the verdicts blackbox
/// gives (see the module docs of `sonde_probes::dns` for `fail_if_all_match`).
#[tokio::test]
async fn record_validation_kinds() {
    let server = DnsServer::start(Zone::example()).await;
    struct Case {
        section: &'static str,
        checks: RrChecks,
        /// `None`: passes; `Some(parts)`: fails with reason assertion and a message holding them.
        fails_with: Option<&'static [&'static str]>,
    }
    let cases = vec![
        Case {
            section: "answer",
            checks: RrChecks {
                fail_if_matches: vec![re(".*7200.*")],
                fail_if_not_matches: vec![re(".*300.*")],
                ..Default::default()
            },
            fails_with: None,
        },
        Case {
            section: "answer",
            checks: RrChecks {
                fail_if_matches: vec![re("\tA\t127\\.0\\.0\\.1$")],
                ..Default::default()
            },
            fails_with: Some(&[
                "answer record matches fail_if_matches_regexp /\tA\t127\\.0\\.0\\.1$/",
                "multi.sonde.test.\t300\tIN\tA\t127.0.0.1",
            ]),
        },
        Case {
            section: "answer",
            checks: RrChecks {
                fail_if_not_matches: vec![re("127\\.0\\.0\\.1")],
                ..Default::default()
            },
            fails_with: Some(&[
                "answer record does not match fail_if_not_matches_regexp /127\\.0\\.0\\.1/",
                "multi.sonde.test.\t300\tIN\tA\t127.0.0.2",
            ]),
        },
        Case {
            section: "answer",
            checks: RrChecks {
                fail_if_none_matches: vec![re("127\\.0\\.0\\.3")],
                ..Default::default()
            },
            fails_with: Some(&[
                "none of the 2 answer record(s) matches fail_if_none_matches_regexp /127\\.0\\.0\\.3/",
            ]),
        },
        Case {
            section: "answer",
            checks: RrChecks {
                fail_if_none_matches: vec![re("127\\.0\\.0\\.2$")],
                ..Default::default()
            },
            fails_with: None,
        },
        // blackbox semantics: fails unless every record matches.
        Case {
            section: "answer",
            checks: RrChecks {
                fail_if_all_match: vec![re("127\\.0\\.0\\.1")],
                ..Default::default()
            },
            fails_with: Some(&[
                "not every answer record matches fail_if_all_match_regexp /127\\.0\\.0\\.1/",
                "multi.sonde.test.\t300\tIN\tA\t127.0.0.2",
            ]),
        },
        Case {
            section: "answer",
            checks: RrChecks {
                fail_if_all_match: vec![re("^multi\\.sonde\\.test\\.")],
                ..Default::default()
            },
            fails_with: None,
        },
        Case {
            section: "authority",
            checks: RrChecks {
                fail_if_not_matches: vec![re("ns.\\.sonde\\.test\\.$")],
                ..Default::default()
            },
            fails_with: None,
        },
        Case {
            section: "authority",
            checks: RrChecks {
                fail_if_matches: vec![re("ns2")],
                ..Default::default()
            },
            fails_with: Some(&[
                "authority record matches fail_if_matches_regexp /ns2/",
                "sonde.test.\t3600\tIN\tNS\tns2.sonde.test.",
            ]),
        },
        Case {
            section: "additional",
            checks: RrChecks {
                fail_if_all_match: vec![re("\tA\t")],
                ..Default::default()
            },
            fails_with: Some(&[
                "not every additional record matches fail_if_all_match_regexp",
                "ns1.sonde.test.\t3600\tIN\tAAAA\t::1",
            ]),
        },
        Case {
            section: "additional",
            checks: RrChecks {
                fail_if_none_matches: vec![re("127\\.0\\.0\\.99")],
                ..Default::default()
            },
            fails_with: Some(&["none of the 3 additional record(s)"]),
        },
    ];
    for t in BOTH {
        for (i, c) in cases.iter().enumerate() {
            let mut req = request(&server, "multi.sonde.test", RecordType::A, t);
            match c.section {
                "answer" => req.checks.answer = c.checks.clone(),
                "authority" => req.checks.authority = c.checks.clone(),
                _ => req.checks.additional = c.checks.clone(),
            }
            let out = run(&req, Duration::from_secs(5)).await;
            match c.fails_with {
                None => assert!(out.success(), "case {i} over {t:?}: {:?}", out.failure),
                Some(parts) => {
                    let f = out
                        .failure
                        .unwrap_or_else(|| panic!("case {i} over {t:?} should fail"));
                    assert_eq!(f.reason, FailureReason::Assertion, "case {i}");
                    for p in parts {
                        assert!(
                            f.message.contains(p),
                            "case {i}: {:?} lacks {p:?}",
                            f.message
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn empty_section_fails_not_matches_and_none_matches() {
    let server = DnsServer::start(Zone::example()).await;
    // v4 has no AAAA: NOERROR with an empty answer (NODATA).
    let mut req = request(
        &server,
        "v4.sonde.test",
        RecordType::AAAA,
        DnsTransport::Udp,
    );
    assert!(run(&req, Duration::from_secs(5)).await.success());
    req.checks.answer.fail_if_not_matches = vec![re("::1")];
    let f = run(&req, Duration::from_secs(5)).await.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Assertion);
    assert!(f.message.contains("no answer records"), "{}", f.message);
    req.checks.answer = RrChecks {
        fail_if_none_matches: vec![re("::1")],
        ..Default::default()
    };
    assert!(run(&req, Duration::from_secs(5)).await.failure.is_some());
}

#[tokio::test]
async fn silence_times_out_naming_the_wait() {
    let server = DnsServer::start(Zone::example()).await;
    for t in BOTH {
        let name = format!("{SILENT}.sonde.test");
        let out = run(
            &request(&server, &name, RecordType::A, t),
            Duration::from_secs(1),
        )
        .await;
        let f = out.failure.unwrap();
        assert_eq!(f.reason, FailureReason::Timeout, "{t:?}");
        assert!(
            f.message.contains("waiting for the DNS answer"),
            "{}",
            f.message
        );
        assert!(!out.facts.query_succeeded);
        assert!(
            out.timings.contains(Phase::Connect),
            "connect was measured before the timeout"
        );
    }
    assert_eq!(server.queries(), 2, "both queries reached the server");
}

#[tokio::test]
async fn malformed_answer_is_a_protocol_failure() {
    let server = DnsServer::start(Zone::example()).await;
    for t in BOTH {
        let name = format!("{MALFORMED}.sonde.test");
        let out = run(
            &request(&server, &name, RecordType::A, t),
            Duration::from_secs(5),
        )
        .await;
        let f = out.failure.unwrap();
        assert_eq!(f.reason, FailureReason::Protocol, "{t:?}: {}", f.message);
        assert!(f.message.contains("malformed DNS answer"), "{}", f.message);
        assert!(!out.facts.query_succeeded);
    }
}

#[tokio::test]
async fn answers_with_a_wrong_id_are_ignored() {
    let server = DnsServer::start(Zone::example()).await;
    for t in BOTH {
        let name = format!("{WRONG_ID}.sonde.test");
        let out = run(
            &request(&server, &name, RecordType::A, t),
            Duration::from_secs(5),
        )
        .await;
        assert!(out.success(), "{t:?}: {:?}", out.failure);
        assert_eq!(
            out.facts.answer,
            vec!["wrongid.sonde.test.\t300\tIN\tA\t127.0.0.1"],
            "the decoy (127.0.0.99) must not be taken"
        );
        assert!(
            out.events.iter().any(|e| e.message.contains("ignored")),
            "the decoy is logged: {:?}",
            out.events
        );
    }
}

#[tokio::test]
async fn truncated_udp_answer_is_reported_as_is() {
    let server = DnsServer::start(Zone::example()).await;
    let out = run(
        &request(
            &server,
            "big.sonde.test",
            RecordType::TXT,
            DnsTransport::Udp,
        ),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.success(), "{:?}", out.failure);
    assert!(out.facts.truncated);
    assert!(out.facts.answer.is_empty());
    let out = run(
        &request(
            &server,
            "big.sonde.test",
            RecordType::TXT,
            DnsTransport::Tcp,
        ),
        Duration::from_secs(5),
    )
    .await;
    assert!(!out.facts.truncated);
    assert_eq!(out.facts.answer.len(), 30);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_failure() {
    // Take a port, then free it: nothing listens there (UDP and TCP).
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let server = DnsServer::start(Zone::example()).await;
    for t in BOTH {
        let mut req = request(&server, "sonde.test", RecordType::A, t);
        req.port = port;
        let out = run(&req, Duration::from_secs(3)).await;
        let f = out.failure.unwrap();
        assert_eq!(f.reason, FailureReason::Connect, "{t:?}: {}", f.message);
    }
}

#[tokio::test]
async fn server_given_by_name_is_resolved_through_the_resolver() {
    let server = DnsServer::start(Zone::example()).await;
    let mut req = request(&server, "v4.sonde.test", RecordType::A, DnsTransport::Udp);
    // mail.sonde.test resolves (through the fixture itself) to 127.0.0.1, where it listens.
    req.server = "mail.sonde.test".into();
    req.ip = ResolveOptions {
        preferred: sonde_probes::IpProtocol::Ip4,
        fallback: false,
    };
    let out = run(&req, Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    assert_eq!(out.remote_addr, Some(server.addr()));
    assert!(out.timings.contains(Phase::Resolve));
}
