//! Loading YAML documents into wire structs with errors that name `file:line`.
//!
//! Config and policy files are edited by people and checked in CI; every error must
//! point at the line to fix.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// An error located in a file, printed as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file the error is in.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// One sentence saying what is wrong.
    pub message: String,
}

impl FileError {
    /// An error at a known line of `file`.
    pub fn at(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// Parses `text` (the contents of `file`) into `T`, mapping serde errors to `file:line`.
///
/// An empty document parses as `T::default()`.
pub fn parse_yaml<T: DeserializeOwned + Default>(file: &Path, text: &str) -> Result<T, FileError> {
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(T::default());
    }
    serde_yaml_ng::from_str(text).map_err(|err| {
        let line = err.location().map(|loc| loc.line());
        FileError::at(file, line, strip_location(&err.to_string()))
    })
}

/// serde_yaml_ng appends " at line N column M"; we print the line ourselves.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(idx) => message[..idx].to_string(),
        None => message.to_string(),
    }
}

/// Finds the 1-based line of the `index`-th item of the top-level sequence `key:`,
/// and optionally the line of `field:` inside that item.
///
/// Used for errors that serde cannot place, such as a rule naming an undeclared
/// secret. Falls back to the line of `key:` (or `None`) when the layout is unusual.
pub fn locate_item(text: &str, key: &str, index: usize, field: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("{key}:");
    let key_line = lines
        .iter()
        .position(|l| l.starts_with(&header) && !l.starts_with(' '))?;
    let mut item_starts = Vec::new();
    let mut item_indent = None;
    let mut end = lines.len();
    for (i, raw) in lines.iter().enumerate().skip(key_line + 1) {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            end = i;
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            match item_indent {
                None => {
                    item_indent = Some(indent);
                    item_starts.push(i);
                }
                Some(ind) if ind == indent => item_starts.push(i),
                _ => {}
            }
        }
    }
    let Some(&start) = item_starts.get(index) else {
        return Some(key_line + 1);
    };
    let stop = item_starts.get(index + 1).copied().unwrap_or(end);
    if let Some(field) = field {
        let needle = format!("{field}:");
        for (i, raw) in lines.iter().enumerate().take(stop).skip(start) {
            let t = raw.trim_start().trim_start_matches("- ");
            if t.starts_with(&needle)
                || raw.contains(&format!(" {needle}"))
                || raw.contains(&format!("{{{needle}"))
            {
                return Some(i + 1);
            }
        }
    }
    Some(start + 1)
}

/// Finds the 1-based line of the top-level `key:`.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let header = format!("{key}:");
    text.lines()
        .position(|l| l.starts_with(&header))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nrules:\n  - name: a\n    host: a.com\n  - name: b\n    host: b.com\n    inject: [X]\ntunnel: []\n";

    #[test]
    fn locates_items_and_fields() {
        assert_eq!(locate_item(DOC, "rules", 0, None), Some(3));
        assert_eq!(locate_item(DOC, "rules", 1, None), Some(5));
        assert_eq!(locate_item(DOC, "rules", 1, Some("inject")), Some(7));
        assert_eq!(locate_item(DOC, "rules", 5, None), Some(2));
        assert_eq!(locate_key(DOC, "tunnel"), Some(8));
    }
}
