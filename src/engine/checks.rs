//! The `expect:` checks the engine owns, applied after the probe's own checks passed: bounds
//! on the step's duration and on the certificate's remaining life, and JSONPath values in the
//! body or frame.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sonde_probes::tls::fmt_unix;
use sonde_probes::{fmt_duration, Failure, FailureReason};

use crate::config::scenario::{Bounds, JsonCheck, PostChecks};
use crate::engine::capture;
use crate::engine::report::{CheckReport, StepReport};
use crate::time::fmt_long;

/// The `expect:` checks the engine owns. Returns the first that fails.
pub fn post_checks(expect: &PostChecks, report: &StepReport, now: SystemTime) -> Option<Failure> {
    if let Some(why) = check_bounds(expect.duration(), report.duration) {
        return Some(Failure::new(
            FailureReason::Assertion,
            format!(
                "duration {} — expected {why}",
                fmt_duration(report.duration)
            ),
        ));
    }
    if !expect.cert_expires_in().is_empty() {
        let Some(not_after) = report.cert_not_after() else {
            return Some(Failure::new(
                FailureReason::Assertion,
                "no TLS certificate was presented — expected one for cert_expires_in",
            ));
        };
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let left = not_after - now_s;
        let left_d = Duration::from_secs(left.max(0) as u64);
        let within = if left < 0 {
            None
        } else {
            check_bounds(expect.cert_expires_in(), left_d)
        };
        if left < 0 || within.is_some() {
            let expected = within
                .unwrap_or_else(|| describe_bounds(expect.cert_expires_in()).unwrap_or_default());
            let state = if left < 0 {
                format!(
                    "expired {} ago",
                    fmt_long(Duration::from_secs((-left) as u64))
                )
            } else {
                format!("expires in {}", fmt_long(left_d))
            };
            return Some(Failure::new(
                FailureReason::Assertion,
                format!(
                    "certificate chain {state} ({}) — expected expiry in {expected}",
                    fmt_unix(not_after)
                ),
            ));
        }
    }
    None
}

/// `None` when `v` satisfies every bound, else the description of the bounds.
fn check_bounds(b: &Bounds, v: Duration) -> Option<String> {
    let ok = b.lt.is_none_or(|x| v < x)
        && b.le.is_none_or(|x| v <= x)
        && b.gt.is_none_or(|x| v > x)
        && b.ge.is_none_or(|x| v >= x);
    if ok {
        None
    } else {
        describe_bounds(b)
    }
}

fn describe_bounds(b: &Bounds) -> Option<String> {
    let parts: Vec<String> = [("<", b.lt), ("≤", b.le), (">", b.gt), ("≥", b.ge)]
        .into_iter()
        .filter_map(|(op, d)| d.map(|d| format!("{op} {}", fmt_long(d))))
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" and "))
    }
}

/// The JSONPath checks of `expect.json` on the body (http) or the matched frame (ws.expect).
pub fn json_checks(checks: &[JsonCheck], report: &mut StepReport) -> Option<Failure> {
    let (doc, whence) = match capture::document(report) {
        Ok(d) => d,
        Err(m) => {
            return Some(Failure::new(
                FailureReason::Assertion,
                format!("cannot check JSON paths: {m}"),
            ))
        }
    };
    let mut first = None;
    for c in checks {
        let found = capture::query(&c.path, &doc);
        let res = c.matcher.test(found.as_ref());
        let actual = found
            .as_ref()
            .map(crate::config::matcher::show)
            .unwrap_or_else(|| "nothing".into());
        report.checks.push(CheckReport {
            what: format!("{} in the {whence}", c.path_text),
            expected: c.matcher.describe(),
            actual: actual.clone(),
            passed: res.is_ok(),
        });
        if let (Err(expected), None) = (res, &first) {
            first = Some(Failure::new(
                FailureReason::Assertion,
                format!(
                    "{} in the {whence} is {actual} — expected {expected}",
                    c.path_text
                ),
            ));
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::{Stage, StepFacts};
    use sonde_probes::tls::{TlsFacts, TlsProbeFacts};
    use sonde_probes::Timings;

    fn bounds(lt: Option<u64>, gt: Option<u64>) -> Bounds {
        Bounds {
            lt: lt.map(Duration::from_millis),
            gt: gt.map(Duration::from_millis),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_hold_or_say_why() {
        let b = bounds(Some(500), None);
        assert_eq!(check_bounds(&b, Duration::from_millis(499)), None);
        assert_eq!(
            check_bounds(&b, Duration::from_millis(500)).as_deref(),
            Some("< 500ms")
        );
        let b = bounds(Some(500), Some(100));
        assert_eq!(
            check_bounds(&b, Duration::from_millis(50)).as_deref(),
            Some("< 500ms and > 100ms")
        );
        assert_eq!(
            check_bounds(&Bounds::default(), Duration::from_secs(9)),
            None
        );
    }

    fn report_with_cert(not_after: Option<i64>) -> StepReport {
        let tls = not_after.map(|na| TlsFacts {
            version: "TLS 1.3".into(),
            cipher: String::new(),
            alpn: None,
            server_name: "x".into(),
            verified: true,
            chain: vec![sonde_probes::tls::CertFacts {
                subject: String::new(),
                issuer: String::new(),
                serial: String::new(),
                not_before: 0,
                not_after: na,
                subject_alt_names: vec![],
                fingerprint_sha256: String::new(),
            }],
        });
        StepReport {
            name: "tls".into(),
            kind: "tls",
            stage: Stage::Steps,
            success: true,
            duration: Duration::from_millis(3),
            failure: None,
            attempts: 1,
            timings: Timings::default(),
            remote_addr: None,
            events: vec![],
            captures: vec![],
            checks: vec![],
            facts: StepFacts::Tls(Box::new(TlsProbeFacts { session: tls })),
        }
    }

    #[test]
    fn cert_expiry_bound() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expect = PostChecks::new(
            Bounds::default(),
            Bounds {
                gt: Some(Duration::from_secs(14 * 86_400)),
                ..Default::default()
            },
            Vec::new(),
        );
        // 20 days left: fine.
        let ok = report_with_cert(Some(1_000_000 + 20 * 86_400));
        assert_eq!(post_checks(&expect, &ok, now), None);
        // 3 days left: fails, saying how long is left and what was expected.
        let soon = report_with_cert(Some(1_000_000 + 3 * 86_400));
        let f = post_checks(&expect, &soon, now).unwrap();
        assert_eq!(f.reason, FailureReason::Assertion);
        assert!(
            f.message.starts_with("certificate chain expires in 3d ("),
            "{}",
            f.message
        );
        assert!(
            f.message.ends_with("— expected expiry in > 14d"),
            "{}",
            f.message
        );
        // Already expired.
        let gone = report_with_cert(Some(1_000_000 - 86_400));
        let f = post_checks(&expect, &gone, now).unwrap();
        assert!(f.message.contains("expired 1d ago"), "{}", f.message);
        // No TLS at all.
        let none = report_with_cert(None);
        let f = post_checks(&expect, &none, now).unwrap();
        assert!(f.message.contains("no TLS certificate"), "{}", f.message);
    }

    #[test]
    fn duration_bound_fails_with_both_values() {
        let expect = PostChecks::new(bounds(Some(1), None), Bounds::default(), Vec::new());
        let r = report_with_cert(None);
        let f = post_checks(&expect, &r, SystemTime::now()).unwrap();
        assert_eq!(f.message, "duration 3ms — expected < 1ms");
    }
}
