//! Compilers of settings that several step kinds (and blackbox modules) spell the same way:
//! URLs, header regexes, DNS record checks. Each kind's own builder is in [`super::kinds`].

use http::HeaderName;
use sonde_probes::dns::RrChecks;
use sonde_probes::http::HeaderCheck;
use url::Url;

use super::build::Cx;
use super::locate::{index_path, key_path};
use super::model::{HeaderRegexModel, RrValidateModel};

pub(crate) fn url_field(
    s: &str,
    path: &str,
    what: &str,
    schemes: &[&str],
    cx: &mut Cx,
) -> Option<Url> {
    let expected = if schemes.len() == 1 {
        format!("an absolute {}:// URL", schemes[0])
    } else {
        "an absolute http:// or https:// URL".to_string()
    };
    match Url::parse(s) {
        Ok(u) if !schemes.contains(&u.scheme()) => {
            cx.err_value(
                path,
                format!(
                    "unsupported {what} scheme `{}` in {s:?} — expected {expected}",
                    u.scheme()
                ),
            );
            None
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            cx.err_value(
                path,
                format!("{what} {s:?} has no host — expected {expected}"),
            );
            None
        }
        Ok(u) => Some(u),
        Err(e) => {
            cx.err_value(
                path,
                format!("invalid {what} {s:?}: {e} — expected {expected}"),
            );
            None
        }
    }
}

pub(crate) fn header_regexes(
    list: Option<&Vec<HeaderRegexModel>>,
    path: &str,
    fail_if_matches: bool,
    out: &mut Vec<HeaderCheck>,
    cx: &mut Cx,
) {
    for (i, h) in list.into_iter().flatten().enumerate() {
        let ip = index_path(path, i);
        let name = match HeaderName::from_bytes(h.header.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                cx.err_value(
                    &key_path(&ip, "header"),
                    format!(
                        "invalid header name {:?} — expected a token like Content-Type",
                        h.header
                    ),
                );
                None
            }
        };
        let regex = cx.regex(&h.regexp, &key_path(&ip, "regexp"));
        if let (Some(name), Some(regex)) = (name, regex) {
            out.push(HeaderCheck {
                name,
                regex,
                fail_if_matches,
                allow_missing: h.allow_missing.unwrap_or(false),
            });
        }
    }
}

/// blackbox's `validate_*_rrs` lists, compiled; shared by scenario dns steps and blackbox dns
/// modules, which spell them the same way.
pub(crate) fn rr_checks(m: Option<&RrValidateModel>, path: &str, cx: &mut Cx) -> RrChecks {
    let Some(m) = m else {
        return RrChecks::default();
    };
    let p = |k: &str| key_path(path, k);
    RrChecks {
        fail_if_matches: cx.regexes(
            m.fail_if_matches_regexp.as_ref(),
            &p("fail_if_matches_regexp"),
        ),
        fail_if_all_match: cx.regexes(
            m.fail_if_all_match_regexp.as_ref(),
            &p("fail_if_all_match_regexp"),
        ),
        fail_if_not_matches: cx.regexes(
            m.fail_if_not_matches_regexp.as_ref(),
            &p("fail_if_not_matches_regexp"),
        ),
        fail_if_none_matches: cx.regexes(
            m.fail_if_none_matches_regexp.as_ref(),
            &p("fail_if_none_matches_regexp"),
        ),
    }
}
