//! Compilers of settings that several step kinds spell the same way (URLs). Each kind's own
//! builder is in [`super::kinds`]; what blackbox modules share with steps (TLS, rcodes, header
//! matchers) is in [`super::probe_settings`].

use url::Url;

use super::build::Cx;

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
