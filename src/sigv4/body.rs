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

/// A body checked, as it streams, against the hex SHA-256 it was signed with.
pub struct HashChecked {
    inner: ProxyBody,
    // `digest::Context` is not `Sync`; the body is polled by one task at a time.
    hasher: Mutex<Option<digest::Context>>,
    expected: String,
}

impl HashChecked {
    /// Wraps `inner`, which must hash to `expected` (lower-case hex).
    pub fn new(inner: ProxyBody, expected: String) -> Self {
        Self {
            inner,
            hasher: Mutex::new(Some(digest::Context::new(&digest::SHA256))),
            expected,
        }
    }
}

impl Body for HashChecked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mut hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner());
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(h)) = (frame.data_ref(), hasher.as_mut()) {
                    h.update(data);
                }
            }
            Poll::Ready(None) => {
                if let Some(h) = hasher.take() {
                    let got = crate::text::hex(h.finish().as_ref());
                    if got != self.expected {
                        return Poll::Ready(Some(Err(Box::new(BodyRefused::Hash))));
                    }
                }
            }
            _ => {}
        }
        drop(hasher);
        polled
    }

    fn is_end_stream(&self) -> bool {
        // The end is where the hash is checked: it must be polled.
        false
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
}

impl Rechunked {
    /// Wraps `inner`, re-signed by `resigner`.
    pub fn new(inner: ProxyBody, resigner: Resigner) -> Self {
        Self {
            inner,
            resigner,
            ended: false,
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
                        return Poll::Ready(Some(Err(Box::new(BodyRefused::Chunk(err)))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    if let Err(err) = self.resigner.finish() {
                        return Poll::Ready(Some(Err(Box::new(BodyRefused::Chunk(err)))));
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

/// The [`BodyRefused`] somewhere in `err`'s sources, if a signed body was cut off.
pub fn find_refused<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyRefused> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<BodyRefused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}
