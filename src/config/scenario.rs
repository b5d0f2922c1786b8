//! Scenarios as the engine runs them: what the configuration loader produces from YAML once it
//! has checked everything, rendered templates, compiled regexes and built probe requests.
//! Nothing here is parsed again while probing — except the steps whose templates use captures
//! or per-run functions ([`StepBody::PerRun`]), which are rendered and built for every run by the
//! loader's own step builder.

use std::sync::Arc;
use std::time::Duration;

use sonde_probes::dns::DnsRequest;
use sonde_probes::http::HttpRequest;
use sonde_probes::icmp::IcmpRequest;
use sonde_probes::tcp::TcpRequest;
use sonde_probes::tls::TlsRequest;
use sonde_probes::ws::{Payload, WsConnectRequest};

use crate::config::matcher::Matcher;
use crate::config::packed::Packed;

/// A capture's value, as templates see it.
pub type Captured = (String, serde_json::Value);

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
    /// `group:`: where the status page lists the scenario (else its first tag, else its region
    /// selector, else "other").
    pub group: Option<String>,
    /// `public: true`: shown on the public status page.
    pub public: bool,
    /// Extra metric labels, sorted by name, names checked against the reserved ones.
    pub labels: Vec<(String, String)>,
    /// Run before `steps`: every run, or once per connection life when `persistent`.
    pub setup: Vec<Step>,
    pub steps: Vec<Step>,
    /// Run after `steps` whatever happened (persistent: when the session ends).
    pub teardown: Vec<Step>,
    /// `session: persistent`: connections (and setup's captures) live across runs.
    pub persistent: bool,
    /// WebSocket ping on connections idle this long.
    pub heartbeat: Option<std::time::Duration>,
    /// HTTP steps of a run share a cookie jar.
    pub cookies: bool,
    /// HTTP steps of a run reuse kept-alive connections.
    pub reuse_connections: bool,
    /// Changes whenever anything that affects a run changes (definition, rendered templates,
    /// region). A reload keeps the running state of scenarios whose fingerprint is unchanged.
    pub fingerprint: u64,
    /// The `alert:` block, as written (defaults apply when used). Boxed: few scenarios have
    /// one, and inline it took 192 of every scenario's 512 bytes.
    pub alert: Option<Box<crate::config::alert::AlertSpec>>,
    /// The scenario's definition as written, secrets redacted, for `/config`.
    ///
    /// Kept as compact JSON text, compressed: as a `serde_json::Value` tree it took ten times
    /// the memory (12 KB for an IM scenario), for a page that is rarely read.
    pub redacted_json: Packed,
    /// Secret values (from `env` references and secret keys), longest first: replaced by
    /// `<redacted>` wherever they appear in traces and logs.
    pub secrets: Vec<String>,
}

impl Scenario {
    /// The scenario as written, secrets redacted (`/config`).
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::from_str(&self.redacted_json.text()).unwrap_or(serde_json::Value::Null)
    }

    /// Every step: setup, steps, teardown, in that order.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.setup.iter().chain(&self.steps).chain(&self.teardown)
    }

    /// `text` with every secret value replaced, then every URL userinfo and credential-looking
    /// parameter ([`crate::redact::with_secrets`]).
    pub fn redact_text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        crate::redact::with_secrets(text, &crate::redact::merge(&[&self.secrets]))
    }

    /// Every string (and object key) of `v` redacted as by [`Self::redact_text`].
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        crate::redact::json_with_secrets(v, &crate::redact::merge(&[&self.secrets]));
    }
}

/// One step of a scenario.
#[derive(Debug)]
pub struct Step {
    /// Unique within the scenario; the `step` label.
    pub name: String,
    /// The step kind as written in YAML (`http`, `ws.connect`…).
    pub kind: &'static str,
    /// Per-step deadline, within the scenario's.
    pub timeout: Option<Duration>,
    /// Boxed: few steps retry, and inline it took 40 bytes of every step.
    pub retry: Option<Box<Retry>>,
    pub body: StepBody,
}

impl Step {
    /// The step as built at load; `None` for a step built when it runs.
    pub fn built(&self) -> Option<&Built> {
        match &self.body {
            StepBody::Built(b) => Some(b),
            StepBody::PerRun(_) | StepBody::OnDemand(_) => None,
        }
    }
}

/// A step is built once at load, or for every run when its templates use captures or per-run
/// functions, or (a persistent session's setup and teardown) each time it runs.
#[derive(Debug)]
pub enum StepBody {
    Built(Built),
    PerRun(Dynamic),
    OnDemand(OnDemand),
}

/// What a built step does and checks.
#[derive(Debug)]
pub struct Built {
    pub action: Action,
    /// Expectations evaluated on the outcome after the probe's own checks passed.
    pub expect: PostChecks,
    /// Values taken from the outcome for later steps' templates, in order (a boxed slice: it
    /// never grows after the build, and 8 bytes of every step are saved).
    pub captures: Box<[Capture]>,
}

/// `retry:` — attempts until the step passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts at most (the first included); `None`: until it passes (`until_pass`).
    pub attempts: Option<u32>,
    /// Pause between attempts.
    pub every: Duration,
    /// Give up this long after the first attempt started (bounded by the step's deadline).
    pub within: Option<Duration>,
}

/// What a step does: one variant per step kind (the `ws.*` kinds share one).
#[derive(Debug)]
pub enum Action {
    Http(Box<HttpRequest>),
    Tcp(Box<TcpRequest>),
    Dns(Box<DnsRequest>),
    Icmp(Box<IcmpRequest>),
    Tls(Box<TlsRequest>),
    Sleep(Duration),
    Ws(WsAction),
    Mqtt(crate::config::kinds::mqtt::MqttAction),
    /// The `tcp.*` steps of long-lived raw TCP/TLS connections.
    TcpConn(crate::config::kinds::tcp_conn::TcpConnAction),
}

/// The `ws.*` steps, on a named connection of the run.
#[derive(Debug)]
pub enum WsAction {
    Connect(Box<WsConnect>),
    Send(Box<WsSend>),
    Expect(Box<WsExpect>),
    Close(Box<WsClose>),
}

/// Builds the step for one run from the captures so far (and the secrets it rendered in).
pub type BuildFn = dyn Fn(&[Captured]) -> Result<(Built, Vec<String>), String> + Send + Sync;

/// A step kept as written, rendered and built for every run.
pub struct Dynamic {
    pub build: Box<BuildFn>,
}

/// Builds a step from its rendered text: one per scenario, shared by its [`OnDemand`] steps.
pub type OnDemandFn = dyn Fn(&Packed) -> Result<Built, String> + Send + Sync;

/// A persistent session's setup or teardown step, checked and built at load like any other but
/// kept as its rendered text (compressed with the load's scenario definitions) and built again
/// each time it runs. It runs once per connection, and built it took ~2 KB of every session
/// (10,000 sessions of a six-step login: compiled matchers, encoded frames, requests) against
/// ~0.2 KB as text, for a build of a few tens of microseconds per connection.
pub struct OnDemand {
    /// The step's place (`setup[0]`) and its tree, rendered at load, as JSON.
    pub text: Packed,
    pub build: Arc<OnDemandFn>,
}

impl OnDemand {
    pub fn build(&self) -> Result<Built, String> {
        (self.build)(&self.text)
    }
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDemand")
    }
}

impl std::fmt::Debug for Dynamic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dynamic")
    }
}

/// `ws.connect`: open a connection named `name`.
#[derive(Debug)]
pub struct WsConnect {
    pub name: String,
    pub request: WsConnectRequest,
}

/// `ws.send`: one frame on connection `on`.
#[derive(Debug)]
pub struct WsSend {
    pub on: String,
    pub payload: Payload,
}

/// `ws.expect`: wait for a frame matching `frame` on `on` (or, `negate`, for none to arrive).
#[derive(Debug)]
pub struct WsExpect {
    pub on: String,
    pub frame: FrameMatch,
    pub negate: bool,
    pub within: Option<Duration>,
}

/// `ws.close`.
#[derive(Debug)]
pub struct WsClose {
    pub on: String,
    pub code: u16,
    pub reason: String,
}

/// What a frame must look like; every part given must hold.
#[derive(Clone, Debug, Default)]
pub struct FrameMatch {
    pub json: Vec<JsonCheck>,
    pub regex: Option<regex::Regex>,
    pub equals: Option<String>,
    pub contains: Option<String>,
}

/// A JSONPath (RFC 9535) and what its value must be.
#[derive(Clone, Debug)]
pub struct JsonCheck {
    pub path_text: String,
    /// Shared by every check and capture of the same path ([`crate::config::flow::json_path`]).
    pub path: Arc<serde_json_path::JsonPath>,
    pub matcher: Matcher,
}

/// One capture: a name and where its value comes from.
#[derive(Clone, Debug)]
pub struct Capture {
    pub name: String,
    pub source: Source,
}

#[derive(Clone, Debug)]
pub enum Source {
    /// JSONPath over the body (http) or frame (ws).
    Json(String, Arc<serde_json_path::JsonPath>),
    /// A regex over the body or frame; the group to take.
    Regex(regex::Regex, Group),
    Header(String),
    Status,
    Cookie(String),
    Body,
    Frame,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Group {
    Index(usize),
    Name(String),
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
///
/// Boxed whole, and only when any is set: most steps have none, and inline they took 32 bytes
/// of every step (10,000 sessions of eight steps hold 80,000 steps).
#[derive(Clone, Debug, Default)]
pub struct PostChecks(Option<Box<Checks>>);

/// What [`PostChecks`] holds when any is set.
#[derive(Clone, Debug)]
struct Checks {
    /// The bounds, when any is set: boxed too, since JSON checks alone are the common case and
    /// the bounds are 128 bytes.
    bounds: Option<Box<TimeBounds>>,
    /// JSONPath checks on the body (http) or the matched frame (ws.expect).
    json: Box<[JsonCheck]>,
}

/// The bounds of [`PostChecks`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TimeBounds {
    duration: Bounds,
    cert_expires_in: Bounds,
}

/// What an unset bound reads as.
static NO_BOUNDS: Bounds = Bounds {
    lt: None,
    le: None,
    gt: None,
    ge: None,
};

impl PostChecks {
    pub fn new(duration: Bounds, cert_expires_in: Bounds, json: Vec<JsonCheck>) -> PostChecks {
        let b = TimeBounds {
            duration,
            cert_expires_in,
        };
        let bounds = (b != TimeBounds::default()).then(|| Box::new(b));
        if bounds.is_none() && json.is_empty() {
            return PostChecks(None);
        }
        PostChecks(Some(Box::new(Checks {
            bounds,
            json: json.into_boxed_slice(),
        })))
    }

    fn bounds(&self) -> Option<&TimeBounds> {
        self.0.as_ref()?.bounds.as_deref()
    }

    /// On the step's duration.
    pub fn duration(&self) -> &Bounds {
        self.bounds().map_or(&NO_BOUNDS, |b| &b.duration)
    }

    /// On the time left until the earliest `not_after` of the presented chain
    /// (`cert_expires_in`).
    pub fn cert_expires_in(&self) -> &Bounds {
        self.bounds().map_or(&NO_BOUNDS, |b| &b.cert_expires_in)
    }

    /// JSONPath checks on the body (http) or the matched frame (ws.expect).
    pub fn json(&self) -> &[JsonCheck] {
        self.0.as_ref().map_or(&[], |c| &c.json)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Bounds, PostChecks, Step};

    /// Every scenario holds its steps inline (80,000 for 10,000 eight-step sessions), so the
    /// rarely-set parts (retry, duration and certificate bounds) are boxed; set, they read back.
    #[test]
    fn steps_stay_small_and_bounds_read_back() {
        let size = std::mem::size_of::<Step>();
        assert!(size <= 120, "a step takes {size} bytes");
        let b = Bounds {
            lt: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let none = Bounds::default();
        let p = PostChecks::new(b, none, Vec::new());
        assert_eq!((*p.duration(), *p.cert_expires_in()), (b, none));
        let p = PostChecks::new(none, b, Vec::new());
        assert_eq!((*p.duration(), *p.cert_expires_in()), (none, b));
        let p = PostChecks::new(none, none, Vec::new());
        assert!(p.0.is_none());
        assert_eq!((*p.duration(), *p.cert_expires_in()), (none, none));
    }

    /// JSON checks and bounds read back whichever of them is set.
    #[test]
    fn json_checks_and_bounds_read_back_alone_or_together() {
        let yaml = r#"
scenario: t
steps:
  - {http: {url: "http://127.0.0.1:1/"}}
  - {http: {url: "http://127.0.0.1:1/"}, expect: {json: {"$.a": 1, "$.b": 2}}}
  - {http: {url: "http://127.0.0.1:1/"}, expect: {json: {"$.a": 1}, duration: {lt: 2s}}}
"#;
        let cfg = crate::config::load_str("t.yaml", yaml, &Default::default()).unwrap();
        let read = |i: usize| {
            let e = &cfg.scenarios[0].steps[i].built().unwrap().expect;
            let paths: Vec<&str> = e.json().iter().map(|c| c.path_text.as_str()).collect();
            (paths.join(" "), e.duration().lt)
        };
        assert_eq!(read(0), (String::new(), None));
        assert_eq!(read(1), ("$.a $.b".to_string(), None));
        let lt = Some(Duration::from_secs(2));
        assert_eq!(read(2), ("$.a".to_string(), lt));
    }

    /// Of the built `ws.expect` (step 1) of each scenario of `yaml`: its JSON checks' length
    /// and capacity, and the first one's path.
    fn expects(yaml: &str) -> Vec<(usize, usize, Arc<serde_json_path::JsonPath>)> {
        let cfg = crate::config::load_str("t.yaml", yaml, &Default::default()).unwrap();
        cfg.scenarios
            .iter()
            .map(|sc| match sc.steps[1].built().map(|b| &b.action) {
                Some(super::Action::Ws(super::WsAction::Expect(e))) => {
                    let j = &e.frame.json;
                    (j.len(), j.capacity(), j[0].path.clone())
                }
                _ => panic!("not a built ws.expect: {:?}", sc.steps[1]),
            })
            .collect()
    }

    const TWO: &str = r#"
scenarios:
  - scenario: one
    interval: 10s
    steps:
      - {name: c, ws.connect: {as: a, url: "ws://127.0.0.1:1/x"}}
      - {name: e, ws.expect: {on: a, match: {json: {"$.op": ok}}, within: 1s}}
  - scenario: two
    interval: 10s
    steps:
      - {name: c, ws.connect: {as: a, url: "ws://127.0.0.1:1/x"}}
      - {name: e, ws.expect: {on: a, match: {json: {"$.op": ok}}, within: 1s}}
"#;

    /// A built `ws.expect` keeps its JSON checks at exact capacity (they live as long as the
    /// scenario).
    #[test]
    fn built_checks_keep_no_spare_room() {
        let e = expects(TWO);
        assert_eq!((e[0].0, e[0].1), (1, 1));
    }

    /// Scenarios checking the same JSONPath share its compiled form.
    #[test]
    fn a_json_path_is_compiled_once() {
        let e = expects(TWO);
        assert!(Arc::ptr_eq(&e[0].2, &e[1].2));
    }

    #[test]
    fn redaction_reaches_object_keys_and_values() {
        let secrets = ["hunter22"];
        let mut v = serde_json::json!({"hunter22": ["x hunter22 y", {"k": "hunter22"}], "n": 1});
        crate::redact::json_with_secrets(&mut v, &secrets);
        let r = crate::config::REDACTED;
        assert_eq!(
            v,
            serde_json::json!({r: [format!("x {r} y"), {"k": r}], "n": 1})
        );
    }
}
