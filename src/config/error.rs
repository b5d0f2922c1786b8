//! The one error type of the loader, and the collector that keeps every error of every file in a
//! stable order without duplicates.

use std::fmt;

/// One problem in the configuration, with where it is.
///
/// `line` and `column` are 1-based (characters, not bytes). A file-level problem that has no
/// position — the path does not exist, cannot be read, a folder without YAML files — has
/// `line == 0 && column == 0` and displays as `file: message`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// One line: `what is wrong — what was expected`.
    pub message: String,
}

/// Shown redacted ([`crate::redact::text`]): a message quoting a URL as written (an invalid
/// one, a source) must not print its password or token.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, message) = (
            crate::redact::text(&self.file),
            crate::redact::text(&self.message),
        );
        if self.line == 0 {
            write!(f, "{file}: {message}")
        } else {
            write!(f, "{file}:{}:{}: {message}", self.line, self.column)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A 1-based position in a file.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

/// The errors of one file. They are reported sorted by position (the order a reader meets
/// them), without duplicates: recovery after a structural error can meet the same problem twice.
#[derive(Debug, Default)]
pub struct FileErrors {
    pub file: String,
    errors: Vec<(Pos, String)>,
}

impl FileErrors {
    pub fn new(file: &str) -> Self {
        FileErrors {
            file: file.to_string(),
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push((pos, message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Replace `secrets` (as written and as `{:?}` quotes them) in the messages pushed since the
    /// `from`-th: a message may quote a rendered value (an invalid URL) that carries one.
    pub fn scrub_since(&mut self, from: usize, secrets: &[String]) {
        for (_, message) in self.errors.iter_mut().skip(from) {
            for s in secrets {
                let quoted = format!("{s:?}");
                let escaped = &quoted[1..quoted.len() - 1];
                for form in [s.as_str(), escaped] {
                    if message.contains(form) {
                        *message = message.replace(form, crate::config::REDACTED);
                    }
                }
            }
        }
    }

    /// `file:line:col`, for "already defined at" messages.
    pub fn at(&self, pos: Pos) -> String {
        format!("{}:{}:{}", self.file, pos.line, pos.column)
    }

    pub fn into_errors(mut self) -> Vec<ConfigError> {
        self.errors.sort();
        self.errors.dedup();
        let file = self.file;
        self.errors
            .into_iter()
            .map(|(p, message)| ConfigError {
                file: file.clone(),
                line: p.line,
                column: p.column,
                message,
            })
            .collect()
    }
}

/// Every error on stderr, then how many in how many files (`sonde check`, a refused start).
pub fn eprint_report(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
    let files: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    eprintln!(
        "{} error{} in {} file{}",
        errors.len(),
        plural(errors.len()),
        files.len(),
        plural(files.len())
    );
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
