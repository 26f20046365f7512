//! Scrubbing responses: every injected secret value (and every header value
//! tollgate rewrote) that an upstream echoes is turned back into its placeholder
//! form before the sandbox sees it, in headers and in streamed bodies, across
//! chunk boundaries.

use crate::proxy::body::{BoxError, ProxyBody};
use aho_corasick::{AhoCorasick, MatchKind};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Replaces secret bytes with their placeholder form.
#[derive(Debug)]
pub struct Scrubber {
    matcher: AhoCorasick,
    replacements: Vec<Vec<u8>>,
    /// Longest needle; a body keeps `longest - 1` bytes back between chunks.
    longest: usize,
}

impl Scrubber {
    /// A scrubber for `(needle, replacement)` pairs; `None` when there is nothing
    /// to scrub. The longest needle wins where needles overlap.
    pub fn new(mut pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Option<Self> {
        pairs.retain(|(needle, replacement)| !needle.is_empty() && needle != replacement);
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        if pairs.is_empty() {
            return None;
        }
        let longest = pairs.iter().map(|(n, _)| n.len()).max().unwrap_or(1);
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(pairs.iter().map(|(n, _)| n))
            .ok()?;
        Some(Self {
            matcher,
            replacements: pairs.into_iter().map(|(_, r)| r).collect(),
            longest,
        })
    }

    /// Scrubs `data` whole.
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        self.matcher
            .replace_all_with_bytes(data, &mut out, |m, _, dst| {
                dst.extend_from_slice(&self.replacements[m.pattern().as_usize()]);
                true
            });
        out
    }

    /// Scrubs every header value.
    pub fn scrub_headers(&self, headers: &mut HeaderMap) {
        for value in headers.values_mut() {
            if self.matcher.is_match(value.as_bytes()) {
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
        for m in self.matcher.find_iter(&pending[..]) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&pending[committed..m.start()]);
            out.extend_from_slice(&self.replacements[m.pattern().as_usize()]);
            committed = m.end();
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
                return Poll::Ready(None);
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
                    Err(trailers) => {
                        let out = this.scrubber.process(&mut this.pending, true);
                        if !out.is_empty() {
                            // Trailers after the last data; rare enough to drop them
                            // rather than hold state for a second frame.
                            this.done = true;
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        return Poll::Ready(Some(Ok(trailers)));
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
    fn scrubs_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-echo", HeaderValue::from_static("token=ghp_SECRETVALUE"));
        h.insert("x-other", HeaderValue::from_static("fine"));
        scrubber().scrub_headers(&mut h);
        assert_eq!(h["x-echo"], "token=__GITHUB_TOKEN__");
        assert_eq!(h["x-other"], "fine");
    }
}
