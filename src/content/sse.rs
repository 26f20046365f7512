//! An incremental `text/event-stream` filter: events whose `data` is a
//! `tools/list` answer are written again with only the allowed tools
//! ([`filter_tools_list`]); every other event passes byte for byte.
//!
//! Lines end in CRLF, LF or CR; an empty line ends an event; an event's data is
//! its `data` fields joined with `\n` (as the SSE spec reads them, a leading
//! byte order mark of the stream ignored). The output does not depend on how the
//! input is cut into pushes. An event is held until it ends, up to
//! [`MAX_EVENT`] bytes; a longer event is dropped and replaced by an event
//! carrying a JSON-RPC error (it could have been a tool list).

use super::tools_filter::{filter_tools_list, refusal};

/// Largest event held.
pub const MAX_EVENT: usize = 4 << 20;

/// The filter for one response stream.
#[derive(Debug)]
pub struct SseToolsFilter {
    allowed: Vec<String>,
    max_event: usize,
    event: Vec<u8>,
    line_len: usize,
    after_cr: bool,
    dropping: bool,
    first_event: bool,
}

impl SseToolsFilter {
    /// A filter keeping the tools named in `allowed`.
    pub fn new(allowed: Vec<String>) -> Self {
        Self::with_max_event(allowed, MAX_EVENT)
    }

    /// The same, holding events of at most `max_event` bytes.
    pub fn with_max_event(allowed: Vec<String>, max_event: usize) -> Self {
        Self {
            allowed,
            max_event,
            event: Vec::new(),
            line_len: 0,
            after_cr: false,
            dropping: false,
            first_event: true,
        }
    }

    /// Takes the next bytes of the stream; returns what can be sent on.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in input {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    // The LF of a CRLF whose CR already ended the line.
                    if self.dropping || !self.event.is_empty() {
                        self.keep(b);
                    } else {
                        out.push(b);
                    }
                    continue;
                }
            }
            self.keep(b);
            if b == b'\r' || b == b'\n' {
                self.after_cr = b == b'\r';
                if self.line_len == 0 {
                    self.end_event(&mut out);
                }
                self.line_len = 0;
            } else {
                self.line_len += 1;
            }
        }
        out
    }

    /// Ends the stream: what is left of an unfinished event, filtered the same way.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.dropping || !self.event.is_empty() {
            self.end_event(&mut out);
        }
        self.line_len = 0;
        self.after_cr = false;
        out
    }

    fn keep(&mut self, b: u8) {
        if self.dropping {
            return;
        }
        self.event.push(b);
        if self.event.len() > self.max_event {
            self.dropping = true;
            self.event = Vec::new();
        }
    }

    fn end_event(&mut self, out: &mut Vec<u8>) {
        let first = std::mem::replace(&mut self.first_event, false);
        if std::mem::replace(&mut self.dropping, false) {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&refusal());
            out.extend_from_slice(b"\n\n");
            return;
        }
        let event = std::mem::take(&mut self.event);
        match rewrite(&event, first, &self.allowed) {
            Some(new) => out.extend_from_slice(&new),
            None => out.extend_from_slice(&event),
        }
    }
}

/// The event written again when its data is a tool list, else `None`.
fn rewrite(event: &[u8], first: bool, allowed: &[String]) -> Option<Vec<u8>> {
    let body = match event.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) if first => rest,
        _ => event,
    };
    let lines = split_lines(body);
    let mut data: Option<Vec<u8>> = None;
    for value in lines.iter().filter_map(|l| data_value(l)) {
        match &mut data {
            Some(d) => {
                d.push(b'\n');
                d.extend_from_slice(value);
            }
            None => data = Some(value.to_vec()),
        }
    }
    let new_data = filter_tools_list(&data?, allowed)?;
    let mut out = Vec::with_capacity(new_data.len() + 64);
    let mut written = false;
    for line in lines.iter().filter(|l| !l.is_empty()) {
        if data_value(line).is_some() {
            if !written {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&new_data);
                out.push(b'\n');
                written = true;
            }
        } else {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out.push(b'\n');
    Some(out)
}

fn data_value(line: &[u8]) -> Option<&[u8]> {
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    (name == b"data").then(|| value.strip_prefix(b" ").unwrap_or(value))
}

fn split_lines(event: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < event.len() {
        match event[i] {
            b'\n' => {
                lines.push(&event[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&event[start..i]);
                i += if event.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < event.len() {
        lines.push(&event[start..]);
    }
    lines
}

#[cfg(test)]
mod tests;
