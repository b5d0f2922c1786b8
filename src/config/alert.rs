//! Alerting configuration: a scenario's `alert:` block, and the agent's `alerting:` settings
//! (where alerts go: Alertmanagers, named notifiers, defaults for every `alert:` block).
//!
//! The `alert:` block is kept as written (every key optional) in [`AlertSpec`] and resolved
//! against the defaults when used ([`AlertSpec::resolve`]), so `sonde rules` and `serve` apply
//! the same defaults. Templates (`summary`, `description`, `runbook_url`) are rendered when an
//! alert fires, not at load, but their syntax and the variables they use are checked at load.
//! See `docs/scenario-format.md` ("Alerting").

use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use super::deser::deserialize_recovering;
use super::error::{FileErrors, Pos};
use super::locate::{index_path, key_path, PosIndex};
use super::units::{Dur, Ordered, Text};
use super::ConfigError;

/// What alert templates may use. `step`, `reason`, `error` and `latency` describe the run that
/// fired (or, for a resolve, the last failing run); `status` is `firing` or `resolved`.
pub const TEMPLATE_VARIABLES: [&str; 9] = [
    "scenario", "region", "step", "reason", "error", "latency", "severity", "status", "labels",
];

/// Labels sonde sets on every alert; `alert.labels` may not use them.
const ALERT_RESERVED_LABELS: [&str; 4] = ["alertname", "scenario", "region", "severity"];

pub const DEFAULT_AFTER: u32 = 3;
pub const DEFAULT_RESOLVE_AFTER: u32 = 2;
pub const DEFAULT_SEVERITY: &str = "warning";
pub const DEFAULT_SUMMARY: &str = "{{ scenario }} fails{% if region %} in {{ region }}{% endif %}";
pub const DEFAULT_DESCRIPTION: &str = "{% if step %}Step {{ step }} failed ({{ reason }}) after {{ latency }}: {{ error }}{% else %}The scenario's runs fail.{% endif %}";
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A scenario's `alert:` block as written (every key optional; see [`AlertSpec::resolve`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertSpec {
    pub after: Option<u32>,
    pub resolve_after: Option<u32>,
    pub severity: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub runbook_url: Option<String>,
    pub labels: Vec<(String, String)>,
    pub notify: Option<Vec<String>>,
    /// `regions: {min_failing: M}`: the generated Prometheus rule fires when M regions fail.
    pub min_failing_regions: Option<u32>,
    /// Where each `notify` name is written (`file`, position), to report unknown names once the
    /// agent settings are known.
    pub notify_at: Vec<(String, Pos)>,
}

/// An `alert:` block with the defaults applied: what the alerter and `sonde rules` use.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRule {
    pub after: u32,
    pub resolve_after: u32,
    pub severity: String,
    pub summary: String,
    pub description: String,
    pub runbook_url: Option<String>,
    /// Defaults' labels, then the block's (which win), sorted.
    pub labels: Vec<(String, String)>,
    pub notify: Vec<String>,
    pub min_failing_regions: Option<u32>,
}

impl AlertSpec {
    pub fn resolve(&self, d: &AlertDefaults) -> AlertRule {
        let mut labels: BTreeMap<String, String> = d.labels.iter().cloned().collect();
        labels.extend(self.labels.iter().cloned());
        AlertRule {
            after: self.after.or(d.after).unwrap_or(DEFAULT_AFTER),
            resolve_after: self
                .resolve_after
                .or(d.resolve_after)
                .unwrap_or(DEFAULT_RESOLVE_AFTER),
            severity: self
                .severity
                .clone()
                .or_else(|| d.severity.clone())
                .unwrap_or_else(|| DEFAULT_SEVERITY.into()),
            summary: self
                .summary
                .clone()
                .or_else(|| d.summary.clone())
                .unwrap_or_else(|| DEFAULT_SUMMARY.into()),
            description: self
                .description
                .clone()
                .or_else(|| d.description.clone())
                .unwrap_or_else(|| DEFAULT_DESCRIPTION.into()),
            runbook_url: self.runbook_url.clone().or_else(|| d.runbook_url.clone()),
            labels: labels.into_iter().collect(),
            notify: self
                .notify
                .clone()
                .or_else(|| d.notify.clone())
                .unwrap_or_default(),
            min_failing_regions: self.min_failing_regions,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertModel {
    after: Option<u32>,
    resolve_after: Option<u32>,
    severity: Option<Text>,
    summary: Option<String>,
    description: Option<String>,
    runbook_url: Option<String>,
    labels: Option<Ordered<Text>>,
    notify: Option<Vec<String>>,
    regions: Option<RegionsModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionsModel {
    min_failing: u32,
}

/// Check a template's syntax and variables; `Err` says what is wrong.
pub fn check_template(src: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    let t = env
        .template_from_str(src)
        .map_err(|e| {
            let why = e.to_string();
            let why = why.split(" (in <string>").next().unwrap_or_default().to_string();
            format!("invalid template {src:?}: {why} — expected a template such as \"{{{{ scenario }}}} fails\"")
        })?;
    let mut unknown: Vec<String> = t
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
        .collect();
    unknown.sort();
    if let Some(v) = unknown.first() {
        return Err(format!(
            "unknown template variable `{v}` — expected one of: {}",
            TEMPLATE_VARIABLES.join(", ")
        ));
    }
    Ok(())
}

/// Type and check a scenario's `alert:` block (at `path`). `None` after reporting errors.
pub fn scenario_alert(
    value: Value,
    path: &str,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> Option<AlertSpec> {
    let before = errors.len();
    let rec = deserialize_recovering::<AlertModel>(value, path, "`alert`", index, errors);
    let m = rec.value?;
    let p = |k: &str| key_path(path, k);
    let mut out = AlertSpec {
        after: m.after,
        resolve_after: m.resolve_after,
        severity: m.severity.map(|t| t.0),
        summary: m.summary,
        description: m.description,
        runbook_url: m.runbook_url,
        min_failing_regions: m.regions.map(|r| r.min_failing),
        ..Default::default()
    };
    for (k, v) in [("after", out.after), ("resolve_after", out.resolve_after)] {
        if v == Some(0) {
            errors.push(
                index.value(&p(k)),
                format!("`{k}` 0 — expected at least 1 run"),
            );
        }
    }
    if out.min_failing_regions == Some(0) {
        errors.push(
            index.value(&key_path(&p("regions"), "min_failing")),
            "`min_failing` 0 — expected at least 1 region",
        );
    }
    if let Some(s) = &out.severity {
        if s.is_empty() {
            errors.push(
                index.value(&p("severity")),
                "empty severity — expected a word such as page, warning or ticket",
            );
        }
    }
    for k in ["summary", "description", "runbook_url"] {
        let src = match k {
            "summary" => &out.summary,
            "description" => &out.description,
            _ => &out.runbook_url,
        };
        if let Some(Err(e)) = src.as_deref().map(check_template) {
            errors.push(index.value(&p(k)), e);
        }
    }
    for (k, v) in m.labels.map(|l| l.0).unwrap_or_default() {
        let at = index.key(&key_path(&p("labels"), &k));
        if !crate::names::valid_user_label_name(&k) {
            errors.push(
                at,
                format!("invalid label name `{k}` — expected letters, digits and _, not starting with a digit or __"),
            );
        } else if ALERT_RESERVED_LABELS.contains(&k.as_str()) {
            errors.push(
                at,
                format!("label name `{k}` is set by sonde on every alert — expected another name (use `severity:` for the severity)"),
            );
        } else {
            out.labels.push((k, v.0));
        }
    }
    out.labels.sort();
    if let Some(names) = m.notify {
        for (i, n) in names.iter().enumerate() {
            out.notify_at.push((
                errors.file.clone(),
                index.value(&index_path(&p("notify"), i)),
            ));
            if n.is_empty() {
                errors.push(
                    index.value(&index_path(&p("notify"), i)),
                    "empty notifier name — expected a name from `agent: {alerting: {notifiers:}}`",
                );
            }
        }
        out.notify = Some(names);
    }
    (errors.len() == before).then_some(out)
}

/// The agent's `alerting:` settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertingSettings {
    /// Alertmanager base URLs; alerts are POSTed to `{url}/api/v2/alerts` of each.
    pub alertmanagers: Vec<AlertmanagerTarget>,
    /// How often a firing alert is sent to the Alertmanagers again.
    pub resend_interval: Duration,
    /// Base of `generatorURL` (the scenario's API page); default `http://<--listen>`.
    pub external_url: Option<url::Url>,
    pub defaults: AlertDefaults,
    /// By name, in the order written.
    pub notifiers: Vec<Notifier>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlertmanagerTarget {
    pub url: url::Url,
    pub bearer_token: Option<String>,
    pub basic_auth: Option<(String, String)>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

/// Defaults for every `alert:` block (each key as in the block).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertDefaults {
    pub after: Option<u32>,
    pub resolve_after: Option<u32>,
    pub severity: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub runbook_url: Option<String>,
    pub labels: Vec<(String, String)>,
    pub notify: Option<Vec<String>>,
}

/// A notifier type (`type: wecom`): its name and how it reads its own keys at load, so a bad
/// key is a load error with its location. Each type registers itself from its own file in the
/// outputs room (`inventory::submit!` in `alert/notify/`), so configuration lists no types and
/// never uses the code that sends.
pub struct NotifierType {
    pub name: &'static str,
    /// Build the type's channel from its keys (the notifier's mapping without the shared keys).
    /// `dir` resolves relative `*_file` paths. Errors are whole sentences saying what was
    /// expected, and never contain a secret.
    pub parse: fn(Value, &Path) -> Result<ChannelBox, String>,
}

inventory::collect!(NotifierType);

/// A notifier's built channel, opaque here: only its type's code (which downcasts it) can send
/// with it or look inside. It holds webhook tokens, signing secrets and passwords.
pub type ChannelBox = Arc<dyn Any + Send + Sync>;

/// Every registered notifier type's name, sorted.
pub fn notifier_type_names() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<NotifierType>
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort_unstable();
    names
}

/// The notifier type named `name`, or an error listing the known ones.
pub fn notifier_type(name: &str) -> Result<&'static NotifierType, String> {
    inventory::iter::<NotifierType>
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            format!(
                "unknown type `{name}` — expected one of: {}",
                notifier_type_names().join(", ")
            )
        })
}

/// A named destination: the keys every type shares, and the type's own settings.
#[derive(Clone)]
pub struct Notifier {
    pub name: String,
    /// Its `type:` (the name of a registered [`NotifierType`]).
    pub kind: &'static str,
    /// Built by the type from its own keys; holds its secrets, so it is never printed.
    pub channel: ChannelBox,
    /// The type's keys as written, to tell whether a reload changed the notifier.
    pub spec: Value,
    /// Also send when the alert resolves.
    pub send_resolved: bool,
    /// Send again while the alert keeps firing; `None`: only once.
    pub repeat_interval: Option<Duration>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

/// Without the channel's settings: they hold webhook tokens, signing secrets and passwords.
impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("send_resolved", &self.send_resolved)
            .field("repeat_interval", &self.repeat_interval)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Notifier {
    fn eq(&self, o: &Self) -> bool {
        (
            &self.name,
            self.kind,
            &self.spec,
            self.send_resolved,
            self.repeat_interval,
            self.timeout,
            self.max_attempts,
        ) == (
            &o.name,
            o.kind,
            &o.spec,
            o.send_resolved,
            o.repeat_interval,
            o.timeout,
            o.max_attempts,
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    #[serde(default)]
    alertmanagers: Vec<RawAlertmanager>,
    resend_interval: Option<Dur>,
    external_url: Option<String>,
    defaults: Option<RawDefaults>,
    #[serde(default)]
    notifiers: Ordered<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    url: String,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    basic_auth: Option<RawBasicAuth>,
    timeout: Option<Dur>,
    max_attempts: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    after: Option<u32>,
    resolve_after: Option<u32>,
    severity: Option<String>,
    summary: Option<String>,
    description: Option<String>,
    runbook_url: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    notify: Option<Vec<String>>,
}

/// The keys every notifier type shares; the others belong to the type
/// ([`NotifierType::parse`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotifier {
    #[serde(rename = "type")]
    kind: String,
    send_resolved: Option<bool>,
    repeat_interval: Option<Dur>,
    timeout: Option<Dur>,
    max_attempts: Option<u32>,
}

const COMMON_NOTIFIER_KEYS: [&str; 5] = [
    "type",
    "send_resolved",
    "repeat_interval",
    "timeout",
    "max_attempts",
];

/// Split a notifier's mapping into the shared keys and its type's own.
fn split_notifier(v: Value) -> Result<(RawNotifier, Value), String> {
    let Value::Mapping(m) = v else {
        return Err("expected a mapping with `type:` and the type's keys".into());
    };
    let (common, own): (serde_norway::Mapping, serde_norway::Mapping) =
        m.into_iter().partition(|(k, _)| {
            k.as_str()
                .is_some_and(|k| COMMON_NOTIFIER_KEYS.contains(&k))
        });
    let raw: RawNotifier =
        serde_path_to_error::deserialize(Value::Mapping(common)).map_err(|e| {
            format!(
                "`{}`: {} — expected the keys every notifier has: {}",
                e.path(),
                e.inner(),
                COMMON_NOTIFIER_KEYS.join(", ")
            )
        })?;
    Ok((raw, Value::Mapping(own)))
}

fn http_url(s: &str, what: &str) -> Result<url::Url, String> {
    url::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            let shown = crate::redact::text(s);
            format!("invalid {what} {shown:?} — expected http:// or https:// with a host")
        })
}

fn read_text(dir: &Path, p: &str) -> Result<String, String> {
    let path = dir.join(p);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            format!(
                "cannot read {}: {e} — expected a readable text file",
                path.display()
            )
        })
}

fn one_of(
    what: &str,
    value: Option<String>,
    file: Option<String>,
    dir: &Path,
) -> Result<Option<String>, String> {
    match (value, file) {
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => read_text(dir, &f).map(Some),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!(
            "both `{what}` and `{what}_file` — expected one of them"
        )),
    }
}

/// Parse `agent: {alerting: …}`. Errors are whole messages; the caller locates them.
pub fn parse_settings(value: Value, dir: &Path) -> Result<AlertingSettings, String> {
    let raw: RawAlerting = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!(
            "in `alerting.{path}`: {} — expected alerting settings: alertmanagers, resend_interval, external_url, defaults, notifiers",
            e.inner()
        )
    })?;
    let mut out = AlertingSettings {
        resend_interval: raw.resend_interval.map_or(DEFAULT_RESEND_INTERVAL, |d| d.0),
        ..Default::default()
    };
    if out.resend_interval < Duration::from_secs(1) {
        return Err("`resend_interval` under 1s — expected at least 1s".into());
    }
    if let Some(u) = raw.external_url {
        out.external_url = Some(http_url(&u, "external_url")?);
    }
    for am in raw.alertmanagers {
        let bearer_token = one_of("bearer_token", am.bearer_token, am.bearer_token_file, dir)?;
        let timeout = am.timeout.map_or(DEFAULT_SEND_TIMEOUT, |d| d.0);
        if timeout.is_zero() {
            return Err("Alertmanager `timeout` 0s — expected a deadline above zero".into());
        }
        out.alertmanagers.push(AlertmanagerTarget {
            url: http_url(&am.url, "Alertmanager url")?,
            bearer_token,
            basic_auth: am.basic_auth.map(|b| (b.username, b.password)),
            timeout,
            max_attempts: am.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
        });
    }
    if let Some(d) = raw.defaults {
        for (k, v) in [("after", d.after), ("resolve_after", d.resolve_after)] {
            if v == Some(0) {
                return Err(format!("defaults `{k}` 0 — expected at least 1 run"));
            }
        }
        for t in [&d.summary, &d.description, &d.runbook_url]
            .into_iter()
            .flatten()
        {
            check_template(t).map_err(|e| format!("in `defaults`: {e}"))?;
        }
        for k in d.labels.keys() {
            if !crate::names::valid_user_label_name(k)
                || ALERT_RESERVED_LABELS.contains(&k.as_str())
            {
                return Err(format!(
                    "defaults label `{k}` — expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) other than {}",
                    ALERT_RESERVED_LABELS.join(", ")
                ));
            }
        }
        out.defaults = AlertDefaults {
            after: d.after,
            resolve_after: d.resolve_after,
            severity: d.severity,
            summary: d.summary,
            description: d.description,
            runbook_url: d.runbook_url,
            labels: d.labels.into_iter().collect(),
            notify: d.notify,
        };
    }
    for (name, n) in raw.notifiers.0 {
        let ctx = |e: String| format!("notifier `{name}`: {e}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(format!(
                "invalid notifier name {name:?} — expected 1 to 64 of A-Z a-z 0-9 _ - ."
            ));
        }
        let (n, own) = split_notifier(n).map_err(ctx)?;
        let kind = notifier_type(&n.kind).map_err(ctx)?;
        let channel = (kind.parse)(own.clone(), dir).map_err(ctx)?;
        let timeout = n.timeout.map_or(DEFAULT_SEND_TIMEOUT, |d| d.0);
        if timeout.is_zero() {
            return Err(ctx("`timeout` 0s — expected a deadline above zero".into()));
        }
        out.notifiers.push(Notifier {
            name,
            kind: kind.name,
            channel,
            spec: own,
            send_resolved: n.send_resolved.unwrap_or(true),
            repeat_interval: match n.repeat_interval {
                None => Some(DEFAULT_REPEAT_INTERVAL),
                Some(d) if d.0.is_zero() => None,
                Some(d) => Some(d.0.max(Duration::from_secs(1))),
            },
            timeout,
            max_attempts: n.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
        });
    }
    if let Some(names) = &out.defaults.notify {
        for n in names {
            if !out.notifiers.iter().any(|x| &x.name == n) {
                return Err(format!(
                    "defaults notify `{n}` is not a notifier — expected one of: {}",
                    notifier_names(&out)
                ));
            }
        }
    }
    Ok(out)
}

fn notifier_names(s: &AlertingSettings) -> String {
    if s.notifiers.is_empty() {
        return "(none defined)".into();
    }
    s.notifiers
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every `alert.notify` name must name a notifier of the agent settings — when some were loaded:
/// shared scenario files are checked (`sonde check scenarios/`) and turned into rules without
/// any agent's settings.
pub fn check_notify_names(config: &crate::config::scenario::Config) -> Vec<ConfigError> {
    let Some(settings) = config.agent.alerting.as_deref() else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for sc in &config.scenarios {
        let Some(spec) = &sc.alert else { continue };
        for (name, (file, pos)) in spec.notify.iter().flatten().zip(&spec.notify_at) {
            if !settings.notifiers.iter().any(|n| &n.name == name) {
                errors.push(ConfigError {
                    file: file.clone(),
                    line: pos.line,
                    column: pos.column,
                    message: match super::suggest::closest(
                        name,
                        settings.notifiers.iter().map(|n| n.name.as_str()),
                    ) {
                        Some(c) => format!("unknown notifier `{name}` — did you mean `{c}`?"),
                        None => format!(
                            "unknown notifier `{name}` — expected a name from `agent: {{alerting: {{notifiers:}}}}`: {}",
                            notifier_names(settings)
                        ),
                    },
                });
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<AlertingSettings, String> {
        parse_settings(serde_norway::from_str(yaml).unwrap(), Path::new("."))
    }

    #[test]
    fn settings_parse_with_defaults() {
        let s = settings(
            "alertmanagers: [{url: 'http://127.0.0.1:9093'}]\nnotifiers:\n  ding: {type: dingtalk, url: 'https://oapi.dingtalk.com/robot/send?access_token=x', secret: SEC1, keyword: sonde}\n  hook: {type: webhook, url: 'http://127.0.0.1:1/h', send_resolved: false, repeat_interval: 0s}\ndefaults: {severity: page, notify: [ding]}\n",
        )
        .unwrap();
        assert_eq!(s.resend_interval, DEFAULT_RESEND_INTERVAL);
        assert_eq!(s.alertmanagers[0].max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(
            s.notifiers[0].repeat_interval,
            Some(DEFAULT_REPEAT_INTERVAL)
        );
        assert!(s.notifiers[0].send_resolved);
        assert_eq!(s.notifiers[1].repeat_interval, None);
        assert!(!s.notifiers[1].send_resolved);
        let rule = AlertSpec::default().resolve(&s.defaults);
        assert_eq!(rule.severity, "page");
        assert_eq!(rule.after, DEFAULT_AFTER);
        assert_eq!(rule.notify, vec!["ding".to_string()]);
    }

    #[test]
    fn bad_settings_say_what_is_expected() {
        for (yaml, want) in [
            (
                "notifiers: {x: {type: teams, url: 'http://a/'}}",
                "unknown type `teams`",
            ),
            ("notifiers: {x: {type: slack}}", "no `url`"),
            (
                "notifiers: {x: {type: slack, url: 'http://a/', secret: s}}",
                "unknown field `secret`",
            ),
            (
                "defaults: {notify: [nope]}",
                "defaults notify `nope` is not a notifier",
            ),
            (
                "defaults: {summary: '{{ nope }}'}",
                "unknown template variable `nope`",
            ),
            (
                "alertmanagers: [{url: 'ftp://x'}]",
                "expected http:// or https://",
            ),
            ("resend_intervall: 1m", "unknown field `resend_intervall`"),
        ] {
            let e = settings(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
            assert!(e.contains("expected"), "{e}");
        }
    }

    #[test]
    fn templates_are_checked_for_syntax_and_variables() {
        assert!(check_template(DEFAULT_SUMMARY).is_ok());
        assert!(check_template(DEFAULT_DESCRIPTION).is_ok());
        assert!(check_template("{{ scenario }} {{ labels.team }}").is_ok());
        assert!(check_template("{{ scenario ")
            .unwrap_err()
            .contains("invalid template"));
        assert!(check_template("{{ stepp }}")
            .unwrap_err()
            .contains("`stepp`"));
    }
}
