//! Redaction by shape: whatever its name or where it came from, a URL's userinfo
//! (`https://user:pass@host`) and the value of a query or fragment parameter whose name looks
//! like a credential (`?access_token=…`, `&X-Amz-Signature=…`, `#id_token=…`) never reach an
//! output — `/`, `/config`, the API, `/probe?debug=true`, logs, `sonde run` reports.
//!
//! Redaction by value (secrets from `env`, `file()`, secret keys and everything a template
//! derives from them) is the configuration's business ([`crate::config`]); this module is the
//! net under it, and the one place the shapes are defined. It is pure text: it works on a
//! single URL as on a log line or an error message with URLs inside.

mod log;
mod names;

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

pub use log::Redacting;
pub use names::is_credential_name;

/// What a redacted value shows instead.
pub const REDACTED: &str = "<redacted>";

/// `scheme://userinfo@` — the userinfo is everything up to the last `@` before the authority
/// ends (a password may hold an unescaped `@`). `<`, `>` are not allowed in it, so redacting
/// twice changes nothing.
fn userinfo_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"(?i)([a-z][a-z0-9+.\-]*://)[^\s/?#\[\]"'<>]*@"#).expect("static regex")
    })
}

/// A `name=value` parameter after `?`, `&`, `;` or `#`.
fn param_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"([?&;#])([^=&;#?\s"'<>]+)=([^&;#\s"'<>]*)"#).expect("static regex")
    })
}

/// `text` with every URL userinfo and every credential-looking parameter value replaced by
/// [`REDACTED`]. Borrowed when there was nothing to hide.
pub fn text(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    // Userinfo ends in '@': a URL without one (every /probe target, as a rule) skips the regex.
    if text.contains("://") && text.contains('@') {
        if let Cow::Owned(s) = userinfo_re().replace_all(&out, format!("${{1}}{REDACTED}@")) {
            out = Cow::Owned(s);
        }
    }
    if text.contains('=') {
        let replaced = param_re().replace_all(&out, |c: &regex::Captures| {
            if !c[3].is_empty() && is_credential_name(&c[2]) {
                format!("{}{}={REDACTED}", &c[1], &c[2])
            } else {
                c[0].to_string()
            }
        });
        if let Cow::Owned(s) = replaced {
            if s != out {
                out = Cow::Owned(s);
            }
        }
    }
    out
}

/// The values [`text`] would hide in `text`: each userinfo (and its password alone) and each
/// credential parameter's value, as written and percent-decoded. The loader adds them to a
/// scenario's secrets, so a server echoing one in a body or a header does not show it either.
pub fn credentials(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |v: &str| {
        let decoded = url::form_urlencoded::parse(format!("x={v}").as_bytes())
            .next()
            .map(|(_, d)| d.into_owned());
        out.push(v.to_string());
        out.extend(decoded.filter(|d| d != v));
    };
    for c in userinfo_re().captures_iter(text) {
        let whole = c.get(0).map_or("", |m| m.as_str());
        let info = whole[c[1].len()..whole.len() - 1].to_string();
        if let Some((_, pass)) = info.split_once(':') {
            add(pass);
        }
        add(&info);
    }
    for c in param_re().captures_iter(text) {
        if !c[3].is_empty() && is_credential_name(&c[2]) {
            add(&c[3]);
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// A URL as it may be shown: [`text`] of its text.
pub fn url(u: &url::Url) -> String {
    text(u.as_str()).into_owned()
}

/// Every string (and object key) of `v` through [`text`].
pub fn json(v: &mut serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::String(s) => {
            if let Cow::Owned(r) = text(s) {
                *s = r;
            }
        }
        J::Array(items) => items.iter_mut().for_each(json),
        J::Object(m) => {
            if m.keys().any(|k| matches!(text(k), Cow::Owned(_))) {
                *m = std::mem::take(m)
                    .into_iter()
                    .map(|(k, v)| (text(&k).into_owned(), v))
                    .collect();
            }
            m.values_mut().for_each(json);
        }
        _ => {}
    }
}

/// `text` with every value of `secrets` replaced (longest first, so a secret holding another
/// goes whole), then the shapes of [`text`]. Values come first: a secret spanning a parameter
/// must still match before its parameter is rewritten.
pub fn with_secrets<'a>(text_in: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text_in);
    for s in secrets {
        if !s.is_empty() && out.contains(s) {
            out = Cow::Owned(out.replace(s, REDACTED));
        }
    }
    match text(&out) {
        Cow::Owned(s) => Cow::Owned(s),
        Cow::Borrowed(_) => out,
    }
}

/// [`with_secrets`] over every string and object key of `v`.
pub fn json_with_secrets(v: &mut serde_json::Value, secrets: &[&str]) {
    use serde_json::Value as J;
    match v {
        J::String(s) => {
            if let Cow::Owned(r) = with_secrets(s, secrets) {
                *s = r;
            }
        }
        J::Array(items) => items.iter_mut().for_each(|i| json_with_secrets(i, secrets)),
        J::Object(m) => {
            *m = std::mem::take(m)
                .into_iter()
                .map(|(k, mut val)| {
                    json_with_secrets(&mut val, secrets);
                    (with_secrets(&k, secrets).into_owned(), val)
                })
                .collect();
        }
        _ => {}
    }
}

/// Secret lists merged, longest first (see [`with_secrets`]).
pub fn merge<'a>(lists: &[&'a [String]]) -> Vec<&'a str> {
    let mut all: Vec<&str> = lists
        .iter()
        .flat_map(|l| l.iter().map(String::as_str))
        .collect();
    all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        text(s).into_owned()
    }

    #[test]
    fn userinfo_is_hidden() {
        assert_eq!(t("http://user:pass@h/x"), "http://<redacted>@h/x");
        assert_eq!(
            t("https://u:p@ss@h:8443/?a=b"),
            "https://<redacted>@h:8443/?a=b"
        );
        assert_eq!(t("http://user@h/"), "http://<redacted>@h/");
        assert_eq!(t("ws://u:p@[::1]:80/"), "ws://<redacted>@[::1]:80/");
        assert_eq!(t("http://[::1]:80/a@b"), "http://[::1]:80/a@b");
        assert_eq!(t("http://h/p?next=a@b"), "http://h/p?next=a@b");
        assert_eq!(t("HTTP://U:P@H/"), "HTTP://<redacted>@H/");
        assert_eq!(
            t("cannot fetch http://a:b@127.0.0.1:1/x: refused, also redis://:pw@r:6379"),
            "cannot fetch http://<redacted>@127.0.0.1:1/x: refused, also redis://<redacted>@r:6379"
        );
        assert_eq!(
            t("mail a@b.c about http://x/"),
            "mail a@b.c about http://x/"
        );
    }

    #[test]
    fn credential_parameters_are_hidden() {
        assert_eq!(
            t("https://h/p?access_token=abc&q=1"),
            "https://h/p?access_token=<redacted>&q=1"
        );
        assert_eq!(
            t("/p?a=1&token=x&token=y&TOKEN=z"),
            "/p?a=1&token=<redacted>&token=<redacted>&TOKEN=<redacted>"
        );
        assert_eq!(
            t("https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=f00d&X-Amz-Expires=60"),
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>&X-Amz-Expires=60"
        );
        assert_eq!(
            t("http://h/?access%5Ftoken=abc"),
            "http://h/?access%5Ftoken=<redacted>"
        );
        assert_eq!(
            t("https://app/cb#id_token=eyJ&state=s1"),
            "https://app/cb#id_token=<redacted>&state=s1"
        );
        assert_eq!(t("http://h/?key=v#frag"), "http://h/?key=<redacted>#frag");
        assert_eq!(
            t("http://[::1]:9/?sig=1234"),
            "http://[::1]:9/?sig=<redacted>"
        );
        assert_eq!(t("http://h/?token=&q=1"), "http://h/?token=&q=1");
        assert_eq!(
            t("final_url=\"http://h/?apikey=abc\" ok"),
            "final_url=\"http://h/?apikey=<redacted>\" ok"
        );
    }

    #[test]
    fn other_text_is_untouched_and_twice_is_once() {
        for s in [
            "",
            "no url here",
            "a = b & c",
            "http://h/?q=token&page=2",
            "x=1",
            "http://[2001:db8::1]:8080/path?monkey=1",
            "probe failed: connection refused",
        ] {
            assert!(matches!(text(s), Cow::Borrowed(_)), "{s} changed");
        }
        let once = t("http://u:p@h/?token=a&password=b");
        assert_eq!(t(&once), once);
        assert_eq!(
            once,
            "http://<redacted>@h/?token=<redacted>&password=<redacted>"
        );
    }

    #[test]
    fn credentials_are_the_values_hidden() {
        assert_eq!(
            credentials("http://u:p%40ss@h/?token=a%2Fb&q=1 and ftp://anon@x"),
            vec!["p%40ss", "p@ss", "u:p%40ss", "u:p@ss", "anon", "a%2Fb", "a/b"]
        );
        assert!(credentials("http://h/?q=1").is_empty());
    }

    #[test]
    fn values_first_then_shapes() {
        let secrets = ["abc&token=xyz".to_string(), "abc".to_string()];
        let merged = merge(&[&secrets[..]]);
        assert_eq!(merged, vec!["abc&token=xyz", "abc"]);
        assert_eq!(
            with_secrets("http://h/?q=abc&token=xyz&u=abc", &merged),
            "http://h/?q=<redacted>&u=<redacted>"
        );
        let mut v = serde_json::json!({"a": ["http://u:p@h", "abc"], "abc": 1});
        json_with_secrets(&mut v, &merged);
        assert_eq!(
            v,
            serde_json::json!({"a": ["http://<redacted>@h", "<redacted>"], "<redacted>": 1})
        );
    }
}
