//! Where things are in a YAML file.
//!
//! serde_norway gives values without positions, so the loader reads the text a second time with
//! saphyr-parser's event parser and records, for every node, the position of its value and (for
//! mapping entries) of its key, keyed by the node's path (`scenarios[2].steps[0].http.url`).
//! Every later error — from serde, from semantic checks, from templates — carries a path and is
//! located through this index. A path without an entry (a node that came from an alias or a
//! merge key) falls back to its nearest recorded ancestor.
//!
//! The same walk finds duplicate keys, which serde_norway reports without a useful position.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

use super::error::Pos;

/// Path building, shared by the index and by everything that reports errors, so both sides
/// spell a path the same way.
pub fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path one level up, or `None` at the root.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // The last segment starts at the last `.` or `[` that is not inside a quoted key.
    let mut cut = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        if in_quotes {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => in_quotes = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '.' | '[' => cut = i,
            _ => {}
        }
    }
    Some(&path[..cut])
}

#[derive(Copy, Clone, Debug)]
struct Node {
    key: Option<Pos>,
    value: Pos,
}

/// A duplicate key found while indexing.
#[derive(Clone, Debug)]
pub struct DuplicateKey {
    pub key: String,
    pub first: Pos,
    pub again: Pos,
}

/// Path → position index of one document.
#[derive(Debug, Default)]
pub struct PosIndex {
    nodes: HashMap<String, Node>,
    pub duplicates: Vec<DuplicateKey>,
    /// Paths of scalar values tagged `!!binary` (base64 bytes): serde's view loses the tag.
    pub binary: std::collections::HashSet<String>,
}

enum Frame {
    Map {
        path: Option<String>,
        /// The next scalar is a key.
        want_key: bool,
        key: Option<(String, Pos)>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: Option<String>,
        next: usize,
    },
}

fn pos_of(m: &saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

impl PosIndex {
    /// Report every key given twice in one mapping (YAML parsers keep the last silently);
    /// true when there was any.
    pub fn report_duplicates(&self, errors: &mut super::error::FileErrors) -> bool {
        for d in &self.duplicates {
            errors.push(
                d.again,
                format!(
                    "duplicate key `{}` — expected each key once in a mapping (first at line {})",
                    d.key, d.first.line
                ),
            );
        }
        !self.duplicates.is_empty()
    }

    /// Index the first document of `text`. A syntax error ends the walk; what was indexed
    /// until then stays usable (serde_norway reports the syntax error itself).
    pub fn build(text: &str) -> PosIndex {
        let mut idx = PosIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0;
        for ev in Parser::new_from_str(text) {
            let Ok((ev, span)) = ev else { break };
            let pos = pos_of(&span.start);
            match ev {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                }
                Event::Scalar(v, _, _, tag) => {
                    let binary = tag
                        .as_ref()
                        .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "binary");
                    if let Some(path) = idx.leaf(&mut stack, pos, Some(v.as_ref())) {
                        if binary {
                            idx.binary.insert(path);
                        }
                    }
                }
                Event::Alias(_) => {
                    idx.leaf(&mut stack, pos, None);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = idx.start_node(&mut stack, pos);
                    stack.push(if matches!(ev, Event::MappingStart(..)) {
                        Frame::Map {
                            path,
                            want_key: true,
                            key: None,
                            seen: HashMap::new(),
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    node_done(&mut stack);
                }
                _ => {}
            }
        }
        idx
    }

    /// A scalar or alias: a key or a value. Returns a value's path.
    fn leaf(&mut self, stack: &mut [Frame], pos: Pos, text: Option<&str>) -> Option<String> {
        if let Some(Frame::Map {
            want_key: true,
            key,
            seen,
            path,
            ..
        }) = stack.last_mut()
        {
            let name = text.unwrap_or("*").to_string();
            if path.is_some() {
                if let Some(first) = seen.get(&name) {
                    self.duplicates.push(DuplicateKey {
                        key: name.clone(),
                        first: *first,
                        again: pos,
                    });
                } else {
                    seen.insert(name.clone(), pos);
                }
            }
            *key = Some((name, pos));
            node_done(stack);
            return None;
        }
        let path = self.start_node(stack, pos);
        node_done(stack);
        path
    }

    /// Record a value node starting at `pos`; returns its path (None inside complex keys).
    fn start_node(&mut self, stack: &mut [Frame], pos: Pos) -> Option<String> {
        let (path, key) = match stack.last() {
            None => (Some(String::new()), None),
            Some(Frame::Seq { path, next }) => (path.as_ref().map(|p| index_path(p, *next)), None),
            Some(Frame::Map { want_key: true, .. }) => (None, None), // a mapping or list used as a key: not addressable
            Some(Frame::Map { path, key, .. }) => match (path, key) {
                (Some(p), Some((k, kpos))) => (Some(key_path(p, k)), Some(*kpos)),
                _ => (None, None),
            },
        };
        if let Some(p) = &path {
            self.nodes.insert(p.clone(), Node { key, value: pos });
        }
        path
    }

    /// Where the value at `path` starts (or its nearest recorded ancestor).
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return n.value;
            }
            match parent_path(p) {
                Some(up) => p = up,
                None => return Pos::START,
            }
        }
    }

    /// Where the key of the entry at `path` is; the value's position for list items and the root.
    pub fn key(&self, path: &str) -> Pos {
        match self.nodes.get(path) {
            Some(n) => n.key.unwrap_or(n.value),
            None => self.value(path),
        }
    }
}

/// A node finished: in a mapping, a key is followed by its value and a value by the next key;
/// in a list the index moves on.
fn node_done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { want_key, key, .. }) => {
            if !*want_key {
                *key = None;
            }
            *want_key = !*want_key;
        }
        Some(Frame::Seq { next, .. }) => *next += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_located() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 1\n      \"f.g\": 2\n";
        let idx = PosIndex::build(text);
        assert_eq!(idx.key("a"), Pos { line: 1, column: 1 });
        assert_eq!(idx.value("a"), Pos { line: 1, column: 4 });
        assert_eq!(
            idx.value("b.c[1]"),
            Pos {
                line: 3,
                column: 10
            }
        );
        assert_eq!(idx.key("b.d[0].e"), Pos { line: 5, column: 7 });
        assert_eq!(
            idx.key(&key_path("b.d[0]", "f.g")),
            Pos { line: 6, column: 7 }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            idx.value("b.c[1].zzz"),
            Pos {
                line: 3,
                column: 10
            }
        );
        assert_eq!(parent_path("b.d[0][\"f.g\"]"), Some("b.d[0]"));
        assert_eq!(parent_path("b"), Some(""));
    }

    #[test]
    fn duplicate_keys_are_found() {
        let idx = PosIndex::build("a: 1\nb: 2\na: 3\n");
        assert_eq!(idx.duplicates.len(), 1);
        assert_eq!(idx.duplicates[0].again, Pos { line: 3, column: 1 });
    }
}
