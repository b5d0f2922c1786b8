//! `--shard auto` counted by the StatefulSet itself: real `sonde serve` pods read `replicas` from
//! an in-process Kubernetes API (HTTPS with its own CA, bearer token) and reshard when it is
//! scaled — the thing `SONDE_SHARD_COUNT` could not do. Everything runs on 127.0.0.1.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::pki::{server_config, Ca};
use sonde_testkit::process::Serve;

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");
const TOKEN: &str = "sa-token-0f9e8d7c6b5a";
const STS_PATH: &str = "/apis/apps/v1/namespaces/probes/statefulsets/sonde-eu";
const HANG_GUARD: Duration = Duration::from_secs(30);

use sonde_testkit::runtime;

/// A Kubernetes API that serves one StatefulSet whose `replicas` the test sets; it answers 401
/// to any other token and 403 while `forbidden` is set, as an API server without RBAC would.
struct FakeApi {
    server: HttpServer,
    replicas: Arc<AtomicU64>,
    ca: Ca,
}

impl FakeApi {
    fn start(rt: &tokio::runtime::Runtime, replicas: u64, status: u16) -> FakeApi {
        let ca = Ca::new("kube-ca");
        let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(1), &[]);
        let count = Arc::new(AtomicU64::new(replicas));
        let c = count.clone();
        let routes = Routes::new().at_fn(STS_PATH, move |seen| {
            if seen.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
                return Reply::json(401, &serde_json::json!({"kind": "Status", "code": 401}));
            }
            if status != 200 {
                return Reply::json(
                    status,
                    &serde_json::json!({"kind": "Status", "code": status}),
                );
            }
            Reply::json(
                200,
                &serde_json::json!({
                    "kind": "StatefulSet",
                    "apiVersion": "apps/v1",
                    "metadata": {"name": "sonde-eu", "namespace": "probes"},
                    "spec": {"replicas": c.load(Ordering::SeqCst)},
                }),
            )
        });
        let server = rt.block_on(HttpServer::start_tls(
            routes,
            server_config(&leaf, &[b"http/1.1"], None),
        ));
        FakeApi {
            server,
            replicas: count,
            ca,
        }
    }

    /// The service account files Kubernetes mounts in a pod.
    fn serviceaccount_dir(&self, token: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        std::fs::write(dir.path().join("namespace"), "probes").unwrap();
        std::fs::write(dir.path().join("ca.crt"), &self.ca.cert_pem).unwrap();
        dir
    }
}

fn scenarios(n: usize) -> String {
    let mut yaml = String::from("scenarios:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - scenario: s{i}\n    interval: 1h\n    tcp: {{target: \"127.0.0.1:1\"}}\n"
        ));
    }
    yaml
}

fn pod(api: &FakeApi, sa: &Path, ordinal: u32, yaml: &str) -> sonde_testkit::process::ServeCommand {
    Serve::command(SONDE)
        .config_yaml("s.yaml", yaml)
        .region("eu")
        .arg("--shard")
        .arg("auto")
        .arg("--shard-refresh-interval")
        .arg("1s")
        .env("HOSTNAME", format!("sonde-eu-{ordinal}"))
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env(
            "KUBERNETES_SERVICE_PORT",
            api.server.addr().port().to_string(),
        )
        .env("SONDE_KUBERNETES_SERVICEACCOUNT_DIR", sa)
        // An empty count is no count: the StatefulSet gives it.
        .env("SONDE_SHARD_COUNT", "")
}

fn shard_and_owned(s: &Serve) -> (String, BTreeSet<String>) {
    let (v, names) = s.scenario_list();
    (v["shard"].as_str().unwrap_or("").to_string(), names)
}

fn wait_for_shard(s: &Serve, want: &str) -> BTreeSet<String> {
    let guard = Instant::now() + HANG_GUARD;
    loop {
        let (shard, names) = shard_and_owned(s);
        if shard == want {
            return names;
        }
        assert!(
            Instant::now() < guard,
            "hang guard: shard {shard}, want {want}\nsonde's log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three pods of a three-replica StatefulSet split 30 scenarios; scaled to 2, the two pods left
/// reshard to 1/2 and 2/2 and together run every scenario exactly once — with no count in any
/// pod's environment. The log says so once.
#[test]
fn scaling_the_statefulset_reshards_its_pods() {
    let rt = runtime();
    let api = FakeApi::start(&rt, 3, 200);
    let sa = api.serviceaccount_dir(TOKEN);
    let yaml = scenarios(30);
    let pods: Vec<Serve> = (0..3)
        .map(|o| pod(&api, sa.path(), o, &yaml).start())
        .collect();
    let mut total = 0;
    let mut union = BTreeSet::new();
    for (o, p) in pods.iter().enumerate() {
        let names = wait_for_shard(p, &format!("{}/3", o + 1));
        total += names.len();
        union.extend(names);
    }
    assert_eq!(
        (union.len(), total),
        (30, 30),
        "each scenario once, on 3 pods"
    );

    api.replicas.store(2, Ordering::SeqCst);
    let mut total = 0;
    let mut union = BTreeSet::new();
    for (o, p) in pods.iter().take(2).enumerate() {
        let names = wait_for_shard(p, &format!("{}/2", o + 1));
        total += names.len();
        union.extend(names);
        let log = p.log();
        assert_eq!(log.matches("resharded").count(), 1, "{log}");
    }
    assert_eq!(
        (union.len(), total),
        (30, 30),
        "each scenario once, on 2 pods"
    );
    // Pod 2 is being stopped by Kubernetes; until then it keeps its share and says why.
    let (shard, _) = shard_and_owned(&pods[2]);
    assert_eq!(shard, "3/3");
    let guard = Instant::now() + HANG_GUARD;
    while !pods[2].log().contains("until Kubernetes stops this pod") {
        assert!(Instant::now() < guard, "{}", pods[2].log());
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in &pods {
        assert!(!p.log().contains(TOKEN), "the token leaked into the log");
    }
}

/// A pod whose service account may not read the StatefulSet, or whose token is wrong, refuses
/// to start and says what to grant — without quoting the token.
#[test]
fn a_pod_that_cannot_read_its_statefulset_says_why_and_does_not_start() {
    let rt = runtime();
    let forbidden = FakeApi::start(&rt, 3, 403);
    let sa = forbidden.serviceaccount_dir(TOKEN);
    let (code, log) = pod(&forbidden, sa.path(), 0, &scenarios(3))
        .spawn()
        .wait_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("may not read StatefulSet probes/sonde-eu (403)"),
        "{log}"
    );
    assert!(log.contains("sharded-rbac.yaml"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");

    let api = FakeApi::start(&rt, 3, 200);
    let wrong = api.serviceaccount_dir("not-the-token");
    let (code, log) = pod(&api, wrong.path(), 0, &scenarios(3))
        .spawn()
        .wait_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("refused the service account's token (401)"),
        "{log}"
    );
    assert!(!log.contains("not-the-token"), "{log}");
}

/// The token is read on every request (Kubernetes rotates it), and an API outage keeps the
/// current shard and is logged once, then its end once.
#[test]
fn a_rotated_token_is_used_and_an_outage_keeps_the_shard() {
    let rt = runtime();
    let api = FakeApi::start(&rt, 2, 200);
    let sa = api.serviceaccount_dir(TOKEN);
    let p = pod(&api, sa.path(), 1, &scenarios(10)).start();
    wait_for_shard(&p, "2/2");
    // A stale token: the API refuses it; the pod keeps 2/2 and warns once.
    std::fs::write(sa.path().join("token"), "stale").unwrap();
    let guard = Instant::now() + HANG_GUARD;
    while !p.log().contains("cannot read the StatefulSet's replicas") {
        assert!(Instant::now() < guard, "{}", p.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(shard_and_owned(&p).0, "2/2");
    assert_eq!(
        p.log()
            .matches("cannot read the StatefulSet's replicas")
            .count(),
        1
    );
    // The rotated token works from the next request on.
    std::fs::write(sa.path().join("token"), TOKEN).unwrap();
    api.replicas.store(4, Ordering::SeqCst);
    wait_for_shard(&p, "2/4");
    assert!(
        p.log().contains("replicas are readable again"),
        "{}",
        p.log()
    );
}
