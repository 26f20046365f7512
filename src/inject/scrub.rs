//! Scrubbing responses: every injected secret value (and every header value
//! tollgate rewrote) that an upstream echoes is turned back into its placeholder
//! form before the sandbox sees it, in headers and in streamed bodies, across
//! chunk boundaries.

use crate::proxy::body::{BoxError, ProxyBody};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Replaces secret bytes with their placeholder form.
///
/// A request carries few secrets, so each needle gets its own SIMD substring
/// finder; building them costs well under a microsecond, which matters because a
/// scrubber is built for every injected request.
pub struct Scrubber {
    needles: Vec<Needle>,
    /// Longest needle; a body keeps `longest - 1` bytes back between chunks.
    longest: usize,
}

struct Needle {
    finder: memchr::memmem::Finder<'static>,
    replacement: Vec<u8>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("needles", &self.needles.len())
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for `(needle, replacement)` pairs; `None` when there is nothing
    /// to scrub. Where needles overlap, the leftmost wins, then the longest.
    pub fn new(mut pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Option<Self> {
        pairs.retain(|(needle, replacement)| !needle.is_empty() && needle != replacement);
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        let longest = pairs.iter().map(|(n, _)| n.len()).max()?;
        let needles = pairs
            .into_iter()
            .map(|(needle, replacement)| Needle {
                finder: memchr::memmem::Finder::new(&needle).into_owned(),
                replacement,
            })
            .collect();
        Some(Self { needles, longest })
    }

    /// Non-overlapping matches `(start, needle index)` in `hay`, leftmost first,
    /// longest where two start together.
    fn matches<'h>(&'h self, hay: &'h [u8]) -> impl Iterator<Item = (usize, usize)> + 'h {
        let mut next: Vec<Option<usize>> =
            self.needles.iter().map(|n| n.finder.find(hay)).collect();
        std::iter::from_fn(move || {
            let (idx, start) = next
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.map(|p| (i, p)))
                .min_by_key(|&(i, p)| (p, usize::MAX - self.needles[i].finder.needle().len()))?;
            let end = start + self.needles[idx].finder.needle().len();
            for (i, slot) in next.iter_mut().enumerate() {
                if slot.is_some_and(|p| p < end) {
                    *slot = self.needles[i].finder.find(&hay[end..]).map(|p| p + end);
                }
            }
            Some((start, idx))
        })
    }

    /// Scrubs `data` whole.
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        let mut done = 0;
        for (start, idx) in self.matches(data) {
            out.extend_from_slice(&data[done..start]);
            out.extend_from_slice(&self.needles[idx].replacement);
            done = start + self.needles[idx].finder.needle().len();
        }
        out.extend_from_slice(&data[done..]);
        out
    }

    fn is_match(&self, data: &[u8]) -> bool {
        self.needles.iter().any(|n| n.finder.find(data).is_some())
    }

    /// Scrubs every header value.
    pub fn scrub_headers(&self, headers: &mut HeaderMap) {
        for value in headers.values_mut() {
            if self.is_match(value.as_bytes()) {
                if let Ok(clean) = HeaderValue::from_bytes(&self.scrub(value.as_bytes())) {
                    *value = clean;
                } else {
                    *value = HeaderValue::from_static("");
                }
            }
        }
    }

    /// Scrubs a streamed body.
    pub fn scrub_body(self: Arc<Self>, body: ProxyBody) -> ProxyBody {
        ScrubBody {
            inner: body,
            scrubber: self,
            pending: BytesMut::new(),
            trailers: None,
            done: false,
        }
        .boxed()
    }

    /// Processes `pending` (earlier tail plus new bytes). Returns what is safe to
    /// send; keeps in `pending` what could still be the start of a needle.
    fn process(&self, pending: &mut BytesMut, at_end: bool) -> Bytes {
        let keep = if at_end {
            0
        } else {
            self.longest.saturating_sub(1)
        };
        let safe = pending.len().saturating_sub(keep);
        let mut out = Vec::with_capacity(pending.len());
        let mut committed = 0;
        for (start, idx) in self.matches(&pending[..]) {
            if start >= safe {
                break;
            }
            out.extend_from_slice(&pending[committed..start]);
            out.extend_from_slice(&self.needles[idx].replacement);
            committed = start + self.needles[idx].finder.needle().len();
        }
        let cut = committed.max(safe);
        if cut > committed {
            out.extend_from_slice(&pending[committed..cut]);
        }
        let _ = pending.split_to(cut);
        Bytes::from(out)
    }
}

struct ScrubBody {
    inner: ProxyBody,
    scrubber: Arc<Scrubber>,
    pending: BytesMut,
    /// Trailers waiting until the held-back data has been sent.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl Body for ScrubBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.pending.extend_from_slice(&data);
                        let out = this.scrubber.process(&mut this.pending, false);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        // Trailers (gRPC's grpc-message, say) can echo too.
                        let mut trailers = frame.into_trailers().unwrap_or_default();
                        this.scrubber.scrub_headers(&mut trailers);
                        this.done = true;
                        let out = this.scrubber.process(&mut this.pending, true);
                        if out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        this.trailers = Some(trailers);
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    this.done = true;
                    let out = this.scrubber.process(&mut this.pending, true);
                    return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::body::full_body;
    use futures_util::stream;
    use http_body_util::StreamBody;

    fn scrubber() -> Arc<Scrubber> {
        Arc::new(
            Scrubber::new(vec![
                (b"ghp_SECRETVALUE".to_vec(), b"__GITHUB_TOKEN__".to_vec()),
                (
                    b"Bearer ghp_SECRETVALUE".to_vec(),
                    b"Bearer __GITHUB_TOKEN__".to_vec(),
                ),
            ])
            .unwrap(),
        )
    }

    async fn run(chunks: Vec<&'static [u8]>) -> Vec<u8> {
        let body = StreamBody::new(stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c)))),
        ));
        let scrubbed = scrubber().scrub_body(BodyExt::boxed(body));
        scrubbed.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn scrubs_across_every_chunk_boundary() {
        let text: &'static [u8] = b"x ghp_SECRETVALUE y Bearer ghp_SECRETVALUE z ghp_SECRETVALU";
        for split in 0..text.len() {
            let (a, b) = text.split_at(split);
            let out = run(vec![a, b]).await;
            assert_eq!(
                out, b"x __GITHUB_TOKEN__ y Bearer __GITHUB_TOKEN__ z ghp_SECRETVALU",
                "split at {split}"
            );
        }
        let bytes: Vec<&'static [u8]> = text.chunks(1).collect();
        assert_eq!(
            run(bytes).await,
            b"x __GITHUB_TOKEN__ y Bearer __GITHUB_TOKEN__ z ghp_SECRETVALU"
        );
    }

    #[tokio::test]
    async fn trailers_are_scrubbed_and_kept_after_held_back_data() {
        let mut trailers = HeaderMap::new();
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("bad token ghp_SECRETVALUE"),
        );
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"tail ghp_SECRET"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = BodyExt::boxed(StreamBody::new(stream::iter(frames)));
        let collected = scrubber().scrub_body(body).collect().await.unwrap();
        let got_trailers = collected.trailers().cloned().unwrap();
        assert_eq!(got_trailers["grpc-message"], "bad token __GITHUB_TOKEN__");
        assert_eq!(&collected.to_bytes()[..], b"tail ghp_SECRET");
    }

    #[tokio::test]
    async fn untouched_body_passes_whole() {
        let out = scrubber()
            .scrub_body(full_body("nothing secret here"))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&out[..], b"nothing secret here");
    }

    #[test]
    fn leftmost_then_longest_wins() {
        let s = Scrubber::new(vec![
            (b"abc".to_vec(), b"[3]".to_vec()),
            (b"abcdef".to_vec(), b"[6]".to_vec()),
            (b"cde".to_vec(), b"[c]".to_vec()),
        ])
        .unwrap();
        assert_eq!(s.scrub(b"xabcdefx abcx cdex"), b"x[6]x [3]x [c]x");
    }

    #[test]
    fn scrubs_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-echo", HeaderValue::from_static("token=ghp_SECRETVALUE"));
        h.insert("x-other", HeaderValue::from_static("fine"));
        scrubber().scrub_headers(&mut h);
        assert_eq!(h["x-echo"], "token=__GITHUB_TOKEN__");
        assert_eq!(h["x-other"], "fine");
    }
}
