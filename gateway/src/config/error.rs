//! Configuration errors: file, line, column and key, then what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the file could not be read.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path, e.g. `listen.c2s[0].tls.mode`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    pub(super) fn io(path: &Path, e: &std::io::Error) -> ConfigError {
        ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }
    }

    pub(super) fn from_serde(
        path: &Path,
        text: &str,
        e: serde_path_to_error::Error<toml::de::Error>,
    ) -> ConfigError {
        let key = clean_path(&e.path().to_string());
        let inner = e.into_inner();
        let span = inner.span();
        let mut err = match span {
            Some(span) => {
                let (line, column) = line_col(text, span.start);
                ConfigError {
                    file: path.to_path_buf(),
                    line: Some(line),
                    column: Some(column),
                    key: key.clone(),
                    message: inner.message().trim().to_string(),
                }
            }
            None => ConfigError::at_key(path, text, &key, inner.message().trim().to_string()),
        };
        // An unknown field's path stops at its table: add the field's name.
        if let Some(field) = unknown_field(inner.message()) {
            if key.is_empty() {
                err.key = field;
            } else if !key.ends_with(&field) {
                err.key = format!("{key}.{field}");
            }
        }
        err
    }

    /// An error about `key`, with the line of that key in `text` if found.
    pub(super) fn at_key(path: &Path, text: &str, key: &str, message: String) -> ConfigError {
        let pos = super::locate::key_offset(text, key).map(|o| line_col(text, o));
        ConfigError {
            file: path.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            key: key.to_string(),
            message,
        }
    }
}

/// serde_path_to_error writes `?` for an unknown position and `.` for the root.
fn clean_path(p: &str) -> String {
    if p == "." || p == "?" {
        String::new()
    } else {
        p.to_string()
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}
