//! The StatefulSet's `replicas`, read from the Kubernetes API as the pod itself: the API server
//! from `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's token, CA and namespace from the
//! files Kubernetes mounts in every pod. A pod cannot learn the count any other way (the
//! downward API does not offer it), and reading it is what lets `kubectl scale` reshard.
//!
//! Everything the API answers is treated as hostile: the body is bounded, the count must be a
//! whole number in range, and no error quotes the token (it is read from its file on every
//! request, since Kubernetes rotates projected tokens).

use std::path::PathBuf;
use std::time::Duration;

use crate::shard::MAX_SHARDS;

/// Where Kubernetes mounts the service account; overridable for tests and unusual mounts.
pub const SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Environment variable that overrides [`SERVICEACCOUNT_DIR`].
pub const SERVICEACCOUNT_DIR_ENV: &str = "SONDE_KUBERNETES_SERVICEACCOUNT_DIR";
/// A StatefulSet object is a few KiB; anything much larger is not one.
const MAX_BODY: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One StatefulSet's `replicas`, as this pod's service account sees it.
#[derive(Clone)]
pub struct StatefulSetApi {
    url: String,
    /// `namespace/name`, for messages.
    what: String,
    token_file: PathBuf,
    client: reqwest::Client,
}

/// A DNS-1123 subdomain, which is what StatefulSet and namespace names are; checking it keeps
/// the request's path to exactly the object named.
pub fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

impl StatefulSetApi {
    /// The client for StatefulSet `name` in the pod's own namespace.
    pub fn in_cluster(name: &str) -> Result<StatefulSetApi, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let host = var(super::KUBERNETES_HOST_ENV)
            .ok_or("KUBERNETES_SERVICE_HOST is not set: not in a Kubernetes pod")?;
        let port = var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
        let dir =
            PathBuf::from(var(SERVICEACCOUNT_DIR_ENV).unwrap_or_else(|| SERVICEACCOUNT_DIR.into()));
        let read = |file: &str| {
            std::fs::read(dir.join(file)).map_err(|e| {
                format!("the service account's {file} ({}): {e} — is a service account token mounted (automountServiceAccountToken)?", dir.join(file).display())
            })
        };
        let namespace = match var("POD_NAMESPACE") {
            Some(ns) => ns,
            None => String::from_utf8_lossy(&read("namespace")?)
                .trim()
                .to_string(),
        };
        if !is_object_name(&namespace) {
            return Err(format!("{namespace:?} is not a namespace name"));
        }
        if !is_object_name(name) {
            return Err(format!("{name:?} is not a StatefulSet name"));
        }
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("KUBERNETES_SERVICE_PORT={port:?} is not a port"));
        }
        let ca = read("ca.crt")?;
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT);
        let certs = reqwest::Certificate::from_pem_bundle(&ca)
            .map_err(|e| format!("the service account's ca.crt: {e}"))?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
        let client = builder
            .build()
            .map_err(|e| format!("the Kubernetes API client: {e}"))?;
        Ok(StatefulSetApi {
            url: format!(
                "https://{host}:{port}/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"
            ),
            what: format!("{namespace}/{name}"),
            token_file: dir.join("token"),
            client,
        })
    }

    /// `namespace/name`.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// The StatefulSet's desired `replicas` (Kubernetes' default, 1, when absent).
    pub async fn replicas(&self) -> Result<u32, String> {
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("the service account's token: {e}"))?;
        let token = token.trim();
        if token.is_empty() {
            return Err("the service account's token file is empty".into());
        }
        let mut resp = self
            .client
            .get(&self.url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the Kubernetes API: {}",
                    crate::error_chain::error_chain(&e.without_url())
                )
            })?;
        self.check_status(resp.status())?;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("the Kubernetes API's answer: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!(
                    "the Kubernetes API's answer is over {} KiB — not a StatefulSet",
                    MAX_BODY / 1024
                ));
            }
            body.extend_from_slice(&chunk);
        }
        replicas_of(&body).map_err(|e| format!("StatefulSet {}: {e}", self.what))
    }

    fn check_status(&self, status: reqwest::StatusCode) -> Result<(), String> {
        let what = &self.what;
        match status.as_u16() {
            200 => Ok(()),
            401 => Err(format!("the Kubernetes API refused the service account's token (401) when reading StatefulSet {what}")),
            403 => Err(format!("the service account may not read StatefulSet {what} (403) — grant it `get` on statefulsets in its namespace (deploy/kubernetes/sharded-rbac.yaml)")),
            404 => Err(format!("no StatefulSet {what} (404) — set SONDE_STATEFULSET to the StatefulSet's name")),
            _ => Err(format!("the Kubernetes API answered {status} for StatefulSet {what}")),
        }
    }
}

/// `spec.replicas` of a StatefulSet object, bounded like `--shard`.
fn replicas_of(body: &[u8]) -> Result<u32, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if v.get("kind").and_then(|k| k.as_str()) != Some("StatefulSet") {
        return Err("the answer is not a StatefulSet object".into());
    }
    let replicas = match v.pointer("/spec/replicas") {
        None | Some(serde_json::Value::Null) => return Ok(1),
        Some(r) => r,
    };
    replicas
        .as_u64()
        .filter(|n| *n <= u64::from(MAX_SHARDS))
        .map(|n| n as u32)
        .ok_or_else(|| {
            format!("spec.replicas is {replicas}, not a number of shards from 0 to {MAX_SHARDS}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_come_from_the_spec_and_are_bounded() {
        let obj = |spec: &str| format!(r#"{{"kind":"StatefulSet","spec":{spec}}}"#);
        assert_eq!(replicas_of(obj(r#"{"replicas":5}"#).as_bytes()), Ok(5));
        assert_eq!(replicas_of(obj(r#"{"replicas":0}"#).as_bytes()), Ok(0));
        // Kubernetes' default when the field is left out.
        assert_eq!(replicas_of(obj("{}").as_bytes()), Ok(1));
        for bad in [
            r#"{"replicas":-1}"#,
            r#"{"replicas":1.5}"#,
            r#"{"replicas":"3"}"#,
            r#"{"replicas":4294967296}"#,
        ] {
            let err = replicas_of(obj(bad).as_bytes()).unwrap_err();
            assert!(err.contains("not a number of shards"), "{bad}: {err}");
        }
        let err = replicas_of(br#"{"kind":"Status","code":404}"#).unwrap_err();
        assert!(err.contains("not a StatefulSet"), "{err}");
        assert!(replicas_of(b"<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn object_names_keep_the_path_to_one_object() {
        for ok in ["sonde", "sonde-ap-east", "a.b-c9"] {
            assert!(is_object_name(ok), "{ok}");
        }
        for bad in ["", "Sonde", "a/b", "..", "-a", "a-", "a?b", "a b", "a%2fb"] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }
}
