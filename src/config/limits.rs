//! Bounds every configuration document must fit before the YAML parsers see it.
//!
//! serde_norway's scanner (libyaml's) checks every pending simple key at every token, so a
//! document nested N levels deep costs O(N²): 100,000 nested brackets in a 200 KB file took
//! 209 s (saphyr-parser, which locates errors, has the same flaw). The depth check below is one
//! linear pass over the text that stops at the first flow collection nested deeper than
//! [`MAX_DEPTH`], so refusing costs milliseconds whatever the file holds, and a document that
//! passes costs the parsers at most [`MAX_DEPTH`] per token.
//!
//! A file larger than `max_file_bytes` is refused before it is read into memory (local files
//! are read through a bounded reader, so `/dev/zero` or a file still growing cannot fill
//! memory either); URL documents stop downloading at the same size ([`crate::source`]).
//! `max_scenarios` bounds a whole load: each loaded scenario costs about 4 KB (measured with
//! `bench/config_memory.sh`), so the default keeps a load under about 400 MB.

use std::io::Read;
use std::path::Path;

use super::error::Pos;
use super::ConfigError;

/// Deepest nesting of mappings and lists a document may have. Scenario files need about 10
/// (scenarios → steps → http → headers …); JSON bodies written in YAML add their own depth.
pub const MAX_DEPTH: usize = 64;

/// Default for `--config.max-file-size`: the same as the download cap of `-c` URLs has always
/// been.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;

/// Default for `--config.max-scenarios`.
pub const DEFAULT_MAX_SCENARIOS: usize = 100_000;

/// Bounds of one load.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest file or URL document, in bytes.
    pub max_file_bytes: u64,
    /// Most scenarios across everything loaded.
    pub max_scenarios: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_scenarios: DEFAULT_MAX_SCENARIOS,
        }
    }
}

/// Sizes in messages: "16 MiB", "1.5 KiB", "300 bytes".
pub fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

fn too_large(origin: &str, limit: u64) -> ConfigError {
    ConfigError {
        file: origin.to_string(),
        line: 0,
        column: 0,
        message: format!(
            "the file is larger than {} — expected a configuration file within --config.max-file-size",
            human_bytes(limit)
        ),
    }
}

/// Read a local file as UTF-8, refusing it once it passes `limit` bytes (without reading
/// further).
pub fn read_file(path: &Path, limit: u64) -> Result<String, ConfigError> {
    let origin = path.display().to_string();
    let reason = |e: &std::io::Error| ConfigError {
        file: origin.clone(),
        line: 0,
        column: 0,
        message: format!(
            "cannot read: {} — expected a readable UTF-8 YAML file",
            super::io_reason(e)
        ),
    };
    let file = std::fs::File::open(path).map_err(|e| reason(&e))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| reason(&e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(&origin, limit));
    }
    String::from_utf8(bytes).map_err(|_| ConfigError {
        file: origin.clone(),
        line: 0,
        column: 0,
        message:
            "cannot read: stream did not contain valid UTF-8 — expected a readable UTF-8 YAML file"
                .into(),
    })
}

/// Check a document's size and depth before any parser that could be slow on it runs.
pub fn check_document(origin: &str, text: &str, limits: &Limits) -> Result<(), ConfigError> {
    if text.len() as u64 > limits.max_file_bytes {
        return Err(too_large(origin, limits.max_file_bytes));
    }
    match too_deep(text) {
        None => Ok(()),
        Some(pos) => Err(ConfigError {
            file: origin.to_string(),
            line: pos.line,
            column: pos.column,
            message: format!(
                "brackets nested more than {MAX_DEPTH} levels deep — expected an ordinary scenario file (flow lists and mappings at most {MAX_DEPTH} deep)"
            ),
        }),
    }
}

/// Where the first flow collection (`[…]`, `{…}`) nested deeper than [`MAX_DEPTH`] opens, if
/// any.
///
/// A single linear pass that knows just enough YAML to tell a flow collection from text:
/// brackets count only where a node starts (after indentation, `- `, `? `, `: `, an anchor or a
/// tag) or inside a flow collection, never inside quoted scalars, plain scalars, comments or
/// block scalars (`|`, `>`). Block nesting is not counted: it costs indentation, so it is
/// bounded by the file size, and serde_norway refuses more than 128 levels on its own.
fn too_deep(text: &str) -> Option<Pos> {
    DepthScan::new(text).run()
}

struct DepthScan<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    line_start: usize,
}

impl<'a> DepthScan<'a> {
    fn new(text: &'a str) -> Self {
        DepthScan {
            b: text.as_bytes(),
            i: 0,
            line: 1,
            line_start: 0,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(b'\n')
    }

    fn pos(&self) -> Pos {
        let col = String::from_utf8_lossy(&self.b[self.line_start..self.i])
            .chars()
            .count();
        Pos {
            line: self.line,
            column: col + 1,
        }
    }

    /// Step over one byte, keeping the line count.
    fn bump(&mut self) {
        if self.at(self.i) == b'\n' {
            self.line += 1;
            self.line_start = self.i + 1;
        }
        self.i += 1;
    }

    fn skip_line(&mut self) {
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
    }

    /// Skip a quoted scalar starting at `self.i` (it may span lines).
    fn quoted(&mut self) {
        let q = self.b[self.i];
        self.bump();
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if q == b'"' && c == b'\\' {
                self.bump();
                self.bump();
                continue;
            }
            if c == q {
                if q == b'\'' && self.at(self.i + 1) == b'\'' {
                    self.i += 2;
                    continue;
                }
                self.i += 1;
                return;
            }
            self.bump();
        }
    }

    /// Inside a flow collection that `self.i` opens; returns at its end (or the deep one).
    fn flow(&mut self) -> Option<Pos> {
        let mut depth = 0usize;
        // The last byte that is not a space: a quote opens a quoted scalar only where a node
        // starts (`[don't]` is the plain scalar "don't").
        let mut last = b'[';
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                last = match c {
                    b'"' | b'\'' if !matches!(last, b'[' | b'{' | b',' | b':' | b'?') => b'a',
                    _ => c,
                };
            }
            match c {
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(self.pos());
                    }
                }
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.i += 1;
                        return None;
                    }
                }
                b'"' | b'\'' if last == c => {
                    self.quoted();
                    continue;
                }
                b'#' if self.i == self.line_start
                    || matches!(self.b[self.i - 1], b' ' | b'\t' | b'\n') =>
                {
                    self.skip_line();
                    continue;
                }
                _ => {}
            }
            self.bump();
        }
        None
    }

    fn run(mut self) -> Option<Pos> {
        // Block scalar content: lines indented more than this column (or blank).
        let mut block_scalar: Option<usize> = None;
        // After a line that ended inside a plain scalar: the column of its node. More indented
        // lines continue that scalar, so nothing on them starts a node (not even a quote).
        let mut plain: Option<usize> = None;
        while self.i < self.b.len() {
            // At a line start.
            let indent = self.b[self.i..].iter().take_while(|c| **c == b' ').count();
            let blank = matches!(self.at(self.i + indent), b'\n' | b'\r');
            if let Some(parent) = block_scalar {
                if blank || indent > parent {
                    self.skip_line();
                    self.bump();
                    continue;
                }
                block_scalar = None;
            }
            self.i += indent;
            let continued = plain.is_some_and(|col| indent > col) && !blank;
            if !blank {
                plain = None;
            }
            if let Some(p) = self.block_line(indent, continued, &mut block_scalar, &mut plain) {
                return Some(p);
            }
            self.skip_line();
            if self.i < self.b.len() {
                self.bump();
            }
        }
        None
    }

    /// One line in block context from its first non-space byte; it may end inside a later line
    /// (a flow collection or a quoted scalar can span lines).
    fn block_line(
        &mut self,
        indent: usize,
        continued: bool,
        block_scalar: &mut Option<usize>,
        plain: &mut Option<usize>,
    ) -> Option<Pos> {
        let mut node_start = !continued;
        // Content of a block scalar, and continuation lines of a plain one, are indented more
        // than the node's parent: the key of a `key: value` entry, else the `- ` of an item.
        let (mut dash, mut key, mut map) = (None::<usize>, indent, None::<usize>);
        // Whether the line so far ends inside a plain scalar.
        let mut in_plain = continued;
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            let c = self.b[self.i];
            let next = self.at(self.i + 1);
            let next_blank = matches!(next, b' ' | b'\t' | b'\n' | b'\r');
            if node_start {
                match c {
                    b' ' | b'\t' => self.i += 1,
                    b'-' | b'?' if next_blank => {
                        dash = Some(self.i - self.line_start);
                        self.i += 1;
                    }
                    b'[' | b'{' => {
                        let p = self.flow();
                        if p.is_some() {
                            return p;
                        }
                        node_start = false;
                        in_plain = false;
                    }
                    b'"' | b'\'' => {
                        key = self.i - self.line_start;
                        self.quoted();
                        node_start = false;
                        in_plain = false;
                    }
                    b'|' | b'>' => {
                        *block_scalar = Some(map.or(dash).unwrap_or(indent));
                        return None;
                    }
                    b'&' | b'!' => {
                        while self.i < self.b.len()
                            && !matches!(self.b[self.i], b' ' | b'\t' | b'\n')
                        {
                            self.i += 1;
                        }
                    }
                    b'#' => break,
                    _ => {
                        key = self.i - self.line_start;
                        node_start = false;
                        in_plain = true;
                        self.i += 1;
                    }
                }
                continue;
            }
            match c {
                b'#' if matches!(self.b[self.i - 1], b' ' | b'\t') => break,
                b':' if next_blank => {
                    node_start = true;
                    in_plain = false;
                    map = Some(key);
                    self.i += 1;
                }
                _ => self.i += 1,
            }
        }
        if in_plain {
            *plain = Some(map.or(dash).unwrap_or(indent));
        }
        None
    }
}

/// The error for a load that passed `limit` scenarios; `at` names the file where it happened.
pub fn too_many_scenarios(at: &str, limit: usize) -> ConfigError {
    ConfigError {
        file: at.to_string(),
        line: 0,
        column: 0,
        message: format!(
            "more than {limit} scenarios — expected at most --config.max-scenarios {limit} (each costs memory; raise the limit or split the agents with --shard)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_flow_collections_only() {
        let n = MAX_DEPTH;
        let ok = format!("a: {}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(too_deep(&ok).map(|p| p.column), None);
        let deep = format!("x: 1\na: {}{}", "[".repeat(n + 1), "]".repeat(n + 1));
        let pos = too_deep(&deep).expect("too deep");
        assert_eq!((pos.line, pos.column), (2, 4 + n));
        // Mixed, across lines, after `- `, anchors and tags.
        let mixed = format!("- &x !!seq\n  {}\n", "{a: [\n".repeat(n));
        assert!(too_deep(&mixed).is_some());
        // Brackets in quoted, plain and block scalars and in comments are text.
        let many = "[".repeat(500);
        for text in [
            format!("a: \"{many}\"\nb: '{many}'\n"),
            format!("a: x{many}\nb: re\\{many}\n"),
            format!("a: |\n  {many}\n  {many}\nb: 1\n"),
            format!("- a: >-\n    {many}\n  b: [1]\n"),
            format!("a: 1 # {many}\n# {many}\n"),
            format!("a: [\"{many}\", '{many}', x] # {many}\n"),
        ] {
            assert_eq!(too_deep(&text).map(|p| p.line), None, "{text}");
        }
        // Quotes that YAML reads as text do not hide what follows from the count.
        let deep = "[".repeat(n + 1);
        for text in [
            format!("a: [don't, {deep}\n"),
            format!("a: foo\n  \"\nb: {deep}\nc: \"\n"),
            format!("a: foo\n  '\n\nb: {deep}\nc: '\n"),
        ] {
            assert!(too_deep(&text).is_some(), "{text}");
        }
        // A block scalar ends where the indentation does.
        let after = format!("a: |\n  text\nb: {}\n", "[".repeat(n + 1));
        assert_eq!(too_deep(&after).map(|p| p.line), Some(3));
    }

    #[test]
    fn a_hundred_thousand_brackets_are_refused_at_once() {
        let text = format!(
            "scenario: s\nvars:\n  a: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = check_document("f.yaml", &text, &Limits::default()).unwrap_err();
        assert_eq!((e.line, e.column), (3, 6 + MAX_DEPTH));
        assert!(e.message.contains("more than 64 levels"), "{}", e.message);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(2048), "2 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
