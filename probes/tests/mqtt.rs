//! The MQTT probe against the in-process fixture broker (testkit::mqtt): round trips at every
//! QoS over TCP, TLS and WebSocket in both protocol versions, the phases, authentication, and
//! hostile brokers.

use std::time::Duration;

use bytes::Bytes;
use sonde_probes::mqtt::{
    self, ConnectOpts, Message, MqttConn, MqttConnectRequest, Properties, Publish, Version,
};
use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::{FailureReason, Phase, ResolveOptions, Resolver};
use sonde_testkit::mqtt::{MqttBroker, MqttOptions};
use sonde_testkit::pki::{self, Ca};
use time::Duration as Span;
use tokio::time::Instant;

fn request(url: String, version: Version, client_id: &str) -> MqttConnectRequest {
    MqttConnectRequest {
        url,
        version,
        connect: ConnectOpts {
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 30,
            ..Default::default()
        },
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls_client: TlsClient::new(&TlsOptions::default(), &[]).unwrap(),
        inbox_limit: 16,
        max_packet_size: 64 * 1024,
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

async fn open(req: &MqttConnectRequest) -> MqttConn {
    let (out, conn) = mqtt::connect(req, soon()).await;
    assert!(out.success(), "{:?}", out.failure);
    assert!(out.timings.contains(Phase::Connack), "{:?}", out.timings);
    conn.expect("a connection")
}

fn publish(topic: &str, payload: &str, qos: u8) -> Publish {
    Publish {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        dup: false,
        pkid: 0,
        properties: Properties::default(),
    }
}

async fn wait_for(conn: &MqttConn, want: &str) -> Message {
    let r = conn
        .expect(&mut |m: &Message| m.payload == want.as_bytes(), soon(), 8)
        .await;
    r.matched
        .unwrap_or_else(|| panic!("no {want:?}: {:?}", r.failure))
}

async fn round_trip(url: String, version: Version, tls: Option<&Ca>) {
    let mut a = request(url.clone(), version, "alice");
    let mut b = request(url, version, "bob");
    if let Some(ca) = tls {
        let client = TlsClient::new(
            &TlsOptions {
                ca_file: Some(ca.ca_file.clone()),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        a.tls_client = client.clone();
        b.tls_client = client;
    }
    let alice = open(&a).await;
    let bob = open(&b).await;
    let sub = bob
        .subscribe(vec![("chat/+/in".into(), 2)], soon())
        .await
        .unwrap();
    assert_eq!(sub.granted, vec![Ok(2)]);
    assert_eq!(sub.phases[0].0, Phase::Suback);
    for qos in 0..=2u8 {
        let text = format!("hello at qos {qos}");
        let acked = alice
            .publish(publish("chat/bob/in", &text, qos), soon())
            .await
            .unwrap();
        let phases: Vec<Phase> = acked.phases.iter().map(|p| p.0).collect();
        match qos {
            0 => assert!(phases.is_empty()),
            1 => assert_eq!(phases, [Phase::Puback]),
            _ => assert_eq!(phases, [Phase::Pubrec, Phase::Pubcomp]),
        }
        let m = wait_for(&bob, &text).await;
        assert_eq!(m.topic, "chat/bob/in");
        assert_eq!(m.qos, qos);
        assert!(m.received_at >= acked.sent_at.unwrap());
    }
    alice.disconnect(soon()).await.unwrap();
    assert_eq!(alice.closed(), Some(mqtt::Closed::ByUs));
}

#[tokio::test]
async fn round_trip_at_every_qos_over_tcp_in_both_versions() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    round_trip(broker.url(), Version::V311, None).await;
    round_trip(broker.url(), Version::V5, None).await;
}

#[tokio::test]
async fn round_trip_over_websocket() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    round_trip(broker.ws_url(), Version::V311, None).await;
    round_trip(broker.ws_url(), Version::V5, None).await;
}

#[tokio::test]
async fn round_trip_over_tls_and_wss_with_a_generated_ca() {
    let ca = Ca::new("sonde mqtt test CA");
    let leaf = ca.leaf(&["127.0.0.1"], Span::days(30), &[]);
    let broker = MqttBroker::start(MqttOptions {
        tls: Some(pki::server_config(&leaf, &[], None)),
        ..Default::default()
    })
    .await;
    assert!(broker.url().starts_with("mqtts://"));
    round_trip(broker.url(), Version::V5, Some(&ca)).await;
    round_trip(broker.ws_url(), Version::V311, Some(&ca)).await;
}

#[tokio::test]
async fn credentials_are_sent_and_a_refusal_is_a_status_failure() {
    let broker = MqttBroker::start(MqttOptions {
        credentials: Some(("alice".into(), "s3cret-pass".into())),
        ..Default::default()
    })
    .await;
    for v in [Version::V311, Version::V5] {
        let mut req = request(broker.url(), v, "alice");
        req.connect.username = Some("alice".into());
        req.connect.password = Some("s3cret-pass".into());
        open(&req).await;
        assert_eq!(
            broker.last_connect().unwrap().2.as_deref(),
            Some("s3cret-pass")
        );

        req.connect.password = Some("wrong-pass".into());
        let (out, conn) = mqtt::connect(&req, soon()).await;
        assert!(conn.is_none());
        let f = out.failure.unwrap();
        assert_eq!(f.reason, FailureReason::Status);
        assert!(f.message.contains("bad user name password"), "{f}");
        // The password is in no event or message of the outcome.
        let all = format!("{:?} {:?} {:?}", out.events, f, req);
        assert!(!all.contains("wrong-pass"), "{all}");
    }
}

#[tokio::test]
async fn retained_message_reaches_a_later_subscriber() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    let a = open(&request(broker.url(), Version::V311, "pub")).await;
    let mut p = publish("status/door", "open", 1);
    p.retain = true;
    a.publish(p, soon()).await.unwrap();
    let b = open(&request(broker.url(), Version::V311, "sub")).await;
    b.subscribe(vec![("status/#".into(), 1)], soon())
        .await
        .unwrap();
    let m = wait_for(&b, "open").await;
    assert!(m.retain);
}

#[tokio::test]
async fn v5_properties_travel_with_the_message() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    let a = open(&request(broker.url(), Version::V5, "a")).await;
    let b = open(&request(broker.url(), Version::V5, "b")).await;
    b.subscribe(vec![("rpc/#".into(), 1)], soon())
        .await
        .unwrap();
    let mut p = publish("rpc/req", "{\"n\":1}", 1);
    p.properties = Properties {
        content_type: Some("application/json".into()),
        response_topic: Some("rpc/resp".into()),
        correlation_data: Some(Bytes::from_static(b"c-42")),
        user_properties: vec![("trace".into(), "abc".into())],
        ..Default::default()
    };
    a.publish(p.clone(), soon()).await.unwrap();
    let m = wait_for(&b, "{\"n\":1}").await;
    assert_eq!(m.properties.content_type, p.properties.content_type);
    assert_eq!(m.properties.response_topic, p.properties.response_topic);
    assert_eq!(m.properties.correlation_data, p.properties.correlation_data);
    assert_eq!(m.properties.user_properties, p.properties.user_properties);
}

#[tokio::test]
async fn a_refused_filter_is_reported_per_filter() {
    let broker = MqttBroker::start(MqttOptions {
        deny_prefix: Some("secret/".into()),
        ..Default::default()
    })
    .await;
    for v in [Version::V311, Version::V5] {
        let c = open(&request(broker.url(), v, "c")).await;
        let s = c
            .subscribe(vec![("ok/#".into(), 1), ("secret/x".into(), 1)], soon())
            .await
            .unwrap();
        assert_eq!(s.granted[0], Ok(1));
        assert!(s.granted[1].is_err(), "{:?}", s.granted);
    }
}

#[tokio::test]
async fn a_silent_broker_times_out_waiting_for_connack() {
    let broker = MqttBroker::start(MqttOptions {
        silent: true,
        ..Default::default()
    })
    .await;
    let req = request(broker.url(), Version::V311, "x");
    let (out, conn) = mqtt::connect(&req, Instant::now() + Duration::from_millis(300)).await;
    assert!(conn.is_none());
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(f.message.contains("CONNACK"), "{f}");
}

#[tokio::test]
async fn an_oversized_packet_fails_the_connection_without_buffering_it() {
    // After CONNACK the broker announces a 200 MB PUBLISH and sends nothing more.
    let broker = MqttBroker::start(MqttOptions {
        after_connack: Some(vec![0x30, 0xFF, 0xFF, 0xFF, 0x5F]),
        ..Default::default()
    })
    .await;
    let c = open(&request(broker.url(), Version::V311, "x")).await;
    let why = tokio::time::timeout(Duration::from_secs(5), c.wait_closed())
        .await
        .unwrap();
    assert!(why.to_string().contains("max_packet_size"), "{why}");
}

#[tokio::test]
async fn garbage_fails_the_connection_with_a_clear_reason() {
    let broker = MqttBroker::start(MqttOptions {
        after_connack: Some(vec![0x00, 0x00]),
        ..Default::default()
    })
    .await;
    let c = open(&request(broker.url(), Version::V5, "x")).await;
    let why = tokio::time::timeout(Duration::from_secs(5), c.wait_closed())
        .await
        .unwrap();
    assert!(why.to_string().contains("malformed"), "{why}");
    let f = c.publish(publish("t", "x", 1), soon()).await.unwrap_err();
    assert_eq!(f.reason, FailureReason::Protocol);
}

#[tokio::test]
async fn a_dropped_connection_ends_expect_and_is_seen_by_wait_closed() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    let c = open(&request(broker.url(), Version::V311, "x")).await;
    c.subscribe(vec![("t".into(), 0)], soon()).await.unwrap();
    broker.drop_all();
    let r = c.expect(&mut |_| true, soon(), 4).await;
    let f = r.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(f.message.contains("broker closed"), "{f}");
    assert!(c.closed().is_some());
}

#[tokio::test]
async fn the_inbox_is_bounded_and_counts_what_it_dropped() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    let a = open(&request(broker.url(), Version::V311, "a")).await;
    let b = open(&request(broker.url(), Version::V311, "b")).await;
    b.subscribe(vec![("n".into(), 1)], soon()).await.unwrap();
    for i in 0..40 {
        a.publish(publish("n", &i.to_string(), 1), soon())
            .await
            .unwrap();
    }
    // Nobody reads: once all 40 are in, the inbox holds the last 16 and counted 24 dropped.
    let until = soon();
    while b.dropped_messages() < 24 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.dropped_messages(), 24);
    let r = b.expect(&mut |_| true, soon(), 1).await;
    assert_eq!(r.matched.unwrap().payload, "24".as_bytes());
}

#[tokio::test]
async fn a_broker_that_stops_answering_is_caught_by_keep_alive_and_unacked_publishes_time_out() {
    let broker = MqttBroker::start(MqttOptions {
        mute_acks: true,
        ..Default::default()
    })
    .await;
    let mut req = request(broker.url(), Version::V311, "x");
    req.connect.keep_alive = 1;
    let c = open(&req).await;
    // Many unacknowledged publishes: each times out, none is remembered for ever.
    for _ in 0..3 {
        let f = c
            .publish(
                publish("t", "x", 1),
                Instant::now() + Duration::from_millis(50),
            )
            .await
            .unwrap_err();
        assert_eq!(f.reason, FailureReason::Timeout, "{f}");
    }
    // PINGREQ after 1 s of silence, no PINGRESP within another: the connection is declared dead.
    let why = tokio::time::timeout(Duration::from_secs(10), c.wait_closed())
        .await
        .expect("keep-alive should end the connection");
    assert!(why.to_string().contains("PINGREQ"), "{why}");
}

#[tokio::test]
async fn a_broker_that_never_releases_qos2_messages_cannot_grow_the_connection() {
    let broker = MqttBroker::start(MqttOptions {
        never_release: true,
        ..Default::default()
    })
    .await;
    let a = open(&request(broker.url(), Version::V5, "a")).await;
    let b = open(&request(broker.url(), Version::V5, "b")).await;
    b.subscribe(vec![("q2".into(), 2)], soon()).await.unwrap();
    let mut sent = 0;
    while b.closed().is_none() && sent < 1200 {
        a.publish(publish("q2", &sent.to_string(), 2), soon())
            .await
            .unwrap();
        sent += 1;
    }
    let why = tokio::time::timeout(Duration::from_secs(5), b.wait_closed())
        .await
        .expect("the subscriber's connection should give up");
    assert!(why.to_string().contains("without PUBREL"), "{why}");
    assert!(sent > 1024, "gave up after {sent} messages");
}
