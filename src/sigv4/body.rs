//! Signed request bodies on their way upstream: a body checked against the
//! hash it was signed with, and an `aws-chunked` body whose chunk signatures
//! are checked and made again. Neither holds more than one chunk.

use super::chunked::{ChunkError, Resigner};
use crate::body::{BoxError, ProxyBody};
use aws_lc_rs::digest;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

/// Why a signed body was cut off on its way upstream. The upstream never gets
/// its end, so it never takes the request.
#[derive(Debug, thiserror::Error)]
pub enum BodyRefused {
    /// The body is not the one whose hash was signed.
    #[error("the body does not hash to the x-amz-content-sha256 it was signed with: it was changed after it was signed")]
    Hash,
    /// An `aws-chunked` body is malformed or was changed.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

/// Where a signed body that was cut off says why: shared by the body and the
/// code that sends it, since HTTP/2 does not carry a body's error back to the
/// sender.
#[derive(Debug, Clone, Default)]
pub struct Cutoff(std::sync::Arc<Mutex<Option<String>>>);

impl Cutoff {
    fn set(&self, why: &BodyRefused) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    /// Why the body was cut off, if it was.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn refuse(&self, why: BodyRefused) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.set(&why);
        Poll::Ready(Some(Err(Box::new(why))))
    }
}

/// A body checked, as it streams, against the hex SHA-256 it was signed with.
/// The last piece is held back until the hash is known, so a body that does
/// not match never reaches the upstream whole: it is cut off before its end.
pub struct HashChecked {
    inner: ProxyBody,
    // `digest::Context` is not `Sync`; the body is polled by one task at a time.
    hasher: Mutex<Option<digest::Context>>,
    expected: String,
    held: Option<Bytes>,
    ended: bool,
    cutoff: Cutoff,
}

impl HashChecked {
    /// Wraps `inner`, which must hash to `expected` (lower-case hex); a
    /// mismatch is told to `cutoff`.
    pub fn new(inner: ProxyBody, expected: String, cutoff: Cutoff) -> Self {
        Self {
            inner,
            hasher: Mutex::new(Some(digest::Context::new(&digest::SHA256))),
            expected,
            held: None,
            ended: false,
            cutoff,
        }
    }

    fn update(&self, data: &[u8]) {
        let mut hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hasher.as_mut() {
            h.update(data);
        }
    }

    fn matches(&self) -> bool {
        let mut hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner());
        hasher
            .take()
            .is_some_and(|h| crate::text::hex(h.finish().as_ref()) == self.expected)
    }
}

impl Body for HashChecked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.ended {
                return Poll::Ready(self.held.take().map(|data| Ok(Frame::data(data))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.update(&data);
                        if let Some(previous) = self.held.replace(data) {
                            return Poll::Ready(Some(Ok(Frame::data(previous))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(None) => {
                    self.ended = true;
                    if !self.matches() {
                        self.held = None;
                        return self.cutoff.refuse(BodyRefused::Hash);
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An `aws-chunked` body with every chunk signature checked against the
/// sandbox's chain and replaced by the real credentials' chain. Its length
/// does not change: a signature is always 64 hex digits.
pub struct Rechunked {
    inner: ProxyBody,
    resigner: Resigner,
    ended: bool,
    cutoff: Cutoff,
}

impl Rechunked {
    /// Wraps `inner`, re-signed by `resigner`; a refusal is told to `cutoff`.
    pub fn new(inner: ProxyBody, resigner: Resigner, cutoff: Cutoff) -> Self {
        Self {
            inner,
            resigner,
            ended: false,
            cutoff,
        }
    }
}

impl Body for Rechunked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // HTTP trailers of an aws-chunked body are not signed
                        // by SigV4; none is sent on.
                        continue;
                    };
                    let mut out = Vec::with_capacity(data.len() + 128);
                    if let Err(err) = self.resigner.push(&data, &mut out) {
                        self.ended = true;
                        return self.cutoff.refuse(BodyRefused::Chunk(err));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    if let Err(err) = self.resigner.finish() {
                        return self.cutoff.refuse(BodyRefused::Chunk(err));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::stream_body;
    use http_body_util::{BodyExt, StreamBody};

    fn pieces(parts: &[&'static [u8]]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        stream_body(StreamBody::new(futures_util::stream::iter(frames)))
    }

    fn sha256(data: &[u8]) -> String {
        crate::text::hex(digest::digest(&digest::SHA256, data).as_ref())
    }

    #[tokio::test]
    async fn the_last_piece_is_held_until_the_hash_is_known() {
        let good = HashChecked::new(
            pieces(&[b"hello ", b"wor", b"ld"]),
            sha256(b"hello world"),
            Cutoff::default(),
        );
        assert_eq!(
            &good.collect().await.unwrap().to_bytes()[..],
            b"hello world"
        );
        let empty = HashChecked::new(pieces(&[]), sha256(b""), Cutoff::default());
        assert!(empty.collect().await.unwrap().to_bytes().is_empty());

        let cutoff = Cutoff::default();
        let mut bad = HashChecked::new(
            pieces(&[b"hello ", b"wor", b"LD"]),
            sha256(b"hello world"),
            cutoff.clone(),
        );
        let mut delivered = Vec::new();
        let err = loop {
            match bad.frame().await {
                Some(Ok(frame)) => delivered.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(err)) => break err,
                None => panic!("a changed body ended normally"),
            }
        };
        assert!(matches!(
            err.downcast_ref::<BodyRefused>(),
            Some(BodyRefused::Hash)
        ));
        // What went on is short of the end: the upstream never has it whole.
        assert_eq!(delivered, b"hello wor");
        assert!(cutoff
            .reason()
            .is_some_and(|r| r.contains("x-amz-content-sha256")));
    }
}
