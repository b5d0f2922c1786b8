//! HTTP header matchers (`fail_if_header_matches`, `fail_if_header_not_matches`), compiled once
//! for http steps and http modules.

use http::HeaderName;
use sonde_probes::http::HeaderCheck;

use crate::config::build::Cx;
use crate::config::locate::{index_path, key_path};
use crate::config::model::HeaderRegexModel;

/// One matcher as written: the header's name and the regex its value is matched against.
pub struct HeaderMatcher<'a> {
    pub header: &'a str,
    pub regexp: &'a str,
    pub allow_missing: Option<bool>,
}

/// One matcher, written at `at` (its list item). Both a bad name and a bad regex are reported.
pub fn header_check(
    m: HeaderMatcher<'_>,
    at: &str,
    fail_if_matches: bool,
    cx: &mut Cx,
) -> Option<HeaderCheck> {
    let name = match HeaderName::from_bytes(m.header.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            cx.err_value(
                &key_path(at, "header"),
                format!(
                    "invalid header name {:?} — expected a token like Content-Type",
                    m.header
                ),
            );
            None
        }
    };
    let regex = cx.regex(m.regexp, &key_path(at, "regexp"));
    Some(HeaderCheck {
        name: name?,
        regex: regex?,
        fail_if_matches,
        allow_missing: m.allow_missing.unwrap_or(false),
    })
}

/// A scenario's matcher list (at `path`), appended to `out`.
pub fn header_checks(
    list: Option<&Vec<HeaderRegexModel>>,
    path: &str,
    fail_if_matches: bool,
    out: &mut Vec<HeaderCheck>,
    cx: &mut Cx,
) {
    for (i, h) in list.into_iter().flatten().enumerate() {
        let m = HeaderMatcher {
            header: &h.header,
            regexp: &h.regexp,
            allow_missing: h.allow_missing,
        };
        out.extend(header_check(m, &index_path(path, i), fail_if_matches, cx));
    }
}
