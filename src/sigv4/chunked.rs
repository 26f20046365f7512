//! `aws-chunked` bodies signed chunk by chunk (`x-amz-content-sha256:
//! STREAMING-AWS4-HMAC-SHA256-PAYLOAD`): each chunk's signature is checked
//! against the sandbox's chain and replaced by one of the real credentials'
//! chain, as the body streams. A chunk is held only until its end (its new
//! signature covers its data, and its header comes first), so memory is one
//! chunk, at most [`MAX_CHUNK`].
//!
//! Chunk: `hex-size;chunk-signature=SIG\r\n` DATA `\r\n`; the last has size 0.
//! Its string to sign: `AWS4-HMAC-SHA256-PAYLOAD\nDATE\nSCOPE\nPREVIOUS\n`
//! `hex(sha256(""))\nhex(sha256(DATA))`, where the first PREVIOUS is the
//! request's own (seed) signature.

use super::sign::signature;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::hmac;

/// Largest chunk accepted (SDKs use 64 KiB to 8 MiB).
pub const MAX_CHUNK: usize = 16 * 1024 * 1024;
/// Longest chunk header line accepted.
const MAX_HEADER: usize = 256;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Not the `aws-chunked` framing.
    #[error("malformed aws-chunked body: {0}")]
    Malformed(&'static str),
    /// A chunk's signature is not the sandbox's: the body was altered.
    #[error("chunk {0} does not carry the signature it was signed with")]
    Signature(u64),
    /// A chunk larger than [`MAX_CHUNK`].
    #[error("a chunk is larger than {MAX_CHUNK} bytes")]
    TooLarge,
}

/// One signing chain: its key, scope line, date and last signature.
pub struct Chain {
    key: hmac::Key,
    amz_date: String,
    scope: String,
    previous: String,
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
}

enum State {
    Header,
    Data { size: usize, claimed: String },
    Done,
}

/// Checks a chunked body against one chain and signs it again with another.
pub struct Resigner {
    check: Chain,
    sign: Chain,
    state: State,
    pending: Vec<u8>,
    chunks: u64,
}

impl Resigner {
    /// Checks with `check` (the sandbox's credentials), signs with `sign`.
    pub fn new(check: Chain, sign: Chain) -> Self {
        Self {
            check,
            sign,
            state: State::Header,
            pending: Vec::new(),
            chunks: 0,
        }
    }

    /// Takes the next piece of the body; appends to `out` every chunk it
    /// completes, signed again.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkError> {
        while !input.is_empty() {
            match &self.state {
                State::Done => return Err(ChunkError::Malformed("bytes after the last chunk")),
                State::Header => {
                    let Some(end) = memchr::memchr(b'\n', input) else {
                        self.pending.extend_from_slice(input);
                        if self.pending.len() > MAX_HEADER {
                            return Err(ChunkError::Malformed("a chunk header is too long"));
                        }
                        return Ok(());
                    };
                    self.pending.extend_from_slice(&input[..=end]);
                    input = &input[end + 1..];
                    let (size, claimed) = parse_header(&self.pending)?;
                    self.pending.clear();
                    self.state = State::Data { size, claimed };
                }
                State::Data { size, .. } => {
                    // The data plus its trailing CRLF.
                    let want = size + 2 - self.pending.len();
                    let take = want.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if take == want {
                        self.finish_chunk(out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish_chunk(&mut self, out: &mut Vec<u8>) -> Result<(), ChunkError> {
        let State::Data { size, claimed } = std::mem::replace(&mut self.state, State::Header)
        else {
            return Ok(());
        };
        if !self.pending.ends_with(b"\r\n") {
            return Err(ChunkError::Malformed("chunk data is not followed by CRLF"));
        }
        // Hashed once for both chains.
        let data_sha256 = crate::text::hex(digest(&SHA256, &self.pending[..size]).as_ref());
        self.chunks += 1;
        let expected = self.check.next(&data_sha256);
        // SECURITY: constant time, like every signature comparison.
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            expected.as_bytes(),
            claimed.as_bytes(),
        )
        .is_err()
        {
            return Err(ChunkError::Signature(self.chunks));
        }
        let fresh = self.sign.next(&data_sha256);
        out.extend_from_slice(format!("{size:x};chunk-signature={fresh}\r\n").as_bytes());
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        if size == 0 {
            self.state = State::Done;
        }
        Ok(())
    }

    /// Ends the body: an error unless the last (empty) chunk has been seen.
    pub fn finish(&self) -> Result<(), ChunkError> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(ChunkError::Malformed("the body ends before its last chunk")),
        }
    }
}

/// `hex-size;chunk-signature=SIG\r\n` → (size, SIG).
fn parse_header(line: &[u8]) -> Result<(usize, String), ChunkError> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(ChunkError::Malformed("a chunk header does not end in CRLF"))?;
    let line = std::str::from_utf8(line)
        .map_err(|_| ChunkError::Malformed("a chunk header is not text"))?;
    let (size, signature) = line
        .split_once(";chunk-signature=")
        .ok_or(ChunkError::Malformed(
            "a chunk header has no chunk-signature",
        ))?;
    if size.is_empty() || size.len() > 8 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ChunkError::Malformed("a chunk size is not hex"));
    }
    let size = usize::from_str_radix(size, 16)
        .map_err(|_| ChunkError::Malformed("a chunk size is not hex"))?;
    if size > MAX_CHUNK {
        return Err(ChunkError::TooLarge);
    }
    if !super::is_signature(signature) {
        return Err(ChunkError::Malformed(
            "a chunk signature is not 64 lower-case hex digits",
        ));
    }
    Ok((size, signature.to_string()))
}

#[cfg(test)]
mod tests;
