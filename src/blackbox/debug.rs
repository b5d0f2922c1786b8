//! The `debug=true` answer (and `sonde probe --debug`): blackbox_exporter's three sections —
//! "Logs for the probe:", "Metrics that would have been returned:", "Module configuration:" —
//! with sonde's fuller log: the resolved address, every phase with its duration, the request and
//! response headers, and why the probe failed. Secrets never appear: credential headers are
//! redacted by the probe, and the module is shown with passwords, tokens and credentials
//! replaced.

use std::fmt::Write as _;

use serde_json::Value as J;

use super::probe_log::ProbeLog;

/// One log line in go-kit's logfmt, as blackbox writes them: `key=value`, values quoted when
/// they need it.
pub fn logfmt(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push('=');
        if v.is_empty()
            || v.chars()
                .any(|c| c == ' ' || c == '"' || c == '=' || c.is_control())
        {
            let _ = write!(out, "{v:?}");
        } else {
            out.push_str(v);
        }
    }
    out
}

/// The whole debug text; URL userinfo and credential parameters (in the target, a redirect's
/// `Location`, an error) are redacted ([`crate::redact::text`]).
pub fn render(log: &ProbeLog, metrics: &str, module: &J) -> String {
    let mut out = String::from("Logs for the probe:\n");
    for l in log.rendered() {
        out.push_str(&crate::redact::text(&l));
        out.push('\n');
    }
    out.push_str("\n\n\nMetrics that would have been returned:\n");
    out.push_str(&crate::redact::text(metrics));
    out.push_str("\n\n\nModule configuration:\n");
    match serde_norway::to_string(module) {
        Ok(y) => out.push_str(&y),
        Err(e) => {
            let _ = writeln!(out, "Error marshalling config: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_when_needed() {
        assert_eq!(
            logfmt(&[("level", "info"), ("msg", "Beginning probe"), ("x", "")]),
            "level=info msg=\"Beginning probe\" x=\"\""
        );
    }
}
