//! Writing HTML by hand, safely: every value from outside (scenario names, groups, reasons,
//! error messages, traces) goes through [`esc`]; only literals of this module tree are written
//! raw. Attribute values are always double-quoted, so escaping `"` is enough there too.

use std::fmt::Write;

/// `s` safe in element text and in double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one path segment or query value (everything but unreserved characters escaped).
pub fn url_part(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A scenario name as a path (its `/`s kept: names may contain them, and the route takes the
/// rest of the path).
pub fn url_path(s: &str) -> String {
    s.split('/').map(url_part).collect::<Vec<_>>().join("/")
}

/// Seconds in words a person reads at a glance: `850 µs`, `12 ms`, `1.4 s`.
pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        return "–".into();
    }
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else if s < 100.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// A ratio as a percentage with the precision uptimes need (99.95 % is not 100 %).
pub fn percent(r: Option<f64>) -> String {
    match r {
        None => "–".into(),
        Some(r) if r >= 1.0 => "100%".into(),
        Some(r) => {
            let p = (r * 100.0 * 100.0).floor() / 100.0;
            format!("{p:.2}%")
        }
    }
}

/// Unix milliseconds as `2026-12-06 05:40:12 UTC`.
pub fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let s = crate::time::rfc3339(t);
    // 2026-12-06T05:40:12.345Z
    let s = s.replacen('T', " ", 1);
    match s.find('.') {
        Some(dot) => format!("{} UTC", &s[..dot]),
        None => format!("{} UTC", s.trim_end_matches('Z')),
    }
}

/// "3 min ago" from a Unix-ms time to `now`.
pub fn ago(ms: i64, now: i64) -> String {
    let s = ((now - ms).max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The page around `body`: head, stylesheet, the header with its navigation.
pub struct Page<'a> {
    pub title: &'a str,
    pub site: &'a str,
    pub base: &'a str,
    /// Links of the header: (href relative to base, text).
    pub nav: &'a [(&'a str, &'a str)],
}

impl Page<'_> {
    pub fn render(&self, body: &str) -> String {
        let mut out = String::with_capacity(body.len() + 2048);
        let base = esc(self.base);
        let _ = write!(
            out,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{title} · {site}</title><link rel=\"icon\" href=\"data:,\">\
<link rel=\"stylesheet\" href=\"{base}/assets/status.css\">\
<script src=\"{base}/assets/status.js\" defer></script></head>\
<body><a class=\"skip\" href=\"#main\">Skip to content</a><header><a class=\"brand\" href=\"{base}/\">{site}</a><nav>",
            title = esc(self.title),
            site = esc(self.site),
        );
        for (href, text) in self.nav {
            let _ = write!(out, "<a href=\"{base}{}\">{}</a>", esc(href), esc(text));
        }
        let _ = writeln!(
            out,
            "</nav></header><main id=\"main\">{body}</main></body></html>"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_and_attributes_need() {
        assert_eq!(
            esc("<script>alert('x')</script>\"&"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"
        );
        assert_eq!(url_path("a b/c?d#e"), "a%20b/c%3Fd%23e");
    }

    #[test]
    fn numbers_read_as_people_say_them() {
        assert_eq!(secs(0.0123), "12 ms");
        assert_eq!(secs(1.44), "1.4 s");
        assert_eq!(percent(Some(0.99999)), "99.99%");
        assert_eq!(percent(Some(1.0)), "100%");
        assert_eq!(percent(None), "–");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(ago(0, 180_000), "3 min ago");
    }
}
