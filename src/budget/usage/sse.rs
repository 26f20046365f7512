//! Server-sent events framing (WHATWG HTML, "Parsing an event stream"), fed in
//! pieces of any size: hands each event's `data` to a callback as the blank line
//! that ends it arrives. Only `data` lines matter here; `event`, `id`, `retry` and
//! comments are skipped. A leading byte-order mark is not removed.

/// Frames one event stream. Memory is bounded by `max`: the partial line kept
/// between pieces plus the current event's data never exceed it; an event that
/// would is dropped whole and counted in [`Framer::dropped`].
#[derive(Debug)]
pub(super) struct Framer {
    /// The current line, when it spans pieces.
    line: Vec<u8>,
    /// The current event's data lines, joined by `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// The last piece ended in `\r`: a `\n` starting the next one ends no line.
    after_cr: bool,
    /// The current event went over `max` and is being skipped.
    over: bool,
    /// The current line is being skipped to its end.
    skip_line: bool,
    max: usize,
    /// Events dropped for size.
    pub(super) dropped: u64,
}

impl Framer {
    pub(super) fn new(max: usize) -> Framer {
        Framer {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            over: false,
            skip_line: false,
            max,
            dropped: 0,
        }
    }

    /// Reads one piece of the stream, calling `on_event` with each complete
    /// event's data.
    pub(super) fn push(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (head, tail) = bytes.split_at(end);
            let mut rest = tail.get(1..).unwrap_or_default();
            if tail.first() == Some(&b'\r') {
                match rest.first() {
                    Some(b'\n') => rest = rest.get(1..).unwrap_or_default(),
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            if self.skip_line {
                self.skip_line = false;
            } else if self.line.is_empty() {
                self.line_ends(head, on_event);
            } else if self.fits(head.len()) {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.line_ends(&line, on_event);
                line.clear();
                self.line = line;
            } else {
                // Over the limit at its last piece: not a blank line either way.
                self.line.clear();
                self.too_big();
            }
            bytes = rest;
        }
        if !bytes.is_empty() && !self.skip_line {
            if self.fits(bytes.len()) {
                self.line.extend_from_slice(bytes);
            } else {
                // A line too long to keep (or one inside an event being
                // skipped): it is not blank, so it is skipped to its end.
                self.line.clear();
                self.too_big();
                self.skip_line = true;
            }
        }
    }

    /// The stream ended: an event whose data lines all arrived but whose blank
    /// line did not is still handed over; a partial last line is dropped.
    pub(super) fn finish(&mut self, on_event: &mut impl FnMut(&[u8])) {
        self.line.clear();
        self.skip_line = false;
        self.line_ends(b"", on_event);
    }

    fn fits(&self, more: usize) -> bool {
        !self.over && self.line.len() + self.data.len() + more <= self.max
    }

    fn too_big(&mut self) {
        self.over = true;
        self.data = Vec::new();
    }

    fn line_ends(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if line.is_empty() {
            if self.over {
                self.dropped += 1;
            } else if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            self.over = false;
            return;
        }
        if self.over {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = line.get(colon + 1..).unwrap_or_default();
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field != b"data" {
            return;
        }
        let sep = usize::from(self.has_data);
        if self.data.len() + sep + value.len() > self.max {
            self.too_big();
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }
}

#[cfg(test)]
impl Framer {
    /// Bytes held between pieces.
    pub(super) fn kept(&self) -> usize {
        self.line.len() + self.data.len()
    }
}
