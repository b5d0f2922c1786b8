//! The `/config` view of a scenario (as written, templates unrendered, secrets replaced) and
//! its fingerprint.
//!
//! The redacted view is built from the YAML as written rather than from the typed model, so it
//! shows what the user wrote (templates like `{{ env.TOKEN }}` stay templates: a secret from the
//! environment never reaches it) and costs no second deserialization.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value as J;
use sonde_probes::http::is_secret_header;

pub use crate::redact::REDACTED;

const SECRET_KEYS: [&str; 2] = ["password", "bearer_token"];

/// Replace secrets in place: `password` and `bearer_token` values anywhere, the values of secret
/// headers ([`is_secret_header`]: `Authorization`, `Cookie`, `X-Api-Key`…) in any `headers`
/// mapping; then, whatever the key, every URL userinfo (the http probe sends it as Basic auth)
/// and credential-looking query parameter ([`crate::redact::text`]).
pub fn redact(v: &mut J) {
    redact_keys(v);
    crate::redact::json(v);
}

fn redact_keys(v: &mut J) {
    match v {
        J::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) {
                    *val = J::String(REDACTED.into());
                } else if k == "headers" {
                    if let J::Object(h) = val {
                        for (name, hv) in h.iter_mut() {
                            if is_secret_header(name) {
                                *hv = J::String(REDACTED.into());
                            }
                        }
                    }
                    redact_keys(val);
                } else {
                    redact_keys(val);
                }
            }
        }
        J::Array(items) => items.iter_mut().for_each(redact_keys),
        _ => {}
    }
}

/// Values shorter than this are not treated as secrets in traces: redacting every "1" or "ok" in
/// a trace would destroy it, and such values protect nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// The secret values of a scenario as written: the values of every environment variable its
/// templates reference (`env.NAME`, `env["NAME"]`) — a template may carry them anywhere, a URL,
/// a header, a TCP send — and the literal values at secret keys. The engine's traces and logs
/// replace them with `<redacted>` wherever they appear. Longest first, so a secret that contains
/// another is replaced whole.
pub fn secrets(raw: &J, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    static ENV_REF: OnceLock<Regex> = OnceLock::new();
    let env_ref = ENV_REF.get_or_init(|| {
        Regex::new(r#"env\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])"#)
            .expect("static regex")
    });
    let mut out = Vec::new();
    // (value, is it at a secret key, is it a `headers` mapping)
    let mut walk = vec![(raw, false, false)];
    while let Some((v, secret_key, is_headers)) = walk.pop() {
        match v {
            J::Object(m) => {
                for (k, val) in m {
                    let secret = if is_headers {
                        is_secret_header(k)
                    } else {
                        SECRET_KEYS.contains(&k.as_str())
                    };
                    walk.push((val, secret, k == "headers"));
                }
            }
            J::Array(items) => walk.extend(items.iter().map(|i| (i, false, false))),
            J::String(s) => {
                // `{{ env }}` or `env | items` renders the whole environment: every value it
                // holds is then a secret of this scenario (fuzz finding: it reached errors).
                if whole_env(s) {
                    for (name, _) in std::env::vars_os() {
                        if let Some(v) = name.to_str().and_then(&env) {
                            out.push(v);
                        }
                    }
                }
                for c in env_ref.captures_iter(s) {
                    if let Some(v) = c.get(1).or(c.get(2)).and_then(|n| env(n.as_str())) {
                        out.push(v);
                    }
                }
                if secret_key && !s.contains("{{") {
                    out.push(s.clone());
                }
                // Credentials written in a URL (userinfo, `?api_key=`): a server may echo them.
                if !s.contains("{{") {
                    out.extend(crate::redact::credentials(s));
                }
            }
            _ => {}
        }
    }
    out.retain(|s| s.len() >= MIN_SECRET_LEN);
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// Whether a template uses `env` itself rather than one of its variables (`env.NAME`,
/// `env["NAME"]`).
fn whole_env(s: &str) -> bool {
    static BARE: OnceLock<Regex> = OnceLock::new();
    let bare = BARE.get_or_init(|| Regex::new(r"\benv\b\s*(.?)").expect("static regex"));
    s.contains("{") && bare.captures_iter(s).any(|c| !matches!(&c[1], "." | "["))
}

/// A fingerprint built from several parts (FNV-1a, see [`crate::hash`]); a separator byte after
/// each part makes ("ab", "c") and ("a", "bc") differ.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(crate::hash::FNV_OFFSET)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        self.0 = crate::hash::fnv1a(crate::hash::fnv1a(self.0, bytes), &[0xff]);
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced() {
        let mut v = serde_json::json!({
            "http": {"url": "http://x", "headers": {"authorization": "Bearer x", "X-A": "1"},
                     "basic_auth": {"username": "u", "password": "p"},
                     "proxy_url": "http://user:pw@proxy:3128/"},
            "steps": [{"http": {"url": "https://probe:hunter2@api:8443?next=a@b"}}],
            "vars": {"password": "{{ env.P }}"}
        });
        redact(&mut v);
        assert_eq!(v["http"]["headers"]["authorization"], REDACTED);
        assert_eq!(v["http"]["headers"]["X-A"], "1");
        assert_eq!(v["http"]["basic_auth"]["password"], REDACTED);
        assert_eq!(v["http"]["basic_auth"]["username"], "u");
        assert_eq!(v["http"]["proxy_url"], "http://<redacted>@proxy:3128/");
        assert_eq!(
            v["steps"][0]["http"]["url"],
            "https://<redacted>@api:8443?next=a@b"
        );
        assert_eq!(v["http"]["url"], "http://x");
        assert_eq!(v["vars"]["password"], REDACTED);
    }

    #[test]
    fn secrets_come_from_env_references_and_secret_keys() {
        let raw = serde_json::json!({
            "vars": {"token": "{{ env.API_TOKEN }}", "short": "{{ env['SHORT'] }}"},
            "http": {"url": "https://x/?k={{ env[\"KEY\"] }}",
                     "headers": {"Authorization": "Bearer literal-token", "X-Api-Key": "literal-api-key",
                                 "Accept": "application/json"},
                     "basic_auth": {"username": "u", "password": "{{ env.API_TOKEN }}"}},
            "tcp": {"query_response": [{"send": "AUTH {{ env.MISSING }}"}]}
        });
        let env = |n: &str| match n {
            "API_TOKEN" => Some("s3cr3t-token".to_string()),
            "KEY" => Some("key-value-12".to_string()),
            "SHORT" => Some("ab".to_string()),
            _ => None,
        };
        assert_eq!(
            secrets(&raw, env),
            vec![
                "Bearer literal-token",
                "literal-api-key",
                "key-value-12",
                "s3cr3t-token"
            ]
        );
    }
}
