//! A probe's debug log as it is kept: each line's time, level, message and fields, rendered into
//! blackbox's logfmt (`ts=… module=… target=… level=… msg=…`) only when someone reads it — a
//! `debug=true` answer, `--log.prober`, or `/logs` reading one of the kept probes. Formatting
//! every line of every probe (a timestamp in RFC 3339, quoting) cost more CPU than a fast probe
//! itself, and with `--history.limit` every `/probe` keeps its log.

use std::fmt::Write as _;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use super::debug::logfmt;

/// A field's value: text in [`ProbeLog::text`], a probe's event time in seconds (written
/// `{:.6}` when rendered), or a number written as Go's `%v` would (formatting a float costs
/// more than keeping it, and most kept logs are never read).
enum Value {
    Text(Range<u32>),
    Seconds(Duration),
    Number(f64),
}

/// One line, unrendered: its message is a range of [`ProbeLog::text`], its fields a range of
/// [`ProbeLog::fields`].
struct Line {
    at: SystemTime,
    level: &'static str,
    msg: Range<u32>,
    fields: Range<u32>,
}

/// The lines of one probe, with the module and target every line names. Every text sits in one
/// buffer: a probe keeps ~20 lines, and kept probes outlive many others, so a few allocations
/// per probe rather than three per line is what makes keeping them cheap.
pub struct ProbeLog {
    module: String,
    target: String,
    lines: Vec<Line>,
    fields: Vec<(&'static str, Value)>,
    text: String,
    /// Set while a batch of lines is logged at one moment (a probe's outcome): one clock read.
    held: Option<SystemTime>,
}

impl ProbeLog {
    pub fn new(module: &str, target: &str) -> Self {
        ProbeLog {
            module: module.to_string(),
            target: target.to_string(),
            lines: Vec::new(),
            fields: Vec::new(),
            text: String::new(),
            held: None,
        }
    }

    /// Stamp the lines pushed until [`Self::release_time`] with the time now: they are
    /// logged together (a probe's outcome, after it ended), microseconds apart.
    pub fn hold_time(&mut self) {
        self.held = Some(SystemTime::now());
    }

    pub fn release_time(&mut self) {
        self.held = None;
    }

    /// Room for a typical probe's log, so that it grows once or not at all.
    fn reserve(&mut self) {
        if self.lines.capacity() == 0 {
            self.lines.reserve(24);
            self.fields.reserve(24);
            self.text.reserve(1024);
        }
    }

    fn add_text(&mut self, s: &str) -> Range<u32> {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        start..self.text.len() as u32
    }

    fn add_line(&mut self, level: &'static str, msg: Range<u32>, fields_from: usize) {
        self.lines.push(Line {
            at: self.held.unwrap_or_else(SystemTime::now),
            level,
            msg,
            fields: fields_from as u32..self.fields.len() as u32,
        });
    }

    /// Keep a line stamped now.
    pub fn push(&mut self, level: &'static str, msg: &str, fields: &[(&'static str, &str)]) {
        self.push_fields(level, msg, fields, None);
    }

    /// Keep a line whose text fields are followed by one number field, written only when the
    /// line is rendered.
    pub fn push_number(
        &mut self,
        level: &'static str,
        msg: &str,
        fields: &[(&'static str, &str)],
        key: &'static str,
        value: f64,
    ) {
        self.push_fields(level, msg, fields, Some((key, Value::Number(value))));
    }

    fn push_fields(
        &mut self,
        level: &'static str,
        msg: &str,
        fields: &[(&'static str, &str)],
        last: Option<(&'static str, Value)>,
    ) {
        self.reserve();
        let msg = self.add_text(msg);
        let from = self.fields.len();
        for (k, v) in fields {
            let v = self.add_text(v);
            self.fields.push((k, Value::Text(v)));
        }
        self.fields.extend(last);
        self.add_line(level, msg, from);
    }

    /// Keep a line with one field, written straight into the log (no text of its own).
    pub fn push_fmt(
        &mut self,
        level: &'static str,
        msg: &str,
        key: &'static str,
        value: std::fmt::Arguments<'_>,
    ) {
        self.push_written(level, msg, key, |text| {
            let _ = text.write_fmt(value);
        });
    }

    /// Keep a line with one field whose value is `parts` joined (a header line's `name: value`),
    /// copied in without formatting: a probe logs every header it sent and received.
    pub fn push_joined(
        &mut self,
        level: &'static str,
        msg: &str,
        key: &'static str,
        parts: &[&str],
    ) {
        self.push_written(level, msg, key, |text| {
            parts.iter().for_each(|p| text.push_str(p))
        });
    }

    /// A line with one field whose value `write` appends to the log's text.
    fn push_written(
        &mut self,
        level: &'static str,
        msg: &str,
        key: &'static str,
        write: impl FnOnce(&mut String),
    ) {
        self.reserve();
        let msg = self.add_text(msg);
        let start = self.text.len() as u32;
        write(&mut self.text);
        let from = self.fields.len();
        self.fields
            .push((key, Value::Text(start..self.text.len() as u32)));
        self.add_line(level, msg, from);
    }

    /// Keep a probe's event: its message and `at_seconds`, when it happened in the probe.
    pub fn push_event(&mut self, msg: &str, at: Duration) {
        self.reserve();
        let msg = self.add_text(msg);
        let from = self.fields.len();
        self.fields.push(("at_seconds", Value::Seconds(at)));
        self.add_line("info", msg, from);
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn get(&self, r: &Range<u32>) -> &str {
        &self.text[r.start as usize..r.end as usize]
    }

    /// Each line in logfmt, as blackbox writes it.
    pub fn rendered(&self) -> impl Iterator<Item = String> + '_ {
        self.lines.iter().map(|l| {
            let ts = crate::time::rfc3339(l.at);
            let fields = &self.fields[l.fields.start as usize..l.fields.end as usize];
            let numbers: Vec<String> = fields
                .iter()
                .filter_map(|(_, v)| match v {
                    Value::Seconds(d) => Some(format!("{:.6}", d.as_secs_f64())),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Text(_) => None,
                })
                .collect();
            let mut numbers = numbers.iter();
            let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(5 + fields.len());
            pairs.extend_from_slice(&[
                ("ts", &ts),
                ("module", &self.module),
                ("target", &self.target),
                ("level", l.level),
                ("msg", self.get(&l.msg)),
            ]);
            pairs.extend(fields.iter().map(|(k, v)| match v {
                Value::Text(r) => (*k, self.get(r)),
                Value::Seconds(_) | Value::Number(_) => {
                    (*k, numbers.next().map_or("", String::as_str))
                }
            }));
            logfmt(&pairs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_blackbox_logs() {
        let mut log = ProbeLog::new("http_2xx", "http://example.com/");
        log.push("info", "Beginning probe", &[("probe", "http"), ("x", "")]);
        log.push("error", "Failure", &[("err", "said \"no\"")]);
        log.push_event("connected", Duration::from_micros(1500));
        log.push_joined(
            "info",
            "Response header",
            "header",
            &["server", ": ", "nginx"],
        );
        log.push_number("info", "Probe succeeded", &[], "duration_seconds", 0.0123);
        log.push_number("info", "n", &[("probe", "http")], "timeout_seconds", 119.5);
        log.push_number("info", "n", &[], "timeout_seconds", 5.0);
        let lines: Vec<String> = log.rendered().collect();
        assert_eq!(lines.len(), 7);
        assert!(lines[3].ends_with(" msg=\"Response header\" header=\"server: nginx\""));
        assert!(lines[4].ends_with(" msg=\"Probe succeeded\" duration_seconds=0.0123"));
        assert!(lines[5].ends_with(" msg=n probe=http timeout_seconds=119.5"));
        assert!(lines[6].ends_with(" timeout_seconds=5"));
        let (ts, rest) = lines[0].split_once(' ').unwrap();
        assert!(
            ts.starts_with("ts=") && ts.ends_with('Z') && ts.len() == 27,
            "{ts}"
        );
        assert_eq!(
            rest,
            "module=http_2xx target=http://example.com/ level=info msg=\"Beginning probe\" probe=http x=\"\""
        );
        assert!(lines[1].ends_with(" level=error msg=Failure err=\"said \\\"no\\\"\""));
        assert!(lines[2].ends_with(" level=info msg=connected at_seconds=0.001500"));
    }

    #[test]
    fn a_held_time_stamps_the_whole_batch() {
        let mut log = ProbeLog::new("m", "t");
        log.hold_time();
        let held = log.held.unwrap();
        log.push("info", "a", &[]);
        std::thread::sleep(Duration::from_millis(3));
        log.push_event("b", Duration::ZERO);
        log.release_time();
        assert!(log.lines.iter().all(|l| l.at == held));
        log.push("info", "c", &[]);
        assert!(log.lines[2].at > held);
    }
}
