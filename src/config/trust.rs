//! How far a configuration document is trusted with the host it runs on.
//!
//! A scenario's templates can read files (`file()`) and the environment (`env.NAME`), and then
//! send what they read anywhere (a URL, a header, a body). Who wrote the document decides what
//! that may reach:
//!
//! - a file on disk was put there by someone with access to the host: `file()` reads files below
//!   the scenario file's own folder (or below `--config.file-root`), never outside it — not by
//!   `..`, not by an absolute path, not through a symlink (paths are canonicalized, then
//!   checked) — and `env` is the whole environment;
//! - a document fetched from a URL (`-c http://…`) was written by whoever controls that server
//!   or the path to it: `file()` is refused, `env` holds only the names the operator allows
//!   with `--config.remote-env NAME`, and no `*_file` key (`password_file`, `ca_file`…) may
//!   name a file on the agent.

use std::path::{Path, PathBuf};

/// Largest file `file()` reads: secrets and tokens are small; `/dev/zero` is not.
pub const MAX_FILE_FN_BYTES: u64 = 1 << 20;

/// What the templates of one document may reach.
#[derive(Clone, Debug)]
pub enum Trust {
    /// A file on disk. `root` is `--config.file-root`; `None` confines `file()` to the
    /// scenario file's own folder.
    Local { root: Option<PathBuf> },
    /// A document fetched from `origin`: no `file()`, and only the `env` names in `env`.
    Remote { origin: String, env: Vec<String> },
}

impl Default for Trust {
    fn default() -> Self {
        Trust::Local { root: None }
    }
}

impl Trust {
    /// Whether templates may see environment variable `name`.
    pub fn allows_env(&self, name: &str) -> bool {
        match self {
            Trust::Local { .. } => true,
            Trust::Remote { env, .. } => env.iter().any(|n| n == name),
        }
    }

    /// The folder `file()` is confined to for a document in `dir`, as the text templates see
    /// (`None`: `file()` is refused).
    pub fn file_root(&self, dir: &Path) -> Option<String> {
        match self {
            Trust::Local { root: Some(r) } => Some(r.display().to_string()),
            Trust::Local { root: None } => Some(dir.display().to_string()),
            Trust::Remote { .. } => None,
        }
    }

    /// Why `env.NAME` is refused to this document.
    pub fn env_refusal(&self, name: &str) -> String {
        let allowed = match self {
            Trust::Remote { env, .. } if !env.is_empty() => env.join(", "),
            _ => "none".to_string(),
        };
        format!(
            "environment variable `{name}` is not available to a configuration loaded from a URL — expected only the names allowed with --config.remote-env (allowed: {allowed})"
        )
    }
}

/// Why `file()` is refused to a document loaded from a URL.
pub const NO_FILE_REMOTE: &str = "file() is not available to a configuration loaded from a URL — expected the value in the document itself, or an environment variable allowed with --config.remote-env";

/// `path` (relative to `dir`, the scenario file's folder) resolved and checked to lie below
/// `root`; the error names the rule.
pub fn confine(dir: &Path, root: &Path, path: &str) -> Result<PathBuf, String> {
    let base = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    let joined = base.join(path);
    let canon_root = std::fs::canonicalize(root).map_err(|e| {
        format!(
            "cannot resolve the folder file() is confined to ({}): {}",
            root.display(),
            super::io_reason(&e)
        )
    })?;
    let full = std::fs::canonicalize(&joined)
        .map_err(|e| format!("cannot read {}: {}", joined.display(), super::io_reason(&e)))?;
    if !full.starts_with(&canon_root) {
        return Err(format!(
            "{} is outside {} — file() reads only files below the scenario file's folder (or --config.file-root), not through `..`, absolute paths or symlinks",
            joined.display(),
            canon_root.display()
        ));
    }
    Ok(full)
}

/// Read a confined file for `file()`: a regular file, at most [`MAX_FILE_FN_BYTES`], UTF-8.
pub fn read_confined(dir: &Path, root: &Path, path: &str) -> Result<String, String> {
    use std::io::Read;
    let full = confine(dir, root, path)?;
    let meta = std::fs::metadata(&full)
        .map_err(|e| format!("cannot read {}: {}", full.display(), super::io_reason(&e)))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file — expected a file holding a value",
            full.display()
        ));
    }
    let f = std::fs::File::open(&full)
        .map_err(|e| format!("cannot read {}: {}", full.display(), super::io_reason(&e)))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_FN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {}", full.display(), super::io_reason(&e)))?;
    if bytes.len() as u64 > MAX_FILE_FN_BYTES {
        return Err(format!(
            "{} is larger than {} — expected a small file holding a value",
            full.display(),
            super::limits::human_bytes(MAX_FILE_FN_BYTES)
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "{} is not UTF-8 text — expected a file holding a value",
            full.display()
        )
    })
}

/// A document loaded from a URL may not name files on the agent: every `*_file` key
/// (`password_file`, `bearer_token_file`, `ca_file`, `key_file`, `url_file`, `body_file`…) reads
/// one, and several send what they read (a password to a remote_write URL the same document
/// chooses). Each such key is an error at its position. Run after [`super::limits`]: the
/// document is known to be shallow.
pub fn remote_file_keys(origin: &str, text: &str) -> Vec<super::ConfigError> {
    use saphyr_parser::{Event, Parser};
    // Per open collection: whether it is a mapping and whether its next scalar is a key.
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut errors = Vec::new();
    for ev in Parser::new_from_str(text) {
        let Ok((ev, span)) = ev else { break };
        let is_key = matches!(stack.last(), Some((true, true)));
        if let Some((true, want_key)) = stack.last_mut() {
            // A key is followed by its value, a value by the next key.
            if !matches!(ev, Event::MappingEnd | Event::SequenceEnd) {
                *want_key = !*want_key;
            }
        }
        match ev {
            Event::Scalar(v, ..) if is_key && v.ends_with("_file") => {
                errors.push(super::ConfigError {
                    file: origin.to_string(),
                    line: span.start.line(),
                    column: span.start.col() + 1,
                    message: format!(
                        "`{v}` names a file on the agent, which a configuration loaded from a URL may not read — expected the value in the document itself"
                    ),
                });
            }
            Event::MappingStart(..) => stack.push((true, true)),
            Event::SequenceStart(..) => stack.push((false, false)),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confined_below_the_root() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("ok.txt"), "v").unwrap();
        std::fs::write(top.path().join("out.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(top.path().join("out.txt"), dir.join("link.txt")).unwrap();
        assert_eq!(read_confined(&dir, &dir, "ok.txt").unwrap(), "v");
        for bad in ["../out.txt", "link.txt"] {
            let e = read_confined(&dir, &dir, bad).unwrap_err();
            assert!(e.contains("is outside"), "{bad}: {e}");
        }
        let abs = top.path().join("out.txt");
        let e = read_confined(&dir, &dir, abs.to_str().unwrap()).unwrap_err();
        assert!(e.contains("is outside"), "{e}");
        // A wider root lets `..` in, still below it.
        assert_eq!(
            read_confined(&dir, top.path(), "../out.txt").unwrap(),
            "secret"
        );
        let e = read_confined(&dir, &dir, ".").unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn remote_documents_may_not_name_files() {
        let text = "agent:\n  remote_write:\n    url: http://127.0.0.1:1/\n    basic_auth: {username: u, password_file: /etc/shadow}\nscenarios:\n  - {x_file: 1, y: [a_file, {b: c_file}]}\n";
        let e = remote_file_keys("u", text);
        let at: Vec<(usize, usize)> = e.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, vec![(4, 31), (6, 6)], "{e:?}");
        assert!(
            e[0].message.starts_with("`password_file` names a file"),
            "{}",
            e[0]
        );
    }
}
