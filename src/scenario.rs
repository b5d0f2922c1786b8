//! Scenarios as the engine runs them: what the configuration loader produces from YAML once it
//! has checked everything, rendered templates, compiled regexes and built probe requests.
//! Nothing here is parsed again while probing.

use std::sync::Arc;
use std::time::Duration;

use sonde_probes::dns::DnsRequest;
use sonde_probes::http::HttpRequest;
use sonde_probes::icmp::IcmpRequest;
use sonde_probes::tcp::TcpRequest;
use sonde_probes::tls::TlsRequest;

/// A loaded configuration: every scenario of every file, ready to schedule.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub scenarios: Vec<Arc<Scenario>>,
    /// The files (or `<built-in>`) the scenarios came from, in load order.
    pub sources: Vec<String>,
    /// The agent settings documents' content (region, shard, remote_write), merged.
    pub agent: crate::config::agent::AgentSettings,
}

/// One scenario, ready to run.
#[derive(Debug)]
pub struct Scenario {
    /// Unique across the configuration; the `scenario` label.
    pub name: String,
    /// `file:line:column` where the scenario is defined, for messages.
    pub defined_at: String,
    pub interval: Duration,
    /// Deadline of one whole run.
    pub timeout: Duration,
    /// Region selectors as written (`eu-west`, `!ap-east`); empty means everywhere.
    pub regions: Vec<String>,
    pub tags: Vec<String>,
    /// Extra metric labels, sorted by name, names checked against the reserved ones.
    pub labels: Vec<(String, String)>,
    pub steps: Vec<Step>,
    /// Changes whenever anything that affects a run changes (definition, rendered templates,
    /// region). A reload keeps the running state of scenarios whose fingerprint is unchanged.
    pub fingerprint: u64,
    /// The `alert:` block, as written (defaults apply when used).
    pub alert: Option<crate::config::alert::AlertSpec>,
    /// The scenario's definition as written, secrets redacted, for `/config`.
    pub redacted: serde_json::Value,
    /// Secret values (from `env` references and secret keys), longest first: replaced by
    /// `<redacted>` wherever they appear in traces and logs.
    pub secrets: Vec<String>,
}

impl Scenario {
    /// `text` with every secret value replaced.
    pub fn redact_text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = std::borrow::Cow::Owned(out.replace(s.as_str(), crate::config::REDACTED));
            }
        }
        out
    }

    /// Every string (and object key) of `v` with secret values replaced.
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        use serde_json::Value as J;
        if self.secrets.is_empty() {
            return;
        }
        match v {
            J::String(s) => {
                if let std::borrow::Cow::Owned(r) = self.redact_text(s) {
                    *s = r;
                }
            }
            J::Array(items) => items.iter_mut().for_each(|i| self.redact_json(i)),
            J::Object(m) => {
                *m = std::mem::take(m)
                    .into_iter()
                    .map(|(k, mut val)| {
                        self.redact_json(&mut val);
                        (self.redact_text(&k).into_owned(), val)
                    })
                    .collect();
            }
            _ => {}
        }
    }
}

/// One step of a scenario.
#[derive(Debug)]
pub struct Step {
    /// Unique within the scenario; the `step` label.
    pub name: String,
    /// Per-step deadline, within the scenario's.
    pub timeout: Option<Duration>,
    pub action: Action,
    /// Expectations evaluated on the outcome after the probe's own checks passed.
    pub expect: PostChecks,
}

/// What a step does.
#[derive(Debug)]
pub enum Action {
    Http(Box<HttpRequest>),
    Tcp(Box<TcpRequest>),
    Dns(Box<DnsRequest>),
    Icmp(Box<IcmpRequest>),
    Tls(Box<TlsRequest>),
}

impl Action {
    /// The step kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Http(_) => "http",
            Action::Tcp(_) => "tcp",
            Action::Dns(_) => "dns",
            Action::Icmp(_) => "icmp",
            Action::Tls(_) => "tls",
        }
    }
}

/// Bounds on a duration; every bound given must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    pub lt: Option<Duration>,
    pub le: Option<Duration>,
    pub gt: Option<Duration>,
    pub ge: Option<Duration>,
}

impl Bounds {
    pub fn is_empty(&self) -> bool {
        *self == Bounds::default()
    }
}

/// The expectations of an `expect:` block that are not the probe's own checks (status, headers
/// and body become the probe's checks at load time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostChecks {
    /// On the step's duration.
    pub duration: Bounds,
    /// On the time left until the earliest `not_after` of the presented chain (`cert_expires_in`).
    pub cert_expires_in: Bounds,
}
