//! A request's [`DialPolicy`] is asked about every address of every hop: a redirect to a
//! refused address — written as a literal, or behind a name — fails the probe before any
//! connection, directly and through a proxy. In-process fixtures on loopback; names resolve
//! through an in-process DNS server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sonde_probes::http::{probe, HttpOutcome, HttpRequest, ALPN_HTTP11};
use sonde_probes::policy::{DialPolicy, Policy};
use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::{FailureReason, Resolver};
use sonde_testkit::dns::{DnsServer, Zone};
use sonde_testkit::http::{HttpServer, Proxy, Reply, Routes};
use tokio::time::Instant;

/// Allows 127.0.0.2 only, and remembers what it was asked.
#[derive(Debug, Default)]
struct Only127_0_0_2 {
    asked: Mutex<Vec<(String, SocketAddr)>>,
}

impl DialPolicy for Only127_0_0_2 {
    fn allow(&self, host: &str, addr: SocketAddr) -> Result<(), String> {
        self.asked.lock().unwrap().push((host.to_string(), addr));
        if addr.ip().to_string() == "127.0.0.2" {
            Ok(())
        } else {
            Err("only 127.0.0.2 is allowed".into())
        }
    }
}

async fn run(req: &HttpRequest) -> HttpOutcome {
    let deadline = Duration::from_secs(5);
    tokio::time::timeout(deadline * 2, probe(req, Instant::now() + deadline))
        .await
        .expect("hang guard: the probe overran its deadline")
}

/// The internal server a redirect points at, and the allowed one that redirects there.
async fn fixtures(location: impl Fn(&HttpServer) -> String) -> (HttpServer, HttpServer) {
    let internal = HttpServer::start(Routes::new().at("/admin", Reply::text(200, "secret"))).await;
    let to = location(&internal);
    let outside = HttpServer::start_on(
        "127.0.0.2:0".parse().unwrap(),
        Routes::new().at("/", Reply::redirect(302, &to)),
    )
    .await
    .unwrap();
    (internal, outside)
}

fn request(url: &str, resolver: Resolver, policy: &Arc<Only127_0_0_2>) -> HttpRequest {
    let tls = TlsClient::new(&TlsOptions::default(), ALPN_HTTP11).unwrap();
    let mut req = HttpRequest::get(url.parse().unwrap(), resolver, tls);
    let p: Policy = policy.clone();
    req.policy = Some(p);
    req
}

#[tokio::test]
async fn a_redirect_to_a_name_that_resolves_inside_is_refused() {
    let dns = DnsServer::start(Zone::new("sonde.test").a("internal", "127.0.0.1")).await;
    let (internal, outside) =
        fixtures(|i| format!("http://internal.sonde.test:{}/admin", i.addr().port())).await;
    let policy = Arc::new(Only127_0_0_2::default());
    let resolver = Resolver::with_servers(&[dns.addr()]).unwrap();
    let o = run(&request(&outside.url("/"), resolver, &policy)).await;

    let f = o.failure.expect("the redirect must not be followed");
    assert_eq!(f.reason, FailureReason::Connect, "{f}");
    assert!(
        f.message.contains("127.0.0.1") && f.message.contains("only 127.0.0.2 is allowed"),
        "{f}"
    );
    assert!(
        internal.requests().is_empty(),
        "the internal server was reached"
    );
    assert_eq!(o.facts.redirects, 1);
    let asked = policy.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1].0, "internal.sonde.test");
}

#[tokio::test]
async fn through_a_proxy_every_hop_is_checked_too() {
    let (internal, outside) = fixtures(|i| i.url("/admin")).await;
    let proxy = Proxy::start().await;
    let policy = Arc::new(Only127_0_0_2::default());
    let resolver = Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap();
    let mut req = request(&outside.url("/"), resolver, &policy);
    req.proxy = Some(proxy.url().parse().unwrap());
    let o = run(&req).await;

    let f = o.failure.expect("the redirect must not be followed");
    assert!(f.message.contains("only 127.0.0.2 is allowed"), "{f}");
    assert_eq!(
        proxy.requests().len(),
        1,
        "only the allowed hop went to the proxy"
    );
    assert!(internal.requests().is_empty());
}

#[tokio::test]
async fn without_a_policy_the_redirect_is_followed() {
    // The control: the same fixtures reach the internal server when nothing forbids it.
    let (internal, outside) = fixtures(|i| i.url("/admin")).await;
    let tls = TlsClient::new(&TlsOptions::default(), ALPN_HTTP11).unwrap();
    let resolver = Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap();
    let req = HttpRequest::get(outside.url("/").parse().unwrap(), resolver, tls);
    let o = run(&req).await;
    assert!(o.failure.is_none(), "{:?}", o.failure);
    assert_eq!(internal.requests().len(), 1);
}

#[tokio::test]
async fn a_tcp_probe_asks_before_connecting() {
    use sonde_probes::tcp::{probe as tcp_probe, TcpRequest};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = DnsServer::start(Zone::new("sonde.test").a("internal", "127.0.0.1")).await;
    let policy = Arc::new(Only127_0_0_2::default());
    let p: Policy = policy.clone();
    let req = TcpRequest {
        host: "internal.sonde.test".into(),
        port,
        resolver: Resolver::with_servers(&[dns.addr()]).unwrap(),
        ip: Default::default(),
        tls: false,
        tls_client: TlsClient::new(&TlsOptions::default(), &[]).unwrap(),
        dialogue: vec![],
        policy: Some(p),
        unix: None,
    };
    let o = tokio::time::timeout(
        Duration::from_secs(10),
        tcp_probe(&req, Instant::now() + Duration::from_secs(5)),
    )
    .await
    .expect("hang guard");
    let f = o.failure.expect("refused");
    assert_eq!(f.reason, FailureReason::Connect, "{f}");
    assert!(f.message.contains("only 127.0.0.2 is allowed"), "{f}");
    // Nothing connected: the listener has no connection waiting.
    let pending = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(pending.is_err(), "the probe connected anyway");
}
