//! The agent settings document: a YAML file whose only top-level key is `agent:`, loaded beside
//! the scenario files. It holds what belongs to one agent rather than to a scenario — its region,
//! its shard, where it pushes metrics (`remote_write:`) — so a deployment can ship
//! `/etc/sonde/agent.yaml` per host while every agent shares the scenario files (or the URL they
//! come from). Command-line flags win over it.
//!
//! ```yaml
//! agent:
//!   region: eu-west
//!   shard: 1/2
//!   remote_write:
//!     url: https://metrics.example/api/v1/push
//!     bearer_token_file: /etc/sonde/push-token
//!     external_labels: {agent: eu-west-1}
//!     send_interval: 15s
//!     queue_capacity: 100000
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::shard_auto::ShardSpec;

/// What an agent settings document says; everything optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentSettings {
    pub region: Option<String>,
    /// One of an HA pair (or more) in the region: the `replica` label of every series.
    pub replica: Option<String>,
    pub shard: Option<ShardSpec>,
    pub remote_write: Option<RemoteWrite>,
    /// `alerting:`: where alerts go, and defaults for `alert:` blocks ([`super::alert`]).
    pub alerting: Option<std::sync::Arc<super::alert::AlertingSettings>>,
    /// The file the settings came from, for messages.
    pub defined_in: Option<String>,
}

/// `remote_write:`: push every series to a Prometheus remote_write 1.0 receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteWrite {
    pub url: url::Url,
    pub basic_auth: Option<(String, String)>,
    pub bearer_token: Option<String>,
    pub tls: RemoteTls,
    /// Added to every pushed series (after the series' own labels, which win).
    pub external_labels: Vec<(String, String)>,
    /// How often the series are sampled and pushed.
    pub send_interval: Duration,
    /// Samples held while the receiver is away; beyond it the oldest are dropped and counted.
    pub queue_capacity: usize,
    /// Samples per request at most.
    pub max_samples_per_send: usize,
    /// Deadline of one push request.
    pub timeout: Duration,
}

/// TLS towards the receiver, as PEM read at load.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

pub const DEFAULT_SEND_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;
pub const DEFAULT_MAX_SAMPLES_PER_SEND: usize = 2_000;
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    agent: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    region: Option<String>,
    replica: Option<String>,
    shard: Option<String>,
    remote_write: Option<RawRemoteWrite>,
    alerting: Option<serde_norway::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteWrite {
    url: String,
    basic_auth: Option<RawBasicAuth>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    tls_config: Option<RawTls>,
    #[serde(default)]
    external_labels: std::collections::BTreeMap<String, String>,
    send_interval: Option<String>,
    queue_capacity: Option<usize>,
    max_samples_per_send: Option<usize>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password: Option<String>,
    password_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

/// Whether `text` is an agent settings document (top-level `agent:`), to route it here instead
/// of to the scenario compiler. Cheap: only the first key that starts a line is looked at.
pub fn is_agent_document(text: &str) -> bool {
    text.lines()
        .map(str::trim_end)
        .find(|l| !l.is_empty() && !l.starts_with('#') && l != &"---")
        .is_some_and(|l| l.starts_with("agent:"))
}

/// Parse one agent settings document; `dir` resolves relative file paths.
pub fn parse(origin: &str, dir: &Path, text: &str) -> Result<AgentSettings, ConfigError> {
    let err = |line: usize, column: usize, message: String| ConfigError {
        file: origin.to_string(),
        line,
        column,
        message,
    };
    let doc: Doc = serde_norway::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        err(
            line,
            column,
            format!(
                "{} — expected agent settings: `agent:` with region, replica, shard, remote_write, alerting",
                e.to_string().split(" at line ").next().unwrap_or_default()
            ),
        )
    })?;
    // Values are checked here, positions named by key: serde has the structure right already.
    let at = |key: &str| {
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{key}:")))
            .map_or(1, |i| i + 1);
        move |message: String| err(line, 1, message)
    };
    let raw = doc.agent;
    let mut out = AgentSettings {
        defined_in: Some(origin.to_string()),
        ..Default::default()
    };
    if let Some(r) = raw.region {
        if !crate::names::valid_region(&r) {
            return Err(at("region")(format!(
                "invalid region {r:?} — expected a name of a-z, 0-9, _ and -"
            )));
        }
        out.region = Some(r);
    }
    if let Some(r) = raw.replica {
        out.replica = Some(crate::names::parse_replica(&r).map_err(at("replica"))?);
    }
    if let Some(s) = raw.shard {
        out.shard = Some(crate::shard_auto::parse(&s).map_err(at("shard"))?);
    }
    if let Some(rw) = raw.remote_write {
        out.remote_write = Some(remote_write(rw, dir, &at)?);
    }
    if let Some(a) = raw.alerting {
        let settings = super::alert::parse_settings(a, dir).map_err(at("alerting"))?;
        out.alerting = Some(std::sync::Arc::new(settings));
    }
    Ok(out)
}

fn remote_write<F: Fn(String) -> ConfigError>(
    rw: RawRemoteWrite,
    dir: &Path,
    at: &impl Fn(&str) -> F,
) -> Result<RemoteWrite, ConfigError> {
    let url = url::Url::parse(&rw.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            at("url")(format!(
                "invalid remote_write url {:?} — expected http:// or https:// with a host",
                crate::redact::text(&rw.url)
            ))
        })?;
    let read = |key: &str, p: &str| -> Result<Vec<u8>, ConfigError> {
        let path = dir.join(p);
        std::fs::read(&path).map_err(|e| {
            at(key)(format!(
                "cannot read {}: {e} — expected a readable file",
                path.display()
            ))
        })
    };
    let text = |key: &str, p: &str| -> Result<String, ConfigError> {
        let b = read(key, p)?;
        String::from_utf8(b)
            .map(|s| s.trim().to_string())
            .map_err(|_| at(key)(format!("{p} is not UTF-8 text — expected a token")))
    };
    let duration = |key: &str, v: Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(&s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                at(key)(format!(
                    "invalid {key} {s:?} — expected a duration such as 15s or 1m"
                ))
            }),
    };
    let basic_auth = match rw.basic_auth {
        None => None,
        Some(b) => {
            let password = match (b.password, b.password_file) {
                (Some(p), None) => p,
                (None, Some(f)) => text("password_file", &f)?,
                (None, None) => String::new(),
                (Some(_), Some(_)) => {
                    return Err(at("password_file")(
                        "both password and password_file — expected one of them".into(),
                    ))
                }
            };
            Some((b.username, password))
        }
    };
    let bearer_token = match (rw.bearer_token, rw.bearer_token_file) {
        (Some(t), None) => Some(t),
        (None, Some(f)) => Some(text("bearer_token_file", &f)?),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(at("bearer_token_file")(
                "both bearer_token and bearer_token_file — expected one of them".into(),
            ))
        }
    };
    if basic_auth.is_some() && bearer_token.is_some() {
        return Err(at("basic_auth")(
            "both basic_auth and a bearer token — expected one way to authenticate".into(),
        ));
    }
    let mut tls = RemoteTls::default();
    if let Some(t) = rw.tls_config {
        tls.ca_pem = t.ca_file.map(|f| read("ca_file", &f)).transpose()?;
        tls.cert_pem = t.cert_file.map(|f| read("cert_file", &f)).transpose()?;
        tls.key_pem = t.key_file.map(|f| read("key_file", &f)).transpose()?;
        tls.insecure_skip_verify = t.insecure_skip_verify;
        if tls.cert_pem.is_some() != tls.key_pem.is_some() {
            return Err(at("tls_config")(
                "cert_file without key_file (or the reverse) — expected both for a client certificate"
                    .into(),
            ));
        }
    }
    for name in rw.external_labels.keys() {
        if !crate::names::valid_user_label_name(name) {
            return Err(at("external_labels")(format!(
                "invalid label name {name:?} — expected [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
            )));
        }
    }
    let queue_capacity = rw.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
    if queue_capacity == 0 {
        return Err(at("queue_capacity")(
            "queue_capacity 0 — expected at least 1 sample".into(),
        ));
    }
    let max_samples_per_send = rw
        .max_samples_per_send
        .unwrap_or(DEFAULT_MAX_SAMPLES_PER_SEND);
    if max_samples_per_send == 0 {
        return Err(at("max_samples_per_send")(
            "max_samples_per_send 0 — expected at least 1".into(),
        ));
    }
    Ok(RemoteWrite {
        url,
        basic_auth,
        bearer_token,
        tls,
        external_labels: rw.external_labels.into_iter().collect(),
        send_interval: duration("send_interval", rw.send_interval, DEFAULT_SEND_INTERVAL)?,
        queue_capacity,
        max_samples_per_send,
        timeout: duration("timeout", rw.timeout, DEFAULT_PUSH_TIMEOUT)?,
    })
}

/// Merge the documents of one load: a key set twice, in two files, is an error naming both.
pub fn merge(into: &mut AgentSettings, next: AgentSettings) -> Result<(), ConfigError> {
    let here = next.defined_in.clone().unwrap_or_default();
    let there = into.defined_in.clone().unwrap_or_default();
    let twice = |key: &str| ConfigError {
        file: here.clone(),
        line: 0,
        column: 0,
        message: format!(
            "agent `{key}` is set again (also in {there}) — expected each agent setting in one file"
        ),
    };
    if next.region.is_some() {
        if into.region.is_some() {
            return Err(twice("region"));
        }
        into.region = next.region;
    }
    if next.replica.is_some() {
        if into.replica.is_some() {
            return Err(twice("replica"));
        }
        into.replica = next.replica;
    }
    if next.shard.is_some() {
        if into.shard.is_some() {
            return Err(twice("shard"));
        }
        into.shard = next.shard;
    }
    if next.remote_write.is_some() {
        if into.remote_write.is_some() {
            return Err(twice("remote_write"));
        }
        into.remote_write = next.remote_write;
    }
    if next.alerting.is_some() {
        if into.alerting.is_some() {
            return Err(twice("alerting"));
        }
        into.alerting = next.alerting;
    }
    if into.defined_in.is_none() {
        into.defined_in = next.defined_in;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<AgentSettings, ConfigError> {
        parse("agent.yaml", Path::new("."), text)
    }

    #[test]
    fn a_full_document_parses_with_defaults() {
        let a = p("agent:\n  region: eu-west\n  shard: 2/3\n  remote_write:\n    url: http://127.0.0.1:9090/api/v1/write\n    external_labels: {agent: a1}\n    queue_capacity: 50\n").unwrap();
        assert_eq!(a.region.as_deref(), Some("eu-west"));
        assert_eq!(
            a.shard,
            Some(ShardSpec::Fixed(crate::shard::Shard { index: 2, count: 3 }))
        );
        let rw = a.remote_write.unwrap();
        assert_eq!(rw.queue_capacity, 50);
        assert_eq!(rw.send_interval, DEFAULT_SEND_INTERVAL);
        assert_eq!(rw.external_labels, vec![("agent".into(), "a1".into())]);
        assert!(is_agent_document("# settings\n---\nagent:\n  region: x\n"));
        assert!(!is_agent_document("scenario: agent\n"));
    }

    #[test]
    fn bad_values_are_located_and_say_what_is_expected() {
        let cases = [
            ("agent:\n  region: EU West\n", 2, "invalid region"),
            ("agent:\n  shard: 4/3\n", 2, "numbered 1 to 3"),
            ("agent:\n  regoin: eu\n", 2, "unknown field `regoin`"),
            (
                "agent:\n  remote_write:\n    url: ftp://x/\n",
                3,
                "expected http:// or https://",
            ),
            (
                "agent:\n  remote_write:\n    url: http://127.0.0.1/\n    send_interval: soon\n",
                4,
                "invalid send_interval",
            ),
            (
                "agent:\n  remote_write:\n    url: http://127.0.0.1/\n    queue_capacity: 0\n",
                4,
                "at least 1 sample",
            ),
        ];
        for (text, line, want) in cases {
            let e = p(text).unwrap_err();
            assert!(e.message.contains(want), "{text}: {e}");
            assert!(e.message.contains(" — expected"), "{e}");
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }

    #[test]
    fn a_replica_is_a_name_given_once() {
        let a = p("agent:\n  region: eu\n  replica: b\n").unwrap();
        assert_eq!(a.replica.as_deref(), Some("b"));
        let e = p("agent:\n  region: eu\n  replica: B 2\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("expected a replica name"), "{e}");
        let mut a = p("agent:\n  replica: a\n").unwrap();
        let mut b = p("agent:\n  replica: b\n").unwrap();
        b.defined_in = Some("b.yaml".into());
        assert!(merge(&mut a, b)
            .unwrap_err()
            .to_string()
            .contains("`replica`"));
    }

    #[test]
    fn a_setting_given_in_two_files_is_refused() {
        let mut a = p("agent:\n  region: eu\n").unwrap();
        let mut b = p("agent:\n  region: us\n").unwrap();
        b.defined_in = Some("b.yaml".into());
        let e = merge(&mut a, b).unwrap_err();
        assert!(e.to_string().contains("also in agent.yaml"), "{e}");
    }
}
