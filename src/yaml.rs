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
        // libyaml places an error at the end of input on the line after the last
        // one, and some errors (a second document) have no place at all: name a
        // line the file has either way.
        let line = match err.location() {
            Some(loc) => loc.line().clamp(1, last_line(text)),
            None => content_line(text),
        };
        FileError::at(file, Some(line), strip_location(&err.to_string()))
    })
}

/// The number of the last line of `text` as YAML counts lines (breaks are `\n`,
/// `\r\n`, `\r`, NEL, LS and PS); a final break does not start another line.
fn last_line(text: &str) -> usize {
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let is_break = match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                true
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => true,
            _ => false,
        };
        if is_break && chars.peek().is_some() {
            line += 1;
        }
    }
    line
}

/// The first line of the document's content (not blank, a comment or a
/// marker), or 1: where an error about the whole document belongs.
fn content_line(text: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim();
            !(t.is_empty() || t.starts_with('#') || t.starts_with('%') || t == "---")
        })
        .map_or(1, |i| i + 1)
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
/// secret. Falls back to the line of `key:` when the layout is unusual, and to
/// the first line of the document when `key:` is not a block-style top-level line
/// (flow style, a quoted key), so an error always names a line of the file.
pub fn locate_item(text: &str, key: &str, index: usize, field: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("{key}:");
    let Some(key_line) = lines
        .iter()
        .position(|l| l.starts_with(&header) && !l.starts_with(' '))
    else {
        return Some(content_line(text));
    };
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

/// Finds the 1-based line of the top-level `key:`; when it is not written as a
/// block-style line of its own (flow style, a quoted key), the first line of the
/// document, so an error always names a line of the file.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let header = format!("{key}:");
    let line = text.lines().position(|l| l.starts_with(&header));
    Some(line.map_or_else(|| content_line(text), |i| i + 1))
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

    #[test]
    fn keys_that_are_not_block_lines_fall_back_to_the_document() {
        let flow = "# policy\n{name: x,\n rules: [{host: a.com}]}\n";
        assert_eq!(locate_key(flow, "rules"), Some(2));
        assert_eq!(locate_item(flow, "rules", 0, Some("host")), Some(2));
        assert_eq!(locate_key("", "name"), Some(1));
    }

    #[test]
    fn every_parse_error_names_a_line_of_the_file() {
        #[derive(Debug, Default, serde::Deserialize)]
        struct Doc {
            #[expect(dead_code, reason = "only its presence in the YAML is tested")]
            a: Option<Vec<u32>>,
        }
        let file = Path::new("x.yaml");
        // libyaml puts an error at the end of input on the line after the last.
        for (text, line) in [("a: [1", 1), ("a: [1\n", 1), ("\n\na: [1\r\n", 3)] {
            let err = parse_yaml::<Doc>(file, text).unwrap_err();
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
        }
        // A second document has no place in serde's error; it is the file's.
        let err = parse_yaml::<Doc>(file, "# c\na: [1]\n---\na: [2]\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }
}
