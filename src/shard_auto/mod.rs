//! `--shard auto`: a StatefulSet pod takes its shard from its ordinal, so the same pod template
//! serves every replica and scaling the StatefulSet (with the count beside it) reshards.
//!
//! - the ordinal comes from `SONDE_SHARD_ORDINAL` when set (a manifest can fill it from the pod
//!   label `apps.kubernetes.io/pod-index`), else from the hostname, which Kubernetes sets to the
//!   pod name `<statefulset>-<ordinal>`;
//! - the count comes from `auto/N`, else from `SONDE_SHARD_COUNT`, else — in a Kubernetes pod —
//!   from the StatefulSet's own `replicas`, read from the API with the pod's service account
//!   ([`statefulset`]) and followed, so `kubectl scale` or an autoscaler reshards without anyone
//!   editing the pod template.
//!
//! Ordinal `k` (0-based, as Kubernetes counts) is shard `k+1` of N (1-based, as sonde counts).

pub mod statefulset;

use crate::shard::Shard;

/// What `--shard` (or `agent: {shard:}`) asks for, once the environment is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// `I/N`, or `auto` whose count was given: known now and for good.
    Fixed(Shard),
    /// `auto` without a count, in a Kubernetes pod: shard `ordinal + 1` of whatever the
    /// StatefulSet `name`'s `replicas` is, read at start and followed while running.
    StatefulSet { ordinal: u32, name: String },
}

impl ShardSpec {
    /// The shard, when it does not depend on the Kubernetes API.
    pub fn fixed(&self) -> Option<Shard> {
        match self {
            ShardSpec::Fixed(s) => Some(*s),
            ShardSpec::StatefulSet { .. } => None,
        }
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardSpec::Fixed(s) => s.fmt(f),
            ShardSpec::StatefulSet { ordinal, name } => {
                write!(f, "{} of StatefulSet {name}'s replicas", ordinal + 1)
            }
        }
    }
}

/// Environment variable with the pod's ordinal; overrides the hostname.
pub const ORDINAL_ENV: &str = "SONDE_SHARD_ORDINAL";
/// Environment variable with the number of shards, for a plain `auto`.
pub const COUNT_ENV: &str = "SONDE_SHARD_COUNT";
/// Environment variable naming the StatefulSet, when the pod name does not (`<name>-<ordinal>`).
pub const STATEFULSET_ENV: &str = "SONDE_STATEFULSET";
/// Set in every Kubernetes pod; its presence is what "in a pod" means here.
pub const KUBERNETES_HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";

/// What `auto` resolves against; read from the process by [`Inputs::from_env`].
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub hostname: Option<String>,
    pub ordinal: Option<String>,
    pub count: Option<String>,
    pub statefulset: Option<String>,
    /// Running in a Kubernetes pod (its API is reachable with the service account).
    pub in_cluster: bool,
}

impl Inputs {
    /// An empty variable counts as unset (a downward-API label that does not exist is empty).
    pub fn from_env() -> Inputs {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Inputs {
            hostname: var("HOSTNAME").or_else(system_hostname),
            ordinal: var(ORDINAL_ENV),
            count: var(COUNT_ENV),
            statefulset: var(STATEFULSET_ENV),
            in_cluster: var(KUBERNETES_HOST_ENV).is_some(),
        }
    }
}

/// Parse a `--shard` value or `agent: {shard:}`: `I/N`, `auto` or `auto/N`.
pub fn parse(s: &str) -> Result<ShardSpec, String> {
    resolve(s, &Inputs::from_env())
}

/// [`parse`] with the environment given, for tests.
pub fn resolve(s: &str, env: &Inputs) -> Result<ShardSpec, String> {
    let s = s.trim();
    let count = match s.strip_prefix("auto") {
        None => return s.parse().map(ShardSpec::Fixed),
        Some("") => match env.count.clone() {
            Some(c) => c,
            None if env.in_cluster => return from_statefulset(env),
            None => return Err(format!("shard auto: the number of shards is unknown — set {COUNT_ENV} to the StatefulSet's replicas, write auto/N, or run in a Kubernetes pod whose service account may read its StatefulSet")),
        },
        Some(rest) => match rest.strip_prefix('/') {
            Some(n) => n.to_string(),
            None => return Err(format!("{s:?} is not a shard — expected I/N, auto or auto/N")),
        },
    };
    let count = parse_number(&count)
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("shard auto: {count:?} is not a number of shards — expected a whole number ≥ 1 (the StatefulSet's replicas)"))?;
    let ordinal = ordinal(env)?;
    if ordinal >= count {
        return Err(format!(
            "shard auto: this pod's ordinal is {ordinal} but there are only {count} shards (ordinals 0 to {}) — keep {COUNT_ENV} (or auto/N) equal to the StatefulSet's replicas",
            count - 1
        ));
    }
    format!("{}/{count}", ordinal + 1)
        .parse()
        .map(ShardSpec::Fixed)
}

/// `auto` in a pod with no count given: the StatefulSet is `SONDE_STATEFULSET`, else the pod
/// name without its ordinal.
fn from_statefulset(env: &Inputs) -> Result<ShardSpec, String> {
    let ordinal = ordinal(env)?;
    let name = match &env.statefulset {
        Some(n) => n.clone(),
        None => pod_name(env)
            .and_then(|pod| pod.rsplit_once('-'))
            .map(|(name, _)| name.to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                format!("shard auto: cannot tell the StatefulSet from the hostname {:?} — set {STATEFULSET_ENV}", env.hostname.as_deref().unwrap_or(""))
            })?,
    };
    if !statefulset::is_object_name(&name) {
        return Err(format!(
            "shard auto: {name:?} is not a StatefulSet name — expected lowercase letters, digits, '-' and '.'"
        ));
    }
    Ok(ShardSpec::StatefulSet { ordinal, name })
}

/// The pod name: the hostname's first label (a FQDN such as web-0.web.ns.svc counts by it).
fn pod_name(env: &Inputs) -> Option<&str> {
    env.hostname.as_deref()?.split('.').next()
}

/// The pod's 0-based ordinal: `SONDE_SHARD_ORDINAL`, else the hostname's `-N` suffix.
fn ordinal(env: &Inputs) -> Result<u32, String> {
    if let Some(o) = &env.ordinal {
        return parse_number(o).ok_or_else(|| {
            format!(
                "shard auto: {ORDINAL_ENV}={o:?} is not an ordinal — expected a whole number ≥ 0"
            )
        });
    }
    let host = env.hostname.as_deref().unwrap_or("");
    let pod = pod_name(env).unwrap_or("");
    pod.rsplit_once('-')
        .and_then(|(name, n)| parse_number(n).filter(|_| !name.is_empty()))
        .ok_or_else(|| {
            format!("shard auto: the hostname {host:?} is not a StatefulSet pod name (<name>-<ordinal>) — run in a StatefulSet, set {ORDINAL_ENV}, or give --shard I/N")
        })
}

/// Plain decimal digits only: no sign, no spaces, no `0x`.
fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(hostname: &str, ordinal: Option<&str>, count: Option<&str>) -> Inputs {
        Inputs {
            hostname: Some(hostname.into()),
            ordinal: ordinal.map(Into::into),
            count: count.map(Into::into),
            ..Inputs::default()
        }
    }

    fn shard(index: u32, count: u32) -> ShardSpec {
        ShardSpec::Fixed(Shard { index, count })
    }

    #[test]
    fn the_pod_ordinal_becomes_the_one_based_shard() {
        let e = env("sonde-eu-west-0", None, Some("3"));
        assert_eq!(resolve("auto", &e), Ok(shard(1, 3)));
        let e = env("sonde-eu-west-2", None, Some("3"));
        assert_eq!(resolve("auto", &e), Ok(shard(3, 3)));
        // The count in the value wins over the environment's.
        assert_eq!(resolve("auto/5", &e), Ok(shard(3, 5)));
        // A fully qualified pod hostname counts by its first label.
        let e = env("sonde-1.sonde.probes.svc.cluster.local", None, Some("2"));
        assert_eq!(resolve("auto", &e), Ok(shard(2, 2)));
    }

    #[test]
    fn the_ordinal_variable_overrides_the_hostname() {
        let e = env("not-a-pod", Some("4"), Some("6"));
        assert_eq!(resolve("auto", &e), Ok(shard(5, 6)));
        let e = env("sonde-0", Some("-1"), Some("6"));
        let err = resolve("auto", &e).unwrap_err();
        assert!(err.contains("SONDE_SHARD_ORDINAL=\"-1\""), "{err}");
    }

    #[test]
    fn plain_shards_still_parse_as_before() {
        let e = Inputs::default();
        assert_eq!(resolve("2/3", &e), Ok(shard(2, 3)));
        assert!(resolve("4/3", &e).unwrap_err().contains("numbered 1 to 3"));
    }

    #[test]
    fn each_mistake_says_what_to_set() {
        let cases = [
            // (value, hostname, ordinal env, count env, expected part of the error)
            ("auto", "sonde-0", None, None, "set SONDE_SHARD_COUNT"),
            (
                "auto",
                "laptop",
                None,
                Some("3"),
                "not a StatefulSet pod name",
            ),
            (
                "auto",
                "sonde-x",
                None,
                Some("3"),
                "not a StatefulSet pod name",
            ),
            ("auto", "-3", None, Some("4"), "not a StatefulSet pod name"),
            (
                "auto",
                "sonde-+1",
                None,
                Some("3"),
                "not a StatefulSet pod name",
            ),
            (
                "auto",
                "sonde-3",
                None,
                Some("3"),
                "ordinal is 3 but there are only 3",
            ),
            ("auto", "sonde-0", None, Some("0"), "not a number of shards"),
            (
                "auto",
                "sonde-0",
                None,
                Some("three"),
                "not a number of shards",
            ),
            ("auto/", "sonde-0", None, None, "not a number of shards"),
            (
                "automatic",
                "sonde-0",
                None,
                Some("3"),
                "expected I/N, auto or auto/N",
            ),
            (
                "auto/99999",
                "sonde-0",
                None,
                None,
                "shard count must be 1 to",
            ),
        ];
        for (value, host, ord, count, want) in cases {
            let err = resolve(value, &env(host, ord, count)).unwrap_err();
            assert!(err.contains(want), "{value} on {host}: {err}");
        }
    }

    #[test]
    fn in_a_pod_without_a_count_the_statefulset_gives_it() {
        let pod = |host: &str, sts: Option<&str>, count: Option<&str>| Inputs {
            in_cluster: true,
            statefulset: sts.map(Into::into),
            ..env(host, None, count)
        };
        let want = |ordinal, name: &str| {
            Ok(ShardSpec::StatefulSet {
                ordinal,
                name: name.into(),
            })
        };
        assert_eq!(
            resolve("auto", &pod("sonde-ap-east-2", None, None)),
            want(2, "sonde-ap-east")
        );
        assert_eq!(
            resolve("auto", &pod("sonde-1.sonde.probes.svc", None, None)),
            want(1, "sonde")
        );
        assert_eq!(
            resolve("auto", &pod("web-0", Some("probers"), None)),
            want(0, "probers")
        );
        // A count given still wins: the API is not asked.
        assert_eq!(
            resolve("auto", &pod("sonde-1", None, Some("3"))),
            Ok(shard(2, 3))
        );
        assert_eq!(
            resolve("auto/4", &pod("sonde-1", None, None)),
            Ok(shard(2, 4))
        );
        let err = resolve("auto", &pod("sonde-0", Some("Bad/Name"), None)).unwrap_err();
        assert!(err.contains("not a StatefulSet name"), "{err}");
        let err = resolve("auto", &pod("laptop", None, None)).unwrap_err();
        assert!(err.contains("not a StatefulSet pod name"), "{err}");
        // Outside a pod the message says every way out.
        let err = resolve("auto", &env("sonde-0", None, None)).unwrap_err();
        assert!(err.contains("Kubernetes pod"), "{err}");
    }
}
