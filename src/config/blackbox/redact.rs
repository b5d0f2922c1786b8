//! What `/config` and `debug=true` show of a module: the module as written, secrets replaced.

use serde_json::Value as J;

use crate::config::redact::{redact, REDACTED};

/// Replace secrets in a module as written: the scenario format's secret keys, plus blackbox's
/// `credentials`, `http_headers` `secrets`, `key` for inline PEM keys, and the values of
/// `proxy_connect_header` (secrets in prometheus/common; their names stay visible).
pub fn redact_module(v: &mut J) {
    redact(v);
    fn walk(v: &mut J) {
        match v {
            J::Object(m) => {
                for (k, val) in m.iter_mut() {
                    if matches!(
                        k.as_str(),
                        "credentials" | "key" | "client_secret" | "secrets"
                    ) {
                        *val = J::String(REDACTED.into());
                    } else if k == "proxy_connect_header" {
                        hide_values(val);
                    } else {
                        walk(val);
                    }
                }
            }
            J::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(v);
}

/// `{Name: [v, …]}` → `{Name: [<redacted>, …]}`; anything else shaped wrongly is hidden whole.
fn hide_values(v: &mut J) {
    match v {
        J::Object(m) => {
            for val in m.values_mut() {
                match val {
                    J::Array(a) => a.iter_mut().for_each(|x| *x = J::String(REDACTED.into())),
                    other => *other = J::String(REDACTED.into()),
                }
            }
        }
        other => *other = J::String(REDACTED.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_secrets_are_hidden() {
        let mut v = serde_json::json!({
            "prober": "http",
            "http": {
                "basic_auth": {"username": "u", "password": "hunter2"},
                "authorization": {"type": "Bearer", "credentials": "tok3n"},
                "bearer_token": "abc",
                "headers": {"X-Api-Key": "k3y", "Accept": "text/html"},
                "proxy_url": "http://user:pw@127.0.0.1:3128",
                "proxy_connect_header": {"Proxy-Authorization": ["Bearer c0nnect"]}
            }
        });
        redact_module(&mut v);
        let text = v.to_string();
        for secret in ["hunter2", "tok3n", "\"abc\"", "k3y", ":pw@", "c0nnect"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("text/html"));
        assert!(text.contains("Proxy-Authorization"), "{text}");
    }
}
