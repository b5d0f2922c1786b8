//! `expect:` → the probe's own checks (status, headers, body) and [`PostChecks`] (duration,
//! certificate expiry), per the table in format-v1.

use http::HeaderName;
use regex::Regex;
use sonde_probes::http::{HeaderCheck, HttpChecks, StatusRange};

use super::build::Cx;
use super::locate::{index_path, key_path};
use super::model::{BoundsModel, ExpectModel};
use crate::config::scenario::{Bounds, PostChecks};

/// Keys of `expect` that only mean something for some kinds: refuse them elsewhere, naming the
/// kind, so a `status:` on a tcp step is not silently ignored.
pub fn check_keys(e: &ExpectModel, path: &str, kind: &str, cx: &mut Cx) {
    let allowed = super::kinds::expect_keys(kind);
    let present = [
        ("status", e.status.is_some()),
        ("headers", e.headers.is_some()),
        ("body", e.body.is_some()),
        ("json", e.json.is_some()),
        ("cert_expires_in", e.cert_expires_in.is_some()),
    ];
    let article = super::kinds::article(kind);
    for (key, set) in present {
        if set && !allowed.contains(&key) {
            cx.err_key(
                &key_path(path, key),
                format!(
                    "`{key}` cannot be checked on {article} {kind} step — expected only: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
}

fn bounds(b: Option<&BoundsModel>, path: &str, cx: &mut Cx) -> Bounds {
    let Some(b) = b else {
        return Bounds::default();
    };
    let out = Bounds {
        lt: b.lt.map(|d| d.0),
        le: b.le.map(|d| d.0),
        gt: b.gt.map(|d| d.0),
        ge: b.ge.map(|d| d.0),
    };
    if out.is_empty() {
        let key = path.rsplit('.').next().unwrap_or("bounds");
        cx.err_value(
            path,
            format!("empty `{key}` — expected at least one of: lt, le, gt, ge"),
        );
    }
    out
}

pub fn post_checks(e: Option<&ExpectModel>, path: &str, cx: &mut Cx) -> PostChecks {
    let Some(e) = e else {
        return PostChecks::default();
    };
    PostChecks::new(
        bounds(e.duration.as_ref(), &key_path(path, "duration"), cx),
        bounds(
            e.cert_expires_in.as_ref(),
            &key_path(path, "cert_expires_in"),
            cx,
        ),
        super::flow::json_checks(e.json.as_ref(), &key_path(path, "json"), cx),
    )
}

fn literal(s: &str) -> String {
    regex::escape(s)
}

fn fixed(re: &str) -> Regex {
    // Built from escaped literals: cannot fail.
    Regex::new(re).expect("escaped literal is a valid regex")
}

/// status, headers and body of an http step's `expect` (at `path`) into `checks`.
pub fn http_checks(e: &ExpectModel, path: &str, checks: &mut HttpChecks, cx: &mut Cx) {
    if let Some(s) = &e.status {
        checks.valid_status_codes =
            s.0.iter()
                .map(|i| StatusRange { lo: i.lo, hi: i.hi })
                .collect();
    }
    if let Some(headers) = &e.headers {
        let hp = key_path(path, "headers");
        for (name, m) in &headers.0 {
            let at = key_path(&hp, name);
            let Ok(hname) = HeaderName::from_bytes(name.as_bytes()) else {
                cx.err_key(
                    &at,
                    format!("invalid header name {name:?} — expected a token like Content-Type"),
                );
                continue;
            };
            let mut add = |regex: Regex, fail_if_matches: bool, allow_missing: bool| {
                checks.headers.push(HeaderCheck {
                    name: hname.clone(),
                    regex,
                    fail_if_matches,
                    allow_missing,
                })
            };
            let mut any = false;
            if let Some(v) = &m.equals {
                add(fixed(&format!("^{}$", literal(v))), false, false);
                any = true;
            }
            if let Some(v) = &m.contains {
                add(fixed(&literal(v)), false, false);
                any = true;
            }
            if let Some(v) = &m.matches {
                any = true;
                if let Some(r) = cx.regex(v, &key_path(&at, "matches")) {
                    add(r, false, false);
                }
            }
            if let Some(v) = &m.not_matches {
                any = true;
                if let Some(r) = cx.regex(v, &key_path(&at, "not_matches")) {
                    add(r, true, true);
                }
            }
            if let Some(exists) = m.exists {
                any = true;
                // An empty regex matches every value: "present" / "absent".
                add(fixed(""), !exists, !exists);
            }
            if !any {
                cx.err_value(
                    &at,
                    "empty header matcher — expected a string or one of: equals, contains, matches, not_matches, exists",
                );
            }
        }
    }
    if let Some(b) = &e.body {
        let bp = key_path(path, "body");
        let mut any = false;
        let lists = [
            ("contains", &b.contains, true, false),
            ("not_contains", &b.not_contains, true, true),
            ("matches", &b.matches, false, false),
            ("not_matches", &b.not_matches, false, true),
        ];
        for (key, list, is_literal, fail_if_matches) in lists {
            let Some(list) = list else { continue };
            any = true;
            let kp = key_path(&bp, key);
            for (i, s) in list.0.iter().enumerate() {
                let re = if is_literal {
                    Some(fixed(&literal(s)))
                } else {
                    // A single string is located at the key's value, a list item at its index.
                    cx.regex(s, &index_path(&kp, i))
                };
                if let Some(re) = re {
                    if fail_if_matches {
                        checks.fail_if_body_matches.push(re);
                    } else {
                        checks.fail_if_body_not_matches.push(re);
                    }
                }
            }
        }
        if !any {
            cx.err_value(
                &bp,
                "empty `body` expectation — expected one of: contains, not_contains, matches, not_matches",
            );
        }
    }
}
