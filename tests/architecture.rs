//! The rooms of `src/` and the one direction their dependencies point (docs/architecture.md):
//! a module may use its own room and the rooms below it, never one above. Checked on the source
//! text, so a new `use crate::…` that reaches upward fails here with the file and the line.

use std::path::{Path, PathBuf};

/// Rooms from the bottom up; a module of room N may use rooms 0..=N.
const ROOMS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "time",
            "hash",
            "intern",
            "memory_hint",
            "names",
            "exit",
            "error_chain",
            "shard",
            "backoff",
            "closed_pipe",
            "logging",
            "shard_auto",
            "redact",
        ],
    ),
    ("config", &["config", "config_flags"]),
    ("engine", &["engine"]),
    ("runtime", &["runtime"]),
    (
        "outputs",
        &[
            "metrics",
            "process_metrics",
            "blackbox",
            "alert",
            "remote_write",
            "history",
            "run",
            "web_server",
        ],
    ),
    (
        "top",
        &[
            "cli",
            "cli_docs",
            "serve",
            "web",
            "status",
            "agent",
            "source",
            "default_config",
            "demo",
            "schema",
            "lib",
            "main",
        ],
    ),
];

fn level_of(top_module: &str) -> Option<(usize, &'static str)> {
    ROOMS
        .iter()
        .enumerate()
        .find(|(_, (_, mods))| mods.contains(&top_module))
        .map(|(i, (room, _))| (i, *room))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to: `src/engine/ws.rs` → `engine`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::name` a line uses outside comments.
fn uses(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = after;
    }
    out
}

#[test]
fn no_module_reaches_up_into_a_room_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut unknown = Vec::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some((level, room)) = level_of(&module) else {
            unknown.push(format!("{} (module `{module}`)", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for used in uses(line) {
                match level_of(&used) {
                    Some((l, r)) if l > level => upward.push(format!(
                        "{}:{}: {room} uses crate::{used} ({r}, a room above)",
                        file.display(),
                        n + 1
                    )),
                    Some(_) => {}
                    None => unknown.push(format!("{}:{}: crate::{used}", file.display(), n + 1)),
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules in no room (add them to ROOMS and docs/architecture.md):\n{}",
        unknown.join("\n")
    );
    assert!(
        upward.is_empty(),
        "dependencies must point downward:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_checker_sees_uses_and_skips_comments() {
    assert_eq!(
        uses("use crate::engine::{RunReport}; let x = crate::time::now_ms();"),
        ["engine", "time"]
    );
    assert!(uses("// see crate::metrics").is_empty());
    assert_eq!(level_of("metrics").unwrap().1, "outputs");
    assert!(level_of("engine").unwrap().0 < level_of("runtime").unwrap().0);
}
