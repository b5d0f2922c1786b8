//! A probe's debug log as it is kept: each line's time, level, message and fields, rendered into
//! blackbox's logfmt (`ts=… module=… target=… level=… msg=…`) only when someone reads it — a
//! `debug=true` answer, `--log.prober`, or `/logs` reading one of the kept probes. Formatting
//! every line of every probe (a timestamp in RFC 3339, quoting) cost more CPU than a fast probe
//! itself, and with `--history.limit` every `/probe` keeps its log.

use std::time::SystemTime;

use super::debug::logfmt;

/// One line, unrendered.
struct Line {
    at: SystemTime,
    level: &'static str,
    msg: String,
    fields: Box<[(&'static str, String)]>,
}

/// The lines of one probe, with the module and target every line names.
pub struct ProbeLog {
    module: String,
    target: String,
    lines: Vec<Line>,
}

impl ProbeLog {
    pub fn new(module: &str, target: &str) -> Self {
        ProbeLog {
            module: module.to_string(),
            target: target.to_string(),
            lines: Vec::new(),
        }
    }

    /// Keep a line stamped now.
    pub fn push(&mut self, level: &'static str, msg: &str, fields: &[(&'static str, &str)]) {
        self.lines.push(Line {
            at: SystemTime::now(),
            level,
            msg: msg.to_string(),
            fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Each line in logfmt, as blackbox writes it.
    pub fn rendered(&self) -> impl Iterator<Item = String> + '_ {
        self.lines.iter().map(|l| {
            let ts = crate::time::rfc3339(l.at);
            let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(5 + l.fields.len());
            pairs.extend_from_slice(&[
                ("ts", &ts),
                ("module", &self.module),
                ("target", &self.target),
                ("level", l.level),
                ("msg", &l.msg),
            ]);
            pairs.extend(l.fields.iter().map(|(k, v)| (*k, v.as_str())));
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
        let lines: Vec<String> = log.rendered().collect();
        assert_eq!(lines.len(), 2);
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
    }
}
