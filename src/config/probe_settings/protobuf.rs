//! Protobuf without code generation: `.proto` files named by a scenario are compiled at load
//! (protox, a pure-Rust protoc), messages are built from JSON-shaped YAML and received frames
//! decoded back to JSON (prost-reflect), so JSONPath matchers and captures read them as they
//! read JSON frames.
//!
//! Files are read as `file()` reads them ([`crate::config::trust`]): below the scenario file's
//! folder or `--config.file-root`, imports included, never through `..`, absolute paths or
//! symlinks; the well-known `google/protobuf/*.proto` types are built in.
//!
//! JSON mapping: field names as written in the `.proto` (`user_id`, not `userId`; both are
//! accepted in sends), 64-bit integers as numbers, enums by name, fields at their default value
//! included — so `$.seq` is `0` rather than missing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use miette::Diagnostic;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::config::build::LoadShared;

/// Largest `.proto` file read (imports each count on their own).
pub const MAX_PROTO_BYTES: u64 = 1 << 20;

/// The compiled files of one load, by confinement root and canonical path: each file is
/// compiled once, however many steps name it. A scenario's per-run cache ([`Cache::over`])
/// also finds the load's. The root is part of the key because imports were confined to the
/// root of whoever compiled the file: a scenario with a narrower root (its own folder, without
/// `--config.file-root`) must not be handed a pool holding an import it may not read.
#[derive(Default)]
pub struct Cache {
    pools: HashMap<(PathBuf, PathBuf), Result<DescriptorPool, String>>,
    /// The canonical path each name (root, folder joined with the name as written) was
    /// confined to: a build after the load (a step built per run, a session's setup built for
    /// each connection) takes the file the load compiled, without resolving the name on disk
    /// again — a `.proto` removed or a symlink swapped since does not change or fail it.
    confined: HashMap<(PathBuf, PathBuf), PathBuf>,
    load: Option<Arc<LoadShared>>,
}

impl Cache {
    /// Empty, over the load's cache (once the load has published it).
    pub fn over(load: Arc<LoadShared>) -> Self {
        Cache {
            pools: HashMap::new(),
            confined: HashMap::new(),
            load: Some(load),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    fn get(&self, key: &(PathBuf, PathBuf)) -> Option<&Result<DescriptorPool, String>> {
        let load = || self.load.as_ref()?.get()?.protos.pools.get(key);
        self.pools.get(key).or_else(load)
    }

    fn confined(&self, written: &(PathBuf, PathBuf)) -> Option<&PathBuf> {
        let load = || self.load.as_ref()?.get()?.protos.confined.get(written);
        self.confined.get(written).or_else(load)
    }
}

/// Compile `file` (relative to `dir`, confined below `root`), through `cache`.
pub fn compile(
    cache: &mut Cache,
    dir: &Path,
    root: &Path,
    file: &str,
) -> Result<DescriptorPool, String> {
    let written = (root.to_path_buf(), dir.join(file));
    if let Some(full) = cache.confined(&written) {
        if let Some(done) = cache.get(&(root.to_path_buf(), full.clone())) {
            return done.clone();
        }
    }
    let full = crate::config::trust::confine(dir, root, file)?;
    cache.confined.insert(written, full.clone());
    let key = (root.to_path_buf(), full);
    if let Some(done) = cache.get(&key) {
        return done.clone();
    }
    let res = compile_uncached(&key.1, root);
    cache.pools.insert(key, res.clone());
    res
}

fn compile_uncached(full: &Path, root: &Path) -> Result<DescriptorPool, String> {
    let folder = full.parent().unwrap_or(Path::new("."));
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let confined = Confined {
        folder: folder.to_path_buf(),
        root: root.to_path_buf(),
        sources: Rc::new(RefCell::new(HashMap::new())),
    };
    let sources = confined.sources.clone();
    let mut chain = ChainFileResolver::new();
    chain.add(confined);
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    match compiler.open_file(&name) {
        Ok(_) => Ok(compiler.descriptor_pool()),
        Err(e) => Err(describe_error(&e, folder, &sources.borrow())),
    }
}

/// "chat.proto:3:5: expected ';'" — the `.proto`'s own file:line:column when protox knows it.
fn describe_error(e: &protox::Error, folder: &Path, sources: &HashMap<String, String>) -> String {
    let file = e.file().unwrap_or("").to_string();
    let offset = e.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    let at = match (sources.get(&file), offset) {
        (Some(src), Some(off)) => {
            let before = &src[..off.min(src.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{}:{line}:{col}: ", folder.join(&file).display())
        }
        _ if !file.is_empty() => format!("{}: ", folder.join(&file).display()),
        _ => String::new(),
    };
    let mut msg = e.to_string();
    // Parse and check errors say more in their help ("expected ';', but found '}'").
    if let Some(h) = e.help() {
        msg = format!("{msg} ({h})");
    }
    format!("invalid protobuf definition: {at}{msg}")
}

/// Opens imports relative to the first file's folder, confined as `file()` is.
struct Confined {
    folder: PathBuf,
    root: PathBuf,
    /// What was read, by import name, to locate errors.
    sources: Rc<RefCell<HashMap<String, String>>>,
}

impl FileResolver for Confined {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name.starts_with("google/protobuf/") {
            return Err(protox::Error::file_not_found(name));
        }
        let full = crate::config::trust::confine(&self.folder, &self.root, name)
            .map_err(protox::Error::new)?;
        let meta = std::fs::metadata(&full).map_err(protox::Error::new)?;
        if !meta.is_file() || meta.len() > MAX_PROTO_BYTES {
            return Err(protox::Error::new(format!(
                "{} is not a regular file of at most {} bytes",
                full.display(),
                MAX_PROTO_BYTES
            )));
        }
        let source = std::fs::read_to_string(&full).map_err(protox::Error::new)?;
        self.sources
            .borrow_mut()
            .insert(name.to_string(), source.clone());
        File::from_source(name, &source)
    }
}

/// The message type `name` of `pool`, or what types there are.
pub fn message(pool: &DescriptorPool, name: &str) -> Result<MessageDescriptor, String> {
    let name = name.trim_start_matches('.');
    pool.get_message_by_name(name).ok_or_else(|| {
        let mut known: Vec<String> = pool
            .all_messages()
            .map(|m| m.full_name().to_string())
            .filter(|n| !n.starts_with("google.protobuf."))
            .collect();
        known.sort();
        known.truncate(20);
        format!(
            "no message type {name:?} in the .proto — expected a full name like package.Message (defined: {})",
            if known.is_empty() { "none".into() } else { known.join(", ") }
        )
    })
}

/// A message built from JSON-shaped `value`, encoded; on error, the path of the field at fault
/// (`login.user`) and why.
pub fn encode(
    desc: &MessageDescriptor,
    value: &serde_json::Value,
) -> Result<Vec<u8>, (String, String)> {
    let opts = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    match DynamicMessage::deserialize_with_options(desc.clone(), de, &opts) {
        Ok(m) => Ok(prost::Message::encode_to_vec(&m)),
        Err(e) => {
            // The path is of the mapping holding the unknown field; name the field itself.
            let mut path = track.path().to_string();
            if path == "." {
                path.clear();
            }
            let text = e.to_string();
            if let Some(name) = text
                .strip_prefix("unrecognized field name '")
                .and_then(|r| r.split('\'').next())
            {
                path = if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
            }
            let at = message_at(desc, &path);
            let fields: Vec<String> = at.fields().map(|f| f.name().to_string()).collect();
            Err((
                path,
                format!(
                    "{e} — expected a field of {}: {}",
                    at.full_name(),
                    fields.join(", ")
                ),
            ))
        }
    }
}

/// The message type the field at `path` (`login.usr`) belongs to: `desc`, or a nested type
/// of it along the path.
fn message_at(desc: &MessageDescriptor, path: &str) -> MessageDescriptor {
    let mut at = desc.clone();
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    for seg in segments.iter().take(segments.len().saturating_sub(1)) {
        let next = at
            .get_field_by_name(seg)
            .or_else(|| at.get_field_by_json_name(seg))
            .and_then(|f| f.kind().as_message().cloned());
        match next {
            Some(m) => at = m,
            None => break,
        }
    }
    at
}

/// Check the field names of a message written with templates not rendered yet (a step built per
/// run): every key must be a field of its message type, nested messages included. Values are
/// checked when the step is built for a run.
pub fn check_field_names(
    desc: &MessageDescriptor,
    value: &serde_json::Value,
) -> Result<(), (String, String)> {
    check_names_at(desc, value, "")
}

fn check_names_at(
    desc: &MessageDescriptor,
    value: &serde_json::Value,
    path: &str,
) -> Result<(), (String, String)> {
    // The well-known types have JSON forms of their own (a Timestamp is a string).
    let serde_json::Value::Object(map) = value else {
        return Ok(());
    };
    if desc.full_name().starts_with("google.protobuf.") {
        return Ok(());
    }
    for (k, v) in map {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let Some(field) = desc
            .get_field_by_name(k)
            .or_else(|| desc.get_field_by_json_name(k))
        else {
            let fields: Vec<String> = desc.fields().map(|f| f.name().to_string()).collect();
            return Err((
                here,
                format!(
                    "unrecognized field name '{k}' — expected a field of {}: {}",
                    desc.full_name(),
                    fields.join(", ")
                ),
            ));
        };
        if field.is_map() {
            continue;
        }
        if let Some(inner) = field.kind().as_message() {
            match v {
                serde_json::Value::Array(items) if field.is_list() => {
                    for item in items {
                        check_names_at(inner, item, &here)?;
                    }
                }
                _ => check_names_at(inner, v, &here)?,
            }
        }
    }
    Ok(())
}

/// Bytes decoded as `desc`, as JSON; `Err` says why they are not such a message.
pub fn decode(desc: &MessageDescriptor, bytes: &[u8]) -> Result<serde_json::Value, String> {
    let m = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|e| format!("not a valid {} message: {e}", desc.full_name()))?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    m.serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| format!("cannot show the {} message as JSON: {e}", desc.full_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = r#"syntax = "proto3";
package chat;
import "google/protobuf/timestamp.proto";
message Frame {
  oneof kind { Login login = 1; Deliver deliver = 2; }
  uint64 seq = 3;
}
message Login { string user = 1; string token = 2; }
message Deliver { string from = 1; string text = 2; google.protobuf.Timestamp at = 3; }
"#;

    fn pool(
        files: &[(&str, &str)],
        entry: &str,
    ) -> (tempfile::TempDir, Result<DescriptorPool, String>) {
        let dir = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(dir.path().join(n), t).unwrap();
        }
        let mut cache = Cache::default();
        let r = compile(&mut cache, dir.path(), dir.path(), entry);
        (dir, r)
    }

    /// A scenario's per-run cache finds what the load compiled: the file is not compiled (nor
    /// its pool kept) once per scenario, and the pool is the load's.
    #[test]
    fn a_scenarios_cache_finds_the_loads_pools() {
        use crate::config::build::{LoadShared, Shared};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chat.proto"), CHAT).unwrap();
        let d = dir.path();
        let mut shared = Shared::default();
        let at_load = compile(&mut shared.protos, d, d, "chat.proto").unwrap();
        let load = std::sync::Arc::new(LoadShared::new(None));
        load.publish(shared);
        let mut own = Cache::over(load);
        let per_run = compile(&mut own, d, d, "chat.proto").unwrap();
        assert!(own.is_empty(), "compiled again for the scenario");
        assert_eq!(per_run, at_load);
        // What the load did not compile is compiled and kept by the scenario.
        std::fs::write(d.join("other.proto"), CHAT).unwrap();
        assert!(compile(&mut own, d, d, "other.proto").is_ok());
        assert!(!own.is_empty());
    }

    #[test]
    fn json_round_trip_through_a_compiled_proto() {
        let (_d, p) = pool(&[("chat.proto", CHAT)], "chat.proto");
        let desc = message(&p.unwrap(), "chat.Frame").unwrap();
        let v = serde_json::json!({"login": {"user": "alice", "token": "t"}, "seq": 7});
        let bytes = encode(&desc, &v).unwrap();
        let back = decode(&desc, &bytes).unwrap();
        assert_eq!(back["login"]["user"], "alice");
        assert_eq!(back["seq"], 7, "64-bit integers are numbers: {back}");
    }

    #[test]
    fn a_wrong_field_names_its_path() {
        let (_d, p) = pool(&[("chat.proto", CHAT)], "chat.proto");
        let desc = message(&p.unwrap(), "chat.Frame").unwrap();
        let (path, why) = encode(&desc, &serde_json::json!({"login": {"usr": "a"}})).unwrap_err();
        assert_eq!(path, "login.usr", "{why}");
        assert!(
            why.contains("'usr'") && why.contains("chat.Login: user, token"),
            "{why}"
        );
        let e = message(&desc.parent_pool().clone(), "chat.Nope").unwrap_err();
        assert!(e.contains("chat.Frame"), "{e}");
    }

    #[test]
    fn field_names_are_checked_before_templates_are_rendered() {
        let (_d, p) = pool(&[("chat.proto", CHAT)], "chat.proto");
        let desc = message(&p.unwrap(), "chat.Frame").unwrap();
        let ok = serde_json::json!({"login": {"user": "{{ who }}", "token": "{{ t }}"}, "seq": "{{ n }}"});
        assert!(check_field_names(&desc, &ok).is_ok());
        let bad = serde_json::json!({"deliver": {"form": "{{ who }}"}});
        let (path, why) = check_field_names(&desc, &bad).unwrap_err();
        assert_eq!(path, "deliver.form");
        assert!(why.contains("chat.Deliver: from, text, at"), "{why}");
    }

    #[test]
    fn proto_errors_have_file_line_and_column() {
        let bad = "syntax = \"proto3\";\nmessage A {\n  string x = 1\n}\n";
        let (_d, p) = pool(&[("bad.proto", bad)], "bad.proto");
        let e = p.unwrap_err();
        assert!(e.contains("bad.proto:4:1"), "{e}");
    }

    #[test]
    fn imports_stay_below_the_root() {
        let top = tempfile::tempdir().unwrap();
        let inner = top.path().join("in");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(top.path().join("secret.proto"), "syntax = \"proto3\";").unwrap();
        std::os::unix::fs::symlink(top.path().join("secret.proto"), inner.join("link.proto"))
            .unwrap();
        std::fs::write(
            inner.join("a.proto"),
            "syntax = \"proto3\";\nimport \"link.proto\";\n",
        )
        .unwrap();
        let mut cache = Cache::default();
        let e = compile(&mut cache, &inner, &inner, "a.proto").unwrap_err();
        assert!(e.contains("outside"), "{e}");
        let e = compile(&mut cache, &inner, &inner, "../secret.proto").unwrap_err();
        assert!(e.contains("outside"), "{e}");
    }

    #[test]
    fn garbage_bytes_are_not_a_message() {
        let (_d, p) = pool(&[("chat.proto", CHAT)], "chat.proto");
        let desc = message(&p.unwrap(), "chat.Frame").unwrap();
        assert!(decode(&desc, &[0xff, 0xff, 0xff]).is_err());
    }
}
