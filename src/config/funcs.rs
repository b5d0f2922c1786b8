//! The functions templates may call (`{{ uuid() }}`, `{{ 'x' | base64 }}`…).
//!
//! Two kinds: *pure* ones (base64, sha256, hmac_sha256, urlencode, json, file…) give the same
//! answer every time and are rendered once at load like any template; *per-run* ones (uuid, now,
//! now_ms, random, random_string) make the step that uses them render anew for every run, so
//! every run sends a fresh id. [`PER_RUN`] lists the latter: the loader looks for them in a
//! template's names to decide.
//!
//! `file(path)` reads a file relative to the YAML file, confined as [`super::trust`] says; like `env`, its content is a secret: the
//! render collects it (through [`SecretSink`]) so traces, logs and `/config` never show it.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use minijinja::value::{Object, Value as JValue};
use minijinja::{Environment, Error, ErrorKind, State};

/// Functions whose result changes from one call to the next.
pub const PER_RUN: [&str; 5] = ["uuid", "now", "now_ms", "random", "random_string"];

/// Every function name, for the "is this name defined" check.
pub const ALL: [&str; 14] = [
    "uuid",
    "now",
    "now_ms",
    "random",
    "random_string",
    "base64",
    "b64decode",
    "urlencode",
    "sha256",
    "hmac_sha256",
    "file",
    "json",
    // minijinja's own globals.
    "range",
    "dict",
];

/// The context key holding the folder `file()` paths are relative to.
pub const DIR_KEY: &str = "__dir";
/// The context key holding the folder `file()` is confined to; absent when `file()` is refused
/// ([`super::trust`]).
pub const ROOT_KEY: &str = "__root";
/// The context key holding the render's [`SecretSink`].
pub const SINK_KEY: &str = "__secrets";

/// Collects secret values produced while rendering (file contents).
#[derive(Debug, Default)]
pub struct SecretSink(pub Mutex<Vec<String>>);

impl Object for SecretSink {}

impl SecretSink {
    pub fn value() -> (Arc<SecretSink>, JValue) {
        let sink = Arc::new(SecretSink::default());
        (sink.clone(), JValue::from_dyn_object(sink))
    }

    pub fn push(&self, secret: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(secret);
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn text(v: &JValue) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn uuid() -> String {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

fn random(n: i64) -> Result<i64, Error> {
    if n <= 0 {
        return Err(bad(format!("random({n}): expected a bound above 0")));
    }
    Ok(fastrand::i64(0..n))
}

fn random_string(n: i64) -> Result<String, Error> {
    if !(0..=4096).contains(&n) {
        return Err(bad(format!(
            "random_string({n}): expected a length from 0 to 4096"
        )));
    }
    Ok((0..n).map(|_| fastrand::alphanumeric()).collect())
}

fn b64(v: JValue) -> String {
    base64::engine::general_purpose::STANDARD.encode(text(&v))
}

fn b64decode(v: JValue) -> Result<String, Error> {
    let s = text(&v);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim()))
        .map_err(|e| bad(format!("b64decode: {e}")))?;
    String::from_utf8(bytes).map_err(|_| bad("b64decode: the decoded bytes are not UTF-8 text"))
}

fn urlencode(v: JValue) -> String {
    url::form_urlencoded::byte_serialize(text(&v).as_bytes()).collect()
}

fn sha256(v: JValue) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text(&v).as_bytes()).as_ref())
}

fn hmac_sha256(key: JValue, msg: JValue) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, text(&key).as_bytes());
    hex(ring::hmac::sign(&k, text(&msg).as_bytes()).as_ref())
}

fn json(v: JValue) -> Result<String, Error> {
    serde_json::to_string(&v).map_err(|e| bad(format!("json: {e}")))
}

fn file(state: &State, path: String) -> Result<String, Error> {
    let lookup = |key| {
        state
            .lookup(key)
            .and_then(|d| d.as_str().map(str::to_string))
    };
    let dir = lookup(DIR_KEY).unwrap_or_default();
    // No root: the document came from a URL (see `trust`).
    let Some(root) = lookup(ROOT_KEY) else {
        return Err(bad(format!(
            "file({path:?}): {}",
            super::trust::NO_FILE_REMOTE
        )));
    };
    let content = super::trust::read_confined(
        std::path::Path::new(&dir),
        std::path::Path::new(&root),
        &path,
    )
    .map_err(|reason| bad(format!("file({path:?}): {reason}")))?;
    // A trailing newline is an artefact of editors, never part of a token or password.
    let content = content.strip_suffix('\n').unwrap_or(&content);
    let content = content.strip_suffix('\r').unwrap_or(content).to_string();
    // A stand-in render (see `taint`): a stand-in of the content, collected nowhere.
    if let Some(k) = state
        .lookup(super::taint::TAINT_KEY)
        .and_then(|k| k.as_usize())
    {
        return Ok(super::taint::perturb(&content, k));
    }
    if let Some(sink) = state.lookup(SINK_KEY) {
        if let Some(sink) = sink.downcast_object_ref::<SecretSink>() {
            sink.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(content.clone());
        }
    }
    Ok(content)
}

/// Register every function (and the string ones as filters too: `x | base64`).
pub fn register(env: &mut Environment<'static>) {
    env.add_function("uuid", uuid);
    env.add_function("now", now);
    env.add_function("now_ms", crate::time::now_ms);
    env.add_function("random", random);
    env.add_function("random_string", random_string);
    env.add_function("base64", b64);
    env.add_function("b64decode", b64decode);
    env.add_function("urlencode", urlencode);
    env.add_function("sha256", sha256);
    env.add_function("hmac_sha256", hmac_sha256);
    env.add_function("file", file);
    env.add_function("json", json);
    env.add_filter("base64", b64);
    env.add_filter("b64decode", b64decode);
    env.add_filter("urlencode", urlencode);
    env.add_filter("sha256", sha256);
    env.add_filter("hmac_sha256", hmac_sha256);
    env.add_filter("json", json);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> String {
        let mut env = Environment::new();
        register(&mut env);
        env.render_str(src, minijinja::context! {}).unwrap()
    }

    #[test]
    fn pure_functions() {
        assert_eq!(render("{{ base64('\\0user\\0pw') }}"), "AHVzZXIAcHc=");
        assert_eq!(
            render("{{ 'AHVzZXIAcHc=' | b64decode | urlencode }}"),
            "%00user%00pw"
        );
        assert_eq!(
            render("{{ sha256('abc') }}"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            render("{{ hmac_sha256('Jefe', 'what do ya want for nothing?') }}"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(render("{{ json('a\"b') }}"), "\"a\\\"b\"");
        assert_eq!(render("{{ urlencode('a b&c') }}"), "a+b%26c");
    }

    #[test]
    fn per_run_functions() {
        let u = render("{{ uuid() }}");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert_ne!(u, render("{{ uuid() }}"));
        assert_eq!(render("{{ random_string(12) }}").len(), 12);
        let r: i64 = render("{{ random(3) }}").parse().unwrap();
        assert!((0..3).contains(&r));
        let ms: i64 = render("{{ now_ms() }}").parse().unwrap();
        let s: i64 = render("{{ now() }}").parse().unwrap();
        assert!((ms / 1000 - s).abs() <= 1);
    }
}
