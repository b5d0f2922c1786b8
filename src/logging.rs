//! sonde's own log: `--log.level` and `--log.format` (blackbox_exporter's flags, promslog's
//! formats), for every command, always through the redacting writer ([`crate::redact::log`]).
//!
//! - `text`: tracing's human format (the default, as before);
//! - `logfmt`: `time=… level=INFO msg="…" key=value …`, promslog's field names, one event a line;
//! - `json`: `{"time":…,"level":"INFO","msg":…,"key":…}`, the same fields.
//!
//! Field values are redacted before they are quoted, so the redaction can never cut a quoted
//! value (or a JSON string) in half; the writer redacts the finished line again as a net.

use std::fmt;

use clap::{Args, ValueEnum};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Args, Debug, Clone)]
pub struct LogFlags {
    /// Only log messages with the given severity or above: error, warn, info, debug, trace
    /// (or a tracing filter such as `info,sonde::runtime=debug`; RUST_LOG overrides).
    #[arg(
        long = "log.level",
        visible_alias = "log-level",
        global = true,
        default_value = "info",
        value_name = "LEVEL",
        value_parser = parse_level
    )]
    pub level: String,

    /// Output format of log messages: text (human), logfmt or json (as blackbox_exporter's).
    #[arg(
        long = "log.format",
        global = true,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Logfmt,
    Json,
}

fn parse_level(s: &str) -> Result<String, String> {
    // blackbox's spellings are tracing's; a filter directive is accepted as RUST_LOG would be.
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e} — expected one of error, warn, info, debug, trace"))
}

impl LogFlags {
    /// Install the global subscriber writing to stderr.
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&self.level));
        let writer = crate::redact::Redacting(std::io::stderr);
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_target(false);
        let _ = match self.format {
            LogFormat::Text => builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .try_init(),
            LogFormat::Logfmt => builder
                .with_ansi(false)
                .event_format(Structured(LogFormat::Logfmt))
                .try_init(),
            LogFormat::Json => builder
                .with_ansi(false)
                .event_format(Structured(LogFormat::Json))
                .try_init(),
        };
    }
}

/// The logfmt and JSON event formatter.
pub struct Structured(pub LogFormat);

/// An event's fields, message first, values as text, redacted.
#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.push((field.name(), value.into()));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        let value = crate::redact::text(&value).into_owned();
        match field.name() {
            "message" => self.msg = value,
            // The `log` crate bridge's bookkeeping (dependencies' records): not the event's.
            name if name.starts_with("log.") => {}
            name => self.rest.push((name, value.into())),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Structured
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time = crate::time::rfc3339(std::time::SystemTime::now());
        let level = event.metadata().level().as_str();
        writeln!(writer, "{}", render(self.0, &time, level, &fields))
    }
}

fn render(format: LogFormat, time: &str, level: &str, f: &Fields) -> String {
    let head = [("time", time), ("level", level), ("msg", f.msg.as_str())]
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::from(v)));
    let pairs = head.chain(f.rest.iter().map(|(k, v)| (*k, v.clone())));
    match format {
        LogFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> =
                pairs.map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::Value::Object(map).to_string()
        }
        _ => pairs
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={}", logfmt_value(&s)),
                v => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A logfmt value: bare when it can be, else quoted with `\"`, `\\` and control characters
/// escaped (so one event stays one line).
fn logfmt_value(v: &str) -> String {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && c != '\u{7f}');
    if bare {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(msg: &str, rest: &[(&'static str, &str)]) -> Fields {
        Fields {
            msg: crate::redact::text(msg).into_owned(),
            rest: rest
                .iter()
                .map(|(k, v)| (*k, crate::redact::text(v).into_owned().into()))
                .collect(),
        }
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let f = fields(
            "config reloaded",
            &[("scenarios", "3"), ("file", "a b\"c\nd"), ("empty", "")],
        );
        assert_eq!(
            render(LogFormat::Logfmt, "2026-01-01T00:00:00.000Z", "INFO", &f),
            r#"time=2026-01-01T00:00:00.000Z level=INFO msg="config reloaded" scenarios=3 file="a b\"c\nd" empty="""#
        );
    }

    #[test]
    fn json_stays_valid_when_a_value_is_redacted() {
        // A credential parameter right before a quote: redacting the finished JSON line alone
        // would swallow the escaping backslash and cut the string.
        let f = fields("push to http://u:pw@h/x?token=abc\" failed", &[]);
        let line = render(LogFormat::Json, "t", "WARN", &f);
        let again = crate::redact::text(&line);
        let v: serde_json::Value = serde_json::from_str(&again).unwrap();
        let msg = v["msg"].as_str().unwrap();
        assert!(!msg.contains("abc") && !msg.contains("pw@"), "{msg}");
        assert_eq!(v["level"], "WARN");
    }
}
