//! What every step compiler shares: where errors go, and the expensive things built once per
//! load and shared between steps (resolvers, TLS clients), plus small helpers for regexes,
//! resolvers and TLS configuration.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use regex::Regex;
use sonde_probes::resolve::{IpProtocol, ResolveOptions, Resolver};
use sonde_probes::tls::{TlsClient, TlsOptions, TlsVersion};

use super::error::FileErrors;
use super::locate::{index_path, key_path, PosIndex};
use super::model::TlsConfigModel;
use super::probe_settings::tls::default_client;
use super::redact::Fnv;
use super::targets;
use super::units::{IpProto, TlsVersionWord};

pub use super::probe_settings::tls::Alpn;

/// Built once per load, shared by every step of it.
///
/// A scenario's per-run builds have one of their own ([`Shared::over`]): it starts empty and
/// looks things up in the load's (read-only once the load is over) before building them, so no
/// scenario carries a copy of the load's maps, and runs of different scenarios never wait on one
/// another's builds.
#[derive(Default)]
pub struct Shared {
    /// Created on first use: a configuration whose steps all name a resolver never reads
    /// `/etc/resolv.conf`.
    system: Option<Result<Resolver, String>>,
    by_servers: HashMap<Vec<SocketAddr>, Resolver>,
    /// Never asked: for IP-literal targets when the system resolver cannot be built.
    unused: Option<Resolver>,
    pub(super) tls: HashMap<(TlsOptions, Alpn), TlsClient>,
    /// The `tls_config` files read (by the path the step names, joined to its folder).
    tls_files: HashSet<PathBuf>,
    /// `.proto` files compiled for this load (`proto_file`), each once.
    pub protos: super::probe_settings::protobuf::Cache,
    /// `--config.file-root`: files a scenario names (`proto_file`) are confined below it, or
    /// below the scenario file's own folder without it.
    pub file_root: Option<PathBuf>,
    /// The load's, looked up before anything is built (a scenario's own state only).
    load: Option<Arc<LoadShared>>,
}

/// The load's [`Shared`] as scenarios see it after the load: published once, then read-only.
#[derive(Default)]
pub struct LoadShared {
    /// Known from the start, so a scenario's own state is right even before publication.
    file_root: Option<PathBuf>,
    done: OnceLock<Shared>,
}

impl LoadShared {
    pub fn new(file_root: Option<PathBuf>) -> Self {
        LoadShared {
            file_root,
            done: OnceLock::new(),
        }
    }

    /// Publish the load's state (once; later calls are ignored).
    pub fn publish(&self, shared: Shared) {
        let _ = self.done.set(shared);
    }

    /// The load's state, once published.
    pub fn get(&self) -> Option<&Shared> {
        self.done.get()
    }
}

impl Shared {
    /// A load's shared state, files confined below `file_root` when given.
    pub fn with_file_root(file_root: Option<PathBuf>) -> Self {
        Shared {
            file_root,
            ..Shared::default()
        }
    }

    /// A scenario's own state for its per-run builds: empty, over the load's `load`.
    pub fn over(load: &Arc<LoadShared>) -> Self {
        Shared {
            protos: super::probe_settings::protobuf::Cache::over(load.clone()),
            file_root: load.file_root.clone(),
            load: Some(load.clone()),
            ..Shared::default()
        }
    }

    /// Whether anything was built into this state (the load's lookups aside).
    pub fn is_empty(&self) -> bool {
        self.system.is_none()
            && self.by_servers.is_empty()
            && self.unused.is_none()
            && self.tls.is_empty()
            && self.tls_files.is_empty()
            && self.protos.is_empty()
    }

    /// Whether the load read `file` for a `tls_config` (a build after the load, over its
    /// published state, asks).
    fn read_at_load(&self, file: &Path) -> bool {
        self.load
            .as_ref()
            .and_then(|l| l.get())
            .is_some_and(|l| l.tls_files.contains(file))
    }

    /// `find` in this state, then in the load's.
    fn find<T>(&self, find: impl Fn(&Shared) -> Option<T>) -> Option<T> {
        find(self).or_else(|| self.load.as_ref()?.get().and_then(find))
    }

    /// The client built for `key`, here or in the load.
    pub(super) fn tls_client(&self, key: &(TlsOptions, Alpn)) -> Option<TlsClient> {
        self.find(|s| s.tls.get(key).cloned())
    }
}

/// Where a step compiler reports, and what it shares.
pub struct Cx<'a> {
    pub index: &'a PosIndex,
    pub errors: &'a mut FileErrors,
    pub shared: &'a mut Shared,
    /// Relative file paths are relative to this folder (the YAML file's).
    pub dir: &'a Path,
    /// The scenario's fingerprint: files read at load (tls_config) count too.
    pub hash: &'a mut Fnv,
}

/// The first line of a regex error that says what is wrong.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_string))
        .or_else(|| text.lines().next().map(str::to_string))
        .unwrap_or_default()
}

impl Cx<'_> {
    pub fn err_value(&mut self, path: &str, msg: impl Into<String>) {
        let p = self.index.value(path);
        self.errors.push(p, msg);
    }

    pub fn err_key(&mut self, path: &str, msg: impl Into<String>) {
        let p = self.index.key(path);
        self.errors.push(p, msg);
    }

    /// The value, or `None` after reporting the error at `path`'s value.
    pub fn ok<T>(&mut self, path: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.err_value(path, e);
                None
            }
        }
    }

    pub fn regex(&mut self, s: &str, path: &str) -> Option<Regex> {
        self.compile_regex(s, path, Regex::new)
    }

    pub fn bytes_regex(&mut self, s: &str, path: &str) -> Option<regex::bytes::Regex> {
        self.compile_regex(s, path, regex::bytes::Regex::new)
    }

    fn compile_regex<R>(
        &mut self,
        s: &str,
        path: &str,
        new: impl Fn(&str) -> Result<R, regex::Error>,
    ) -> Option<R> {
        match new(s) {
            Ok(r) => Some(r),
            Err(e) => {
                self.err_value(
                    path,
                    format!(
                        "invalid regex {s:?}: {} — expected a regular expression",
                        regex_reason(&e)
                    ),
                );
                None
            }
        }
    }

    /// Compile a list of regexes written at `path` (each located at its item).
    pub fn regexes(&mut self, list: Option<&Vec<String>>, path: &str) -> Vec<Regex> {
        list.into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, s)| self.regex(s, &index_path(path, i)))
            .collect()
    }

    /// Parse the step's `resolver:` override (at `path`).
    pub fn resolver_override(&mut self, list: &[String], path: &str) -> Option<Vec<SocketAddr>> {
        if list.is_empty() {
            self.err_value(
                path,
                "empty resolver list — expected at least one address, like 127.0.0.1:5353",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, s) in list.iter().enumerate() {
            match targets::resolver_addr(s) {
                Ok(a) => out.push(a),
                Err(m) => {
                    self.err_value(&index_path(path, i), m);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// The resolver a step uses to find `host` (written at `target_path`).
    pub fn resolver(
        &mut self,
        servers: Option<&[SocketAddr]>,
        host: &str,
        target_path: &str,
    ) -> Option<Resolver> {
        if let Some(servers) = servers {
            if let Some(r) = self.shared.find(|s| s.by_servers.get(servers).cloned()) {
                return Some(r);
            }
            return match Resolver::with_servers(servers) {
                Ok(r) => {
                    self.shared.by_servers.insert(servers.to_vec(), r.clone());
                    Some(r)
                }
                Err(e) => {
                    self.err_value(target_path, format!("{e} — expected a usable resolver"));
                    None
                }
            };
        }
        let system = match self.shared.find(|s| s.system.clone()) {
            Some(s) => s,
            None => self.shared.system.insert(Resolver::system()).clone(),
        };
        match system {
            Ok(r) => Some(r),
            Err(_) if targets::is_ip_literal(host) => {
                let unused = self.shared.find(|s| s.unused.clone());
                if unused.is_some() {
                    return unused;
                }
                let lo: SocketAddr = ([127, 0, 0, 1], 53).into();
                self.shared.unused = Resolver::with_servers(&[lo]).ok();
                self.shared.unused.clone()
            }
            Err(e) => {
                self.err_value(
                    target_path,
                    format!("{e} — expected a `resolver:` override on this step"),
                );
                None
            }
        }
    }

    /// A TLS client from `tls_config` (at `path`), read files and all.
    pub fn tls_client(
        &mut self,
        model: Option<&TlsConfigModel>,
        path: &str,
        alpn: Alpn,
    ) -> Option<TlsClient> {
        let Some(m) = model else {
            return Some(default_client(alpn));
        };
        let before = self.errors.len();
        let ca_file = self.tls_file(m.ca_file.as_deref(), &key_path(path, "ca_file"));
        let cert_file = self.tls_file(m.cert_file.as_deref(), &key_path(path, "cert_file"));
        let key_file = self.tls_file(m.key_file.as_deref(), &key_path(path, "key_file"));
        match (&m.cert_file, &m.key_file) {
            (Some(_), None) => self.err_key(
                &key_path(path, "cert_file"),
                "`cert_file` without `key_file` — expected both, for a client certificate",
            ),
            (None, Some(_)) => self.err_key(
                &key_path(path, "key_file"),
                "`key_file` without `cert_file` — expected both, for a client certificate",
            ),
            _ => {}
        }
        let version = |w: Option<TlsVersionWord>| {
            w.map(|w| match w {
                TlsVersionWord::Tls12 => TlsVersion::Tls12,
                TlsVersionWord::Tls13 => TlsVersion::Tls13,
            })
        };
        let opts = TlsOptions {
            ca_file,
            cert_file,
            key_file,
            server_name: m.server_name.clone(),
            insecure_skip_verify: m.insecure_skip_verify.unwrap_or(false),
            min_version: version(m.min_version),
            max_version: version(m.max_version),
        };
        if let (Some(lo), Some(hi)) = (opts.min_version, opts.max_version) {
            if lo > hi {
                self.err_value(
                    &key_path(path, "min_version"),
                    "`min_version` is above `max_version` — expected min_version ≤ max_version",
                );
            }
        }
        if self.errors.len() > before {
            return None;
        }
        self.tls_client_for(opts, alpn, path)
    }

    /// Resolve a tls_config file against the YAML file's folder and check it can be read (after
    /// the load, a file the load read is taken as read).
    fn tls_file(&mut self, file: Option<&str>, path: &str) -> Option<PathBuf> {
        let file = file?;
        let full = self.dir.join(file);
        // A build after the load (a step built per run, or a session's setup built for each
        // connection) finds the load's client by these paths: a file the load read, gone or
        // changed since, does not fail a step the load built.
        if self.shared.read_at_load(&full) {
            return Some(full);
        }
        match std::fs::read(&full) {
            Ok(bytes) => {
                self.hash.write(&bytes);
                self.shared.tls_files.insert(full.clone());
                Some(full)
            }
            Err(e) => {
                let key = path.rsplit('.').next().unwrap_or("file");
                let reason = super::io_reason(&e);
                let shown = if Path::new(file).is_absolute() {
                    format!("{file:?}")
                } else {
                    let dir = self.dir.display().to_string();
                    let dir = if dir.is_empty() { ".".to_string() } else { dir };
                    format!("{file:?} (in {dir})")
                };
                self.err_value(
                    path,
                    format!("cannot read {key} {shown}: {reason} — expected a readable PEM file"),
                );
                None
            }
        }
    }
}

pub fn ip_options(pref: Option<IpProto>, fallback: Option<bool>) -> ResolveOptions {
    ResolveOptions {
        preferred: match pref.unwrap_or(IpProto::Auto) {
            IpProto::Auto => IpProtocol::Auto,
            IpProto::Ip4 => IpProtocol::Ip4,
            IpProto::Ip6 => IpProtocol::Ip6,
        },
        fallback: fallback.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `f` with a context over `shared`.
    fn with_cx<T>(shared: &mut Shared, f: impl FnOnce(&mut Cx) -> T) -> T {
        let index = PosIndex::build("");
        let mut errors = FileErrors::new("t.yaml");
        let mut hash = Fnv::default();
        let mut cx = Cx {
            index: &index,
            errors: &mut errors,
            shared,
            dir: Path::new(""),
            hash: &mut hash,
        };
        let out = f(&mut cx);
        assert!(errors.is_empty());
        out
    }

    fn lo(port: u16) -> Vec<SocketAddr> {
        vec![([127, 0, 0, 1], port).into()]
    }

    fn insecure() -> TlsOptions {
        TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        }
    }

    /// A resolver and a TLS client: whether each was found or built.
    fn build_both(cx: &mut Cx, port: u16) -> (bool, bool) {
        let r = cx.resolver(Some(&lo(port)), "h", "p").is_some();
        let t = cx.tls_client_for(insecure(), Alpn::Http1, "p").is_some();
        (r, t)
    }

    /// A scenario's own state finds what the load built (nothing is built again, nor kept per
    /// scenario), and keeps what the load had not built.
    #[test]
    fn a_scenarios_state_finds_the_loads_and_keeps_only_its_own() {
        let load = Arc::new(LoadShared::new(Some(PathBuf::from("/root"))));
        let mut own = Shared::over(&load);
        assert_eq!(own.file_root, Some(PathBuf::from("/root")));
        let mut at_load = Shared::default();
        assert_eq!(
            with_cx(&mut at_load, |cx| build_both(cx, 5353)),
            (true, true)
        );
        load.publish(at_load);
        assert_eq!(with_cx(&mut own, |cx| build_both(cx, 5353)), (true, true));
        assert!(own.is_empty(), "built again for the scenario");
        with_cx(&mut own, |cx| cx.resolver(Some(&lo(5354)), "h", "p"));
        assert!(!own.is_empty());
        assert!(own.by_servers.contains_key(&lo(5354)));
        let loads = load.get().unwrap();
        assert!(
            !loads.by_servers.contains_key(&lo(5354)),
            "the load's is read-only"
        );
    }
}
