//! blackbox_exporter's success criteria for the final response, each failure saying what was
//! expected and what came.
//!
//! Order (blackbox's, with the body read in between): status code; then a body that could not be
//! read (too large, broken); then header regexes, body regexes, HTTP version, TLS or not. The
//! first failure is reported. A status failure wins over a broken body because it is the more
//! telling of the two; a timeout while reading the body still wins over everything, since the
//! deadline ends the probe.

use regex::Regex;

use super::body::Body;
use super::prepare::clip;
use super::{HeaderCheck, HttpChecks, HttpFacts, StatusRange};
use crate::{Failure, FailureReason};

pub(super) fn evaluate(
    checks: &HttpChecks,
    facts: &mut HttpFacts,
    body: Result<Body, Failure>,
) -> Result<(), Failure> {
    status(&checks.valid_status_codes, facts.status.unwrap_or(0))?;
    let body = body?;
    for h in &checks.headers {
        if let Err(f) = header(h, &facts.headers) {
            // blackbox sets `probe_failed_due_to_regex` for header regexes too.
            facts.failed_due_to_regex = true;
            return Err(f);
        }
    }
    if !checks.fail_if_body_matches.is_empty() || !checks.fail_if_body_not_matches.is_empty() {
        let text = body.for_regex()?;
        if let Err(f) = body_regexes(checks, &text) {
            facts.failed_due_to_regex = true;
            return Err(f);
        }
    }
    if !checks.body_checks.is_empty() {
        let text = body.for_regex()?;
        for c in &checks.body_checks {
            if let Err(why) = c.check(text.as_bytes()) {
                facts.failed_due_to_body_check = true;
                return Err(Failure::new(FailureReason::Body, why));
            }
        }
    }
    version(
        &checks.valid_http_versions,
        facts.version.as_deref().unwrap_or(""),
    )?;
    if checks.fail_if_ssl && facts.is_tls {
        return Err(Failure::new(
            FailureReason::Assertion,
            "the final request was over TLS — expected plain HTTP (fail_if_ssl)",
        ));
    }
    if checks.fail_if_not_ssl && !facts.is_tls {
        return Err(Failure::new(
            FailureReason::Assertion,
            "the final request was plain HTTP — expected TLS (fail_if_not_ssl)",
        ));
    }
    Ok(())
}

/// Empty `valid` means 2xx, as in blackbox.
fn status(valid: &[StatusRange], code: u16) -> Result<(), Failure> {
    let default = [StatusRange::class(2)];
    let valid = if valid.is_empty() {
        &default[..]
    } else {
        valid
    };
    if valid.iter().any(|r| r.contains(code)) {
        return Ok(());
    }
    Err(Failure::new(
        FailureReason::Status,
        format!("status {code} — expected {}", describe_ranges(valid)),
    ))
}

/// "2xx", "200 or 204", "200, 201 or 3xx".
pub(super) fn describe_ranges(ranges: &[StatusRange]) -> String {
    let parts: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
    match parts.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// "HTTP/2" and "HTTP/2.0" are the same version; Go spells it "HTTP/2.0".
fn same_version(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim().to_ascii_uppercase();
        match s.as_str() {
            "HTTP/2" => "HTTP/2.0".to_string(),
            "HTTP/3" => "HTTP/3.0".to_string(),
            _ => s,
        }
    };
    norm(a) == norm(b)
}

fn version(valid: &[String], got: &str) -> Result<(), Failure> {
    if valid.is_empty() || valid.iter().any(|v| same_version(v, got)) {
        return Ok(());
    }
    Err(Failure::new(
        FailureReason::Assertion,
        format!("HTTP version {got} — expected {}", valid.join(" or ")),
    ))
}

fn body_regexes(checks: &HttpChecks, text: &str) -> Result<(), Failure> {
    for re in &checks.fail_if_body_matches {
        if let Some(m) = re.find(text) {
            return Err(Failure::new(
                FailureReason::Body,
                format!(
                    "body matched /{}/ (at byte {}: {}) — expected no match \
                     (fail_if_body_matches)",
                    re.as_str(),
                    m.start(),
                    clip(m.as_str())
                ),
            ));
        }
    }
    for re in &checks.fail_if_body_not_matches {
        if !re.is_match(text) {
            return Err(Failure::new(
                FailureReason::Body,
                format!(
                    "body did not match /{}/ — expected a match (fail_if_body_not_matches)",
                    re.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// blackbox's `fail_if_header_matches` / `fail_if_header_not_matches` for one header.
fn header(check: &HeaderCheck, headers: &super::HeaderList) -> Result<(), Failure> {
    let name = check.name.as_str();
    let values: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect();
    if values.is_empty() {
        if check.allow_missing {
            return Ok(());
        }
        return Err(Failure::new(
            FailureReason::Assertion,
            format!("header {name} is missing — expected it to be present"),
        ));
    }
    let re: &Regex = &check.regex;
    if check.fail_if_matches {
        if let Some(v) = values.iter().find(|v| re.is_match(v)) {
            return Err(Failure::new(
                FailureReason::Assertion,
                format!(
                    "header {name} is {} which matches /{}/ — expected no match",
                    clip(v),
                    re.as_str()
                ),
            ));
        }
    } else if !values.iter().any(|v| re.is_match(v)) {
        let shown: Vec<String> = values.iter().take(3).map(|v| clip(v)).collect();
        let more = if values.len() > 3 { ", …" } else { "" };
        return Err(Failure::new(
            FailureReason::Assertion,
            format!(
                "header {name} is {}{more} — expected a value matching /{}/",
                shown.join(", "),
                re.as_str()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_naturally() {
        assert_eq!(describe_ranges(&[StatusRange::class(2)]), "2xx");
        assert_eq!(
            describe_ranges(&[StatusRange::single(200), StatusRange::single(204)]),
            "200 or 204"
        );
        assert_eq!(
            describe_ranges(&[
                StatusRange::single(200),
                StatusRange { lo: 201, hi: 204 },
                StatusRange::class(3)
            ]),
            "200, 201-204 or 3xx"
        );
    }

    #[test]
    fn status_message_shows_expected_and_actual() {
        let f = status(&[], 503).unwrap_err();
        assert_eq!(f.reason, FailureReason::Status);
        assert_eq!(f.message, "status 503 — expected 2xx");
        assert!(status(&[], 204).is_ok());
        assert!(status(&[StatusRange::single(404)], 404).is_ok());
        assert!(status(&[StatusRange::single(404)], 200).is_err());
    }

    #[test]
    fn versions_compare_loosely() {
        assert!(version(&["HTTP/2".into()], "HTTP/2.0").is_ok());
        let f = version(&["HTTP/2.0".into()], "HTTP/1.1").unwrap_err();
        assert_eq!(f.message, "HTTP version HTTP/1.1 — expected HTTP/2.0");
    }

    fn check(re: &str, fail_if_matches: bool, allow_missing: bool) -> HeaderCheck {
        HeaderCheck {
            name: http::HeaderName::from_static("x-env"),
            regex: Regex::new(re).unwrap(),
            fail_if_matches,
            allow_missing,
        }
    }

    #[test]
    fn header_checks_follow_blackbox() {
        let hs: super::super::HeaderList = [("x-env", "staging"), ("x-env", "blue")]
            .into_iter()
            .collect();
        assert!(header(&check("blue", false, false), &hs).is_ok());
        let f = header(&check("prod", false, false), &hs).unwrap_err();
        assert!(f.message.contains("\"staging\", \"blue\""), "{}", f.message);
        assert!(f.message.contains("/prod/"), "{}", f.message);
        let f = header(&check("stag", true, false), &hs).unwrap_err();
        assert!(f.message.contains("\"staging\""), "{}", f.message);
        assert!(header(&check("x", false, true), &Default::default()).is_ok());
        let f = header(&check("x", false, false), &Default::default()).unwrap_err();
        assert!(f.message.contains("missing"), "{}", f.message);
    }
}
