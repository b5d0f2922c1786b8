//! `/probe` cannot be bounced past `--probe.allow-target` by a redirect, and cannot be made to
//! probe itself (directly through a redirect, or through another sonde): the loops stop after a
//! bounded number of requests. In-process sondes and fixtures on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use sonde::blackbox::safety::Safety;
use sonde::blackbox::Blackbox;
use sonde::config::LoadOptions;
use sonde::metrics::{Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde::serve::{App, AppParts, ConfigSource};
use sonde_testkit::http::{HttpServer, Reply, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loop that the code under test fails to stop is cut here, so the test fails instead of
/// exhausting the machine.
const LOOP_GUARD: usize = 50;

/// A sonde `/probe` endpoint on 127.0.0.1 with blackbox's `http_2xx` module; `allow` as
/// `--probe.allow-target`.
async fn sonde(allow: &[&str]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let safety =
        Safety::new(allow.iter().map(|a| a.parse().unwrap()).collect(), None).listening_on(addr);
    // Lives as long as the test process: the source is read again only on reload.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let path = dir.path().join("blackbox.yml");
    std::fs::write(&path, "modules:\n  http_2xx:\n    prober: http\n").unwrap();
    let source = ConfigSource::Paths(vec![path]);
    let loaded = source.load(&LoadOptions::default()).unwrap();
    let metrics = Metrics::new();
    let scheduler = Scheduler::new(RunMetrics::alone(metrics.clone(), None), None, 4);
    let parts = AppParts {
        metrics,
        scheduler,
        alerts: Default::default(),
        source,
        load_options: LoadOptions::default(),
        blackbox: Blackbox::new(0.5, safety),
        history: None,
        history_writer: None,
    };
    let app = App::new(parts, loaded);
    let router = sonde::web::router(app);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// GET over HTTP/1.0 with Prometheus' timeout header: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_with(addr, path, "Accept: */*").await
}

/// [`get`] with one more header line.
async fn get_with(addr: SocketAddr, path: &str, header: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nX-Prometheus-Scrape-Timeout-Seconds: 5\r\n{header}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().unwrap())
    })
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A fixture whose `/` redirects (302) to whatever `to` holds once set, `LOOP_GUARD` times at
/// most; it counts its hits.
async fn redirector(on: &str, to: Arc<OnceLock<String>>) -> (HttpServer, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let routes = Routes::new().at_fn("/", move |_| {
        if h.fetch_add(1, Ordering::SeqCst) >= LOOP_GUARD {
            return Reply::text(200, "loop guard");
        }
        Reply::redirect(302, to.get().expect("redirect target set"))
    });
    let addr: SocketAddr = format!("{on}:0").parse().unwrap();
    (HttpServer::start_on(addr, routes).await.unwrap(), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_cannot_leave_the_allow_list() {
    let internal = HttpServer::start(Routes::new().at("/admin", Reply::text(200, "secret"))).await;
    let to = Arc::new(OnceLock::new());
    to.set(internal.url("/admin")).unwrap();
    let (outside, _) = redirector("127.0.0.2", to).await;
    assert_eq!(internal.addr().ip().to_string(), "127.0.0.1");
    let sonde = sonde(&["127.0.0.2/32"]).await;

    let target = enc(&outside.url("/"));
    let (status, body) = get(sonde, &format!("/probe?target={target}&debug=true")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("probe_success 0"),
        "the redirect to 127.0.0.1 was followed:\n{body}"
    );
    assert!(
        body.contains("refused to connect to 127.0.0.1:")
            && body.contains("not allowed by --probe.allow-target"),
        "the debug output must say why:\n{body}"
    );
    assert!(
        internal.requests().is_empty(),
        "the internal server was reached: {:?}",
        internal.requests()
    );
    // The first hop alone is still allowed.
    assert_eq!(outside.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_back_to_sonde_is_not_followed() {
    let sonde = sonde(&[]).await;
    let to = Arc::new(OnceLock::new());
    let (target, hits) = redirector("127.0.0.1", to.clone()).await;
    // The target sends the probe to sonde's own /probe?target=<the target>.
    to.set(format!(
        "http://{sonde}/probe?target={}",
        enc(&target.url("/"))
    ))
    .unwrap();

    let (status, body) = get(
        sonde,
        &format!("/probe?target={}&debug=true", enc(&target.url("/"))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "sonde probed itself: the target was hit again by nested probes"
    );
    assert_eq!(value(&body, "probe_success"), Some(0.0), "{body}");
    assert!(body.contains("own listen address"), "{body}");

    // Asked directly to probe its own address: refused.
    let (status, body) = get(
        sonde,
        &format!("/probe?target={}", enc(&format!("http://{sonde}/metrics"))),
    )
    .await;
    assert_eq!(status, 508, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sondes_probing_each_other_stop() {
    let (a, b) = (sonde(&[]).await, sonde(&[]).await);
    let (to1, to2) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let (t1, hits1) = redirector("127.0.0.1", to1.clone()).await;
    let (t2, hits2) = redirector("127.0.0.1", to2.clone()).await;
    // A probes t1 → B probes t2 → A probes t1 → …
    to1.set(format!("http://{b}/probe?target={}", enc(&t2.url("/"))))
        .unwrap();
    to2.set(format!("http://{a}/probe?target={}", enc(&t1.url("/"))))
        .unwrap();

    let (status, body) = get(a, &format!("/probe?target={}", enc(&t1.url("/")))).await;
    assert_eq!(status, 200, "{body}");
    let (n1, n2) = (hits1.load(Ordering::SeqCst), hits2.load(Ordering::SeqCst));
    assert!(
        n1 == 1 && n2 == 1,
        "the loop between two sondes was not stopped at once: t1 hit {n1}, t2 hit {n2} times"
    );
    // The same loop entered at B ends the same way, one hit each.
    let (status, body) = get(b, &format!("/probe?target={}", enc(&t2.url("/")))).await;
    assert_eq!(status, 200, "{body}");
    let (n1, n2) = (hits1.load(Ordering::SeqCst), hits2.load(Ordering::SeqCst));
    assert!(n1 == 2 && n2 == 2, "t1 hit {n1}, t2 hit {n2} times in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_is_bounded_whatever_the_chain() {
    let sonde = sonde(&[]).await;
    let target = HttpServer::start(Routes::new().at("/", Reply::text(200, "ok"))).await;
    let path = format!("/probe?target={}", enc(&target.url("/")));
    // Two other sondes before this one: still allowed; the chain is passed on with this one.
    let (status, body) = get_with(sonde, &path, "X-Sonde-Probe: 1111, 2222").await;
    assert_eq!(status, 200, "{body}");
    let marker = target.requests()[0]
        .header("x-sonde-probe")
        .unwrap_or_default()
        .to_string();
    assert!(marker.starts_with("1111, 2222, "), "{marker}");
    // Three already: refused before any traffic.
    let (status, body) = get_with(sonde, &path, "X-Sonde-Probe: 1111, 2222, 3333").await;
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("at most 3"), "{body}");
    // Its own id coming back: refused.
    let own = marker.rsplit(", ").next().unwrap();
    let (status, body) = get_with(sonde, &path, &format!("X-Sonde-Probe: {own}")).await;
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("own probe"), "{body}");
    assert_eq!(target.requests().len(), 1);
}
