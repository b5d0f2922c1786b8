//! Loading a blackbox_exporter configuration file (`modules:`) into ready-to-probe [`Module`]s.
//!
//! Errors use the scenario loader's machinery, so they read the same way:
//! `blackbox.yml:7:7: unknown key `valid_status_code` — did you mean `valid_status_codes`?`.
//! Every module is typed on its own, so one broken module does not hide the others' errors.
//! Expensive things (TLS clients, files named by the module) are built here, once per load; a
//! probe only fills in its target. The shared helpers (IP options, files, TLS) are here; each
//! prober's options are compiled in [`http_modules`] and [`probers`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_norway::Value;
use sonde_probes::resolve::{IpProtocol, ResolveOptions};
use sonde_probes::tls::{TlsOptions, TlsVersion};

mod builtin;
mod http_auth;
mod http_modules;
pub mod model;
pub mod module;
mod probers;
mod redact;

pub use builtin::{builtin_modules, BUILTIN_MODULES};
pub use redact::redact_module;

use crate::config::build::{Alpn, Cx, Shared};
use crate::config::deser::deserialize_recovering;
use crate::config::error::FileErrors;
use crate::config::locate::{key_path, PosIndex};
use crate::config::redact::Fnv;
use crate::config::suggest;
use model::{FileModel, ModuleModel, TlsConfigModel};
use module::{Module, Modules, Prober, Spec, TlsSpec};

/// The probers sonde runs, as blackbox names them.
pub const PROBERS: [&str; 6] = ["http", "tcp", "icmp", "dns", "grpc", "unix"];

/// "`x` is not supported yet …": an option sonde knows but cannot honour. Refusing it beats
/// probing differently from what the user configured.
pub(super) fn not_yet(cx: &mut Cx, path: &str, what: &str) {
    let key = path.rsplit('.').next().unwrap_or(path);
    cx.err_key(
        path,
        format!(
            "`{key}` is not supported yet by sonde's blackbox_exporter compatibility{what} — \
             expected it left out (or the module kept on blackbox_exporter for now)"
        ),
    );
}

/// Whether the top level of a parsed file is a blackbox configuration.
pub fn is_blackbox(top: &serde_norway::Mapping) -> bool {
    top.contains_key("modules")
}

/// Compile the modules of one file (already parsed into `top`) into `out`. `dir` is the file's
/// folder: relative file names in modules are relative to it.
pub fn load_file(
    top: Value,
    dir: &Path,
    index: &PosIndex,
    errors: &mut FileErrors,
    out: &mut Modules,
) {
    let rec =
        deserialize_recovering::<FileModel>(top, "", "a blackbox configuration", index, errors);
    let Some(file) = rec.value else { return };
    let Some(modules) = file.modules else {
        errors.push(
            index.key("modules"),
            "`modules` is empty — expected a mapping of module names to modules",
        );
        return;
    };
    let mut shared = Shared::default();
    let mut hash = Fnv::default();
    for (name, raw) in modules.0 {
        let path = key_path("modules", &name);
        if let Some(prev) = out.get(&name) {
            errors.push(
                index.key(&path),
                format!(
                    "duplicate module name `{name}` — already defined in {}",
                    prev.defined_in
                ),
            );
            continue;
        }
        let mut shown = serde_json::to_value(&raw).unwrap_or_default();
        redact_module(&mut shown);
        let m = deserialize_recovering::<ModuleModel>(raw, &path, "a module", index, errors);
        let Some(m) = m.value else { continue };
        let mut cx = Cx {
            index,
            errors,
            shared: &mut shared,
            dir,
            hash: &mut hash,
        };
        if let Some(module) = compile_module(&name, &path, m, &mut cx) {
            let module = Module {
                shown,
                defined_in: cx.errors.file.clone(),
                ..module
            };
            out.insert(name, Arc::new(module));
        }
    }
}

fn compile_module(name: &str, path: &str, m: ModuleModel, cx: &mut Cx) -> Option<Module> {
    let p = |k: &str| key_path(path, k);
    let before = cx.errors.len();
    let prober = match m.prober.as_str() {
        "http" => Some(Prober::Http),
        "tcp" => Some(Prober::Tcp),
        "icmp" => Some(Prober::Icmp),
        "dns" => Some(Prober::Dns),
        "grpc" => Some(Prober::Grpc),
        "unix" => Some(Prober::Unix),
        other => {
            cx.err_value(
                &p("prober"),
                format!("unknown prober `{other}`{}", suggest::hint(other, &PROBERS)),
            );
            None
        }
    };
    // blackbox treats 0 as "no module timeout"; so do we.
    let timeout = m.timeout.map(|d| d.0);
    let spec = match prober? {
        Prober::Http => http_modules::http(&m.http.unwrap_or_default(), &p("http"), cx)
            .map(|h| Spec::Http(Box::new(h))),
        Prober::Tcp => probers::tcp(&m.tcp.unwrap_or_default(), &p("tcp"), cx).map(Spec::Tcp),
        Prober::Icmp => probers::icmp(&m.icmp.unwrap_or_default(), &p("icmp"), cx).map(Spec::Icmp),
        Prober::Dns => match m.dns {
            Some(d) => probers::dns(&d, &p("dns"), cx).map(Spec::Dns),
            None => {
                cx.err_key(
                    path,
                    "query name must be set for DNS module — expected `dns: {query_name: …}`",
                );
                None
            }
        },
        Prober::Grpc => probers::grpc(&m.grpc.unwrap_or_default(), &p("grpc"), cx).map(Spec::Grpc),
        Prober::Unix => probers::unix(&m.unix.unwrap_or_default(), &p("unix"), cx).map(Spec::Unix),
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(Module {
        name: name.to_string(),
        prober: prober?,
        timeout: timeout.filter(|t| !t.is_zero()),
        spec: spec?,
        shown: serde_json::Value::Null,
        defined_in: String::new(),
    })
}

/// blackbox's `preferred_ip_protocol` (default `ip6`) and `ip_protocol_fallback` (default true).
pub(super) fn ip_options(
    pref: Option<&str>,
    fallback: Option<bool>,
    path: &str,
    cx: &mut Cx,
) -> ResolveOptions {
    let preferred = match pref.map(str::trim) {
        None | Some("") | Some("ip6") => IpProtocol::Ip6,
        Some("ip4") => IpProtocol::Ip4,
        Some(other) => {
            cx.err_value(
                path,
                format!(
                    "unknown value `{other}` for `preferred_ip_protocol`{}",
                    suggest::hint(other, &["ip4", "ip6"])
                ),
            );
            IpProtocol::Ip6
        }
    };
    ResolveOptions {
        preferred,
        fallback: fallback.unwrap_or(true),
    }
}

/// Read a file named by a module (relative to the configuration file's folder).
pub(super) fn read_file(cx: &mut Cx, file: &str, path: &str) -> Option<Vec<u8>> {
    let full = cx.dir.join(file);
    match std::fs::read(&full) {
        Ok(b) => Some(b),
        Err(e) => {
            let reason = crate::config::io_reason(&e);
            cx.err_value(
                path,
                format!(
                    "cannot read {:?}: {reason} — expected a readable file",
                    full.display().to_string()
                ),
            );
            None
        }
    }
}

pub(super) fn read_secret(cx: &mut Cx, file: &str, path: &str) -> Option<String> {
    let b = read_file(cx, file, path)?;
    Some(String::from_utf8_lossy(&b).trim().to_string())
}

/// prometheus/common's `tls_config` → what sonde's TLS client needs, files resolved.
pub(super) fn tls_options(
    m: Option<&TlsConfigModel>,
    path: &str,
    cx: &mut Cx,
) -> Option<TlsOptions> {
    let Some(m) = m else {
        return Some(TlsOptions::default());
    };
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    for (k, v) in [
        ("ca", m.ca.is_some()),
        ("cert", m.cert.is_some()),
        ("key", m.key.is_some()),
        ("ca_ref", m.ca_ref.is_some()),
        ("cert_ref", m.cert_ref.is_some()),
        ("key_ref", m.key_ref.is_some()),
    ] {
        if v {
            not_yet(cx, &p(k), " (use ca_file, cert_file and key_file)");
        }
    }
    let file = |k: &str, v: &Option<String>, cx: &mut Cx| -> Option<PathBuf> {
        let f = v.as_ref()?;
        read_file(cx, f, &p(k))?;
        Some(cx.dir.join(f))
    };
    let ca_file = file("ca_file", &m.ca_file, cx);
    let cert_file = file("cert_file", &m.cert_file, cx);
    let key_file = file("key_file", &m.key_file, cx);
    let version = |k: &str, v: &Option<String>, cx: &mut Cx| match v.as_deref() {
        None | Some("") => None,
        Some("TLS12") => Some(TlsVersion::Tls12),
        Some("TLS13") => Some(TlsVersion::Tls13),
        Some(w @ ("TLS10" | "TLS11")) => {
            cx.err_value(
                &p(k),
                format!(
                    "`{w}` is not supported — sonde speaks TLS 1.2 and 1.3 only; expected TLS12 or TLS13"
                ),
            );
            None
        }
        Some(w) => {
            cx.err_value(
                &p(k),
                format!(
                    "unknown TLS version `{w}`{}",
                    suggest::hint(w, &["TLS10", "TLS11", "TLS12", "TLS13"])
                ),
            );
            None
        }
    };
    let min_version = version("min_version", &m.min_version, cx);
    let max_version = version("max_version", &m.max_version, cx);
    if m.cert_file.is_some() != m.key_file.is_some() {
        cx.err_key(
            path,
            "exactly one of cert_file and key_file is set — expected both, for a client certificate",
        );
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(TlsOptions {
        ca_file,
        cert_file,
        key_file,
        server_name: m.server_name.clone().filter(|s| !s.is_empty()),
        insecure_skip_verify: m.insecure_skip_verify.unwrap_or(false),
        min_version,
        max_version,
    })
}

/// A TLS client and the options it was built from (a `hostname` parameter may need another
/// client with a different server name).
pub(super) fn tls_spec(
    m: Option<&TlsConfigModel>,
    path: &str,
    alpn: Alpn,
    cx: &mut Cx,
) -> Option<TlsSpec> {
    let opts = tls_options(m, path, cx)?;
    let client = cx.tls_client_for(opts.clone(), alpn, path)?;
    Some(TlsSpec {
        opts,
        alpn: alpn.protocols(),
        client,
    })
}
