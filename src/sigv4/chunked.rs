//! `aws-chunked` bodies signed chunk by chunk: each chunk's signature is
//! checked against the sandbox's chain and replaced by one of the real
//! credentials' chain, as the body streams. Two variants:
//!
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` ([`Resigner::new`]): chunks only;
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` ([`Resigner::with_trailer`]):
//!   the same chunks, then trailing headers (such as `x-amz-checksum-crc32`)
//!   and their signature, `x-amz-trailer-signature`.
//!
//! A chunk is held only until its end (its new signature covers its data, and
//! its header comes first), so memory is one chunk, at most [`MAX_CHUNK`],
//! plus the trailing headers, at most [`MAX_TRAILERS`] lines of
//! [`MAX_TRAILER_LINE`] bytes. Nothing is written out before the signature
//! that covers it has been checked. The body keeps its length: only the
//! 64-digit signatures change, every other byte (chunk sizes as written,
//! trailing headers) passes as it came.
//!
//! Chunk: `hex-size;chunk-signature=SIG\r\n` DATA `\r\n`. Its string to sign:
//! `AWS4-HMAC-SHA256-PAYLOAD\nDATE\nSCOPE\nPREVIOUS\n`
//! `hex(sha256(""))\nhex(sha256(DATA))`, where the first PREVIOUS is the
//! request's own (seed) signature. The last chunk has size 0 and no data.
//!
//! Without a trailer the last chunk is `0;chunk-signature=SIG\r\n\r\n`. With
//! one (AWS's "Signature Calculations for the Authorization Header: Including
//! Trailing Headers"; the AWS SDKs for Java and Rust write it the same way),
//! the last chunk's header is followed at once by the trailing headers, one
//! `name:value\r\n` line each, then `x-amz-trailer-signature:SIG\r\n`, then
//! `\r\n`. The trailer's string to sign is
//! `AWS4-HMAC-SHA256-TRAILER\nDATE\nSCOPE\nPREVIOUS\nhex(sha256(CANONICAL))`,
//! where PREVIOUS is the last chunk's signature and CANONICAL the trailing
//! headers other than the signature, sorted by name, each
//! `lower-case-name:trimmed-value\n`.

use super::sign::signature;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::hmac;

/// Largest chunk accepted (SDKs use 64 KiB to 8 MiB).
pub const MAX_CHUNK: usize = 16 * 1024 * 1024;
/// Most trailing headers accepted, besides the signature (SDKs send one
/// checksum).
pub const MAX_TRAILERS: usize = 8;
/// Longest trailing header line accepted, CRLF included.
pub const MAX_TRAILER_LINE: usize = 512;
/// Longest chunk header line accepted.
const MAX_HEADER: usize = 256;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The trailing header that carries the trailer's signature.
const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Not the `aws-chunked` framing.
    #[error("malformed aws-chunked body: {0}")]
    Malformed(&'static str),
    /// A chunk's signature is not the sandbox's: the body was altered.
    #[error("chunk {0} does not carry the signature it was signed with")]
    Signature(u64),
    /// The trailer's signature is not the sandbox's: the trailing headers (or
    /// their signature) were altered.
    #[error(
        "the trailing headers were altered: they do not carry the signature they were signed with"
    )]
    TrailerSignature,
    /// A chunk larger than [`MAX_CHUNK`].
    #[error("a chunk is larger than {MAX_CHUNK} bytes")]
    TooLarge,
}

/// One signing chain: its key, scope line, date and last signature.
#[derive(Clone)]
pub struct Chain {
    key: hmac::Key,
    amz_date: String,
    scope: String,
    previous: String,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// A chain that starts from the request's `seed` signature.
    pub fn new(key: hmac::Key, amz_date: &str, credential_scope: &str, seed: &str) -> Self {
        Self {
            key,
            amz_date: amz_date.to_string(),
            scope: credential_scope.to_string(),
            previous: seed.to_string(),
        }
    }

    /// The signature of the next chunk, whose data is `data`; it becomes the
    /// chain's last. (What a client does; the [`Resigner`] hashes each chunk
    /// once for both its chains.)
    pub fn sign_chunk(&mut self, data: &[u8]) -> String {
        self.next(&crate::text::hex(digest(&SHA256, data).as_ref()))
    }

    /// The signature of the trailer whose canonical form (see the module
    /// documentation) is `canonical`; it becomes the chain's last.
    pub fn sign_trailer(&mut self, canonical: &[u8]) -> String {
        self.trailer(&crate::text::hex(digest(&SHA256, canonical).as_ref()))
    }

    /// The signature of the next chunk, whose data hashes to `data_sha256`
    /// (hex); it becomes the chain's last.
    fn next(&mut self, data_sha256: &str) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{data_sha256}",
            self.amz_date, self.scope, self.previous,
        );
        self.previous = signature(&self.key, &to_sign);
        self.previous.clone()
    }

    /// The signature of the trailer whose canonical form hashes to
    /// `canonical_sha256` (hex); it becomes the chain's last.
    fn trailer(&mut self, canonical_sha256: &str) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{canonical_sha256}",
            self.amz_date, self.scope, self.previous,
        );
        self.previous = signature(&self.key, &to_sign);
        self.previous.clone()
    }
}

enum State {
    /// Reading a chunk header line.
    Header,
    /// Reading a chunk's data and its CRLF.
    Data {
        size: usize,
        size_text: String,
        claimed: String,
    },
    /// After the last chunk of a body with a trailer: reading trailing header
    /// lines up to and including `x-amz-trailer-signature`.
    Trailer,
    /// After the trailer's signature: only the closing CRLF may follow.
    Closing,
    /// The body is complete.
    Done,
}

/// The trailing headers read so far, held until their signature is checked.
#[derive(Default)]
struct Trailers {
    /// The lines as they came, CRLFs included.
    raw: Vec<u8>,
    /// Lower-case name and trimmed value of each.
    canonical: Vec<(String, String)>,
}

/// Checks a chunked body against one chain and signs it again with another.
pub struct Resigner {
    check: Chain,
    sign: Chain,
    trailer: bool,
    state: State,
    pending: Vec<u8>,
    trailers: Trailers,
    chunks: u64,
}

impl Resigner {
    /// For `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: checks with `check` (the
    /// sandbox's credentials), signs with `sign`.
    pub fn new(check: Chain, sign: Chain) -> Self {
        Self {
            check,
            sign,
            trailer: false,
            state: State::Header,
            pending: Vec::new(),
            trailers: Trailers::default(),
            chunks: 0,
        }
    }

    /// For `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: as [`Resigner::new`],
    /// and the trailing headers after the last chunk are checked and their
    /// signature replaced.
    pub fn with_trailer(check: Chain, sign: Chain) -> Self {
        Self {
            trailer: true,
            ..Self::new(check, sign)
        }
    }

    /// Takes the next piece of the body; appends to `out` every part it
    /// completes and checks, signed again. What is appended is never more
    /// than what was pushed.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkError> {
        while !input.is_empty() {
            match &self.state {
                State::Done => return Err(ChunkError::Malformed("bytes after the last chunk")),
                State::Header => {
                    let Some(line) =
                        self.take_line(&mut input, MAX_HEADER, "a chunk header is too long")?
                    else {
                        return Ok(());
                    };
                    let (size, size_text, claimed) = parse_header(&line)?;
                    if size == 0 && self.trailer {
                        // The last chunk of a body with a trailer: no data,
                        // no CRLF; the trailing headers follow.
                        self.finish_chunk(&size_text, &claimed, &[], out)?;
                        self.state = State::Trailer;
                    } else {
                        self.state = State::Data {
                            size,
                            size_text,
                            claimed,
                        };
                    }
                }
                State::Data { size, .. } => {
                    // The data plus its trailing CRLF.
                    let want = size + 2 - self.pending.len();
                    let take = want.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if take == want {
                        self.end_data(out)?;
                    }
                }
                State::Trailer => {
                    let Some(line) = self.take_line(
                        &mut input,
                        MAX_TRAILER_LINE,
                        "a trailing header is too long",
                    )?
                    else {
                        return Ok(());
                    };
                    self.trailer_line(line, out)?;
                }
                State::Closing => {
                    let want = 2 - self.pending.len();
                    let take = want.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if !b"\r\n".starts_with(&self.pending) {
                        return Err(ChunkError::Malformed(
                            "the trailer signature is not followed by an empty line",
                        ));
                    }
                    if take == want {
                        out.extend_from_slice(b"\r\n");
                        self.pending.clear();
                        self.state = State::Done;
                    }
                }
            }
        }
        Ok(())
    }

    /// The next whole line (up to and including `\n`) from `pending` and
    /// `input`, or `None` when `input` ends first (what was read is kept).
    fn take_line(
        &mut self,
        input: &mut &[u8],
        max: usize,
        too_long: &'static str,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        let room = max.saturating_sub(self.pending.len());
        let Some(end) = memchr::memchr(b'\n', &input[..input.len().min(room)]) else {
            self.pending
                .extend_from_slice(&input[..input.len().min(room)]);
            if input.len() >= room {
                return Err(ChunkError::Malformed(too_long));
            }
            return Ok(None);
        };
        self.pending.extend_from_slice(&input[..=end]);
        *input = &input[end + 1..];
        Ok(Some(std::mem::take(&mut self.pending)))
    }

    /// A chunk's data and CRLF have all arrived.
    fn end_data(&mut self, out: &mut Vec<u8>) -> Result<(), ChunkError> {
        let State::Data {
            size,
            size_text,
            claimed,
        } = std::mem::replace(&mut self.state, State::Header)
        else {
            return Ok(());
        };
        if !self.pending.ends_with(b"\r\n") {
            return Err(ChunkError::Malformed("chunk data is not followed by CRLF"));
        }
        let data = std::mem::take(&mut self.pending);
        self.finish_chunk(&size_text, &claimed, &data[..size], out)?;
        out.extend_from_slice(&data);
        // The buffer is kept for the next chunk.
        self.pending = data;
        self.pending.clear();
        if size == 0 {
            self.state = State::Done;
        }
        Ok(())
    }

    /// Checks one chunk's signature and writes its header, signed again.
    fn finish_chunk(
        &mut self,
        size_text: &str,
        claimed: &str,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ChunkError> {
        // Hashed once for both chains.
        let data_sha256 = crate::text::hex(digest(&SHA256, data).as_ref());
        self.chunks += 1;
        let expected = self.check.next(&data_sha256);
        if !same_signature(&expected, claimed) {
            return Err(ChunkError::Signature(self.chunks));
        }
        let fresh = self.sign.next(&data_sha256);
        // The size as it was written (leading zeros, upper case): the body
        // keeps its length.
        out.extend_from_slice(size_text.as_bytes());
        out.extend_from_slice(b";chunk-signature=");
        out.extend_from_slice(fresh.as_bytes());
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// One line of the trailer: a trailing header, held, or the signature,
    /// checked, after which the held headers and the new signature are written.
    fn trailer_line(&mut self, line: Vec<u8>, out: &mut Vec<u8>) -> Result<(), ChunkError> {
        let text = line.strip_suffix(b"\r\n").ok_or(ChunkError::Malformed(
            "a trailing header does not end in CRLF",
        ))?;
        if text.is_empty() {
            return Err(ChunkError::Malformed(
                "the trailer has no x-amz-trailer-signature",
            ));
        }
        let text = std::str::from_utf8(text)
            .map_err(|_| ChunkError::Malformed("a trailing header is not text"))?;
        let (name, value) = text
            .split_once(':')
            .ok_or(ChunkError::Malformed("a trailing header has no colon"))?;
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(ChunkError::Malformed(
                "a trailing header name is not a token",
            ));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(ChunkError::Malformed(
                "a trailing header value has control characters",
            ));
        }
        let name = name.to_ascii_lowercase();
        let trimmed = value.trim_matches([' ', '\t']);
        if name != TRAILER_SIGNATURE {
            if self.trailers.canonical.len() == MAX_TRAILERS {
                return Err(ChunkError::Malformed("too many trailing headers"));
            }
            if self.trailers.canonical.iter().any(|(n, _)| *n == name) {
                return Err(ChunkError::Malformed("a trailing header is repeated"));
            }
            let collapsed = trimmed
                .split_ascii_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            self.trailers.canonical.push((name, collapsed));
            self.trailers.raw.extend_from_slice(&line);
            return Ok(());
        }
        if !super::is_signature(trimmed) {
            return Err(ChunkError::Malformed(
                "the trailer signature is not 64 lower-case hex digits",
            ));
        }
        let mut canonical = std::mem::take(&mut self.trailers.canonical);
        canonical.sort();
        let mut bytes = Vec::new();
        for (name, value) in &canonical {
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(b':');
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(b'\n');
        }
        let canonical_sha256 = crate::text::hex(digest(&SHA256, &bytes).as_ref());
        let expected = self.check.trailer(&canonical_sha256);
        if !same_signature(&expected, trimmed) {
            return Err(ChunkError::TrailerSignature);
        }
        let fresh = self.sign.trailer(&canonical_sha256);
        out.append(&mut self.trailers.raw);
        // The line as it came, with only the signature replaced.
        let at = name.len() + 1 + (value.len() - value.trim_start_matches([' ', '\t']).len());
        out.extend_from_slice(&line[..at]);
        out.extend_from_slice(fresh.as_bytes());
        out.extend_from_slice(&line[at + fresh.len()..]);
        self.state = State::Closing;
        Ok(())
    }

    /// Ends the body: an error unless the last chunk (and, with a trailer, the
    /// trailer's signature) has been seen. A body that ends right after the
    /// trailer signature's line, without the closing empty line, is accepted:
    /// everything signed has been checked, and it passes on as it came.
    pub fn finish(&self) -> Result<(), ChunkError> {
        match self.state {
            State::Done => Ok(()),
            State::Closing if self.pending.is_empty() => Ok(()),
            State::Trailer | State::Closing => Err(ChunkError::Malformed(
                "the body ends inside its trailing headers",
            )),
            _ => Err(ChunkError::Malformed("the body ends before its last chunk")),
        }
    }
}

/// SECURITY: constant time, like every signature comparison.
fn same_signature(expected: &str, claimed: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), claimed.as_bytes())
        .is_ok()
}

/// An RFC 9110 token character (header names).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `hex-size;chunk-signature=SIG\r\n` → (size, size as written, SIG).
fn parse_header(line: &[u8]) -> Result<(usize, String, String), ChunkError> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(ChunkError::Malformed("a chunk header does not end in CRLF"))?;
    let line = std::str::from_utf8(line)
        .map_err(|_| ChunkError::Malformed("a chunk header is not text"))?;
    let (size_text, signature) =
        line.split_once(";chunk-signature=")
            .ok_or(ChunkError::Malformed(
                "a chunk header has no chunk-signature",
            ))?;
    if size_text.is_empty()
        || size_text.len() > 8
        || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ChunkError::Malformed("a chunk size is not hex"));
    }
    let size = usize::from_str_radix(size_text, 16)
        .map_err(|_| ChunkError::Malformed("a chunk size is not hex"))?;
    if size > MAX_CHUNK {
        return Err(ChunkError::TooLarge);
    }
    if !super::is_signature(signature) {
        return Err(ChunkError::Malformed(
            "a chunk signature is not 64 lower-case hex digits",
        ));
    }
    Ok((size, size_text.to_string(), signature.to_string()))
}

#[cfg(test)]
mod tests;
