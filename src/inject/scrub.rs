//! Scrubbing responses: every injected secret (and every header value tollgate
//! rewrote) that an upstream echoes is turned back into its placeholder form
//! before the sandbox sees it: in header names and values, streamed bodies,
//! trailers and WebSocket messages, across chunk boundaries, whole or in pieces
//! of half a secret or more.
//!
//! A stream keeps back the last `longest form − 1` bytes between chunks, so a
//! match is always seen whole before anything of it is sent; and the pieces are
//! looked for at positions fixed by the stream offset, so the output does not
//! depend on how the upstream cut its body into chunks.

use super::forms::SecretForm;
use super::pieces::PieceIndex;
use crate::body::{BoxError, ProxyBody};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Replaces secret forms with their placeholder forms.
pub struct Scrubber {
    /// Forms matched whole, sorted and without duplicate echoes.
    whole: Vec<Arc<SecretForm>>,
    /// Forms whose pieces count.
    pieces: Option<Arc<PieceIndex>>,
    /// Bytes a stream keeps back between chunks.
    holdback: usize,
    /// Length of the longest whole form.
    whole_longest: usize,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("whole", &self.whole.len())
            .field("pieces", &self.pieces)
            .finish()
    }
}

/// Where a plan may go in the buffer it works on.
#[derive(Clone, Copy)]
struct Bounds {
    /// Stream offset of the buffer's first byte (fixes the sampled positions).
    base: u64,
    /// Matches starting here or later wait for more bytes.
    safe: usize,
    /// Bytes a run's end must stay short of the buffer's end.
    reach: usize,
}

/// One replacement planned in a buffer.
struct Hit<'s> {
    start: usize,
    end: usize,
    replacement: &'s [u8],
}

impl Scrubber {
    /// A scrubber for `forms`; `None` when there is nothing to scrub. Where whole
    /// forms overlap, the leftmost wins, then the longest.
    pub fn new(forms: Vec<SecretForm>) -> Option<Self> {
        Self::from_shared(forms.into_iter().map(Arc::new).collect())
    }

    /// Like [`Self::new`], over forms shared with other scrubbers.
    pub fn from_shared(forms: Vec<Arc<SecretForm>>) -> Option<Self> {
        let (pieces, whole): (Vec<_>, Vec<_>) = forms
            .into_iter()
            .filter(|f| f.is_scrubbable())
            .partition(|f| PieceIndex::takes(f));
        Self::assemble(whole, PieceIndex::new(pieces).map(Arc::new))
    }

    /// This scrubber plus `more` forms, each matched whole; the piece index is
    /// shared, not rebuilt. For the header values one request rewrote.
    pub fn with_whole(&self, more: Vec<SecretForm>) -> Option<Self> {
        let mut whole = self.whole.clone();
        whole.extend(
            more.into_iter()
                .filter(SecretForm::is_scrubbable)
                .map(Arc::new),
        );
        Self::assemble(whole, self.pieces.clone())
    }

    fn assemble(mut whole: Vec<Arc<SecretForm>>, pieces: Option<Arc<PieceIndex>>) -> Option<Self> {
        whole.sort_by(|a, b| a.echo().cmp(b.echo()));
        whole.dedup_by(|a, b| a.echo() == b.echo());
        let whole_longest = whole.iter().map(|f| f.echo().len()).max().unwrap_or(0);
        let longest = pieces.iter().map(|p| p.longest()).max().unwrap_or(0);
        let longest = longest.max(whole_longest);
        if longest == 0 {
            return None;
        }
        Some(Self {
            whole,
            pieces,
            holdback: longest - 1,
            whole_longest,
        })
    }

    /// Non-overlapping whole matches `(start, form)` in `hay`, leftmost first,
    /// longest where two start together.
    fn whole_matches<'h>(&'h self, hay: &'h [u8]) -> impl Iterator<Item = (usize, usize)> + 'h {
        let find = move |i: usize, from: usize| {
            memchr::memmem::find(&hay[from..], self.whole[i].echo()).map(|p| p + from)
        };
        let mut next: Vec<Option<usize>> = (0..self.whole.len()).map(|i| find(i, 0)).collect();
        std::iter::from_fn(move || {
            let (idx, start) = next
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.map(|p| (i, p)))
                .min_by_key(|&(i, p)| (p, usize::MAX - self.whole[i].echo().len()))?;
            let end = start + self.whole[idx].echo().len();
            for (i, slot) in next.iter_mut().enumerate() {
                if slot.is_some_and(|p| p < end) {
                    *slot = find(i, end);
                }
            }
            Some((start, idx))
        })
    }

    /// Plans the replacements in `hay`, whose first byte is at `base` in its
    /// stream. Returns them and how far the output may go: up to the end when
    /// `at_end`, else short of anything that could still grow into a match.
    fn plan(&self, hay: &[u8], base: u64, at_end: bool) -> (Vec<Hit<'_>>, usize) {
        let keep = if at_end { 0 } else { self.holdback };
        let bounds = Bounds {
            base,
            safe: hay.len().saturating_sub(keep),
            // Whole forms win over pieces, so a run is taken only once every
            // whole form that could overlap it has been seen whole.
            reach: if at_end {
                0
            } else {
                self.whole_longest.saturating_sub(1)
            },
        };
        let mut hits = Vec::new();
        let mut lo = 0;
        // Nothing at or after the first match not taken yet goes out now.
        let mut limit = None;
        for (start, idx) in self.whole_matches(hay) {
            if let Err(at) = self.pieces_in(hay, (&mut lo, start), bounds, &mut hits) {
                limit = Some(at);
                break;
            }
            if start >= bounds.safe {
                limit = Some(start);
                break;
            }
            let form = &self.whole[idx];
            hits.push(Hit {
                start,
                end: start + form.echo().len(),
                replacement: form.replacement(),
            });
            lo = start + form.echo().len();
        }
        if limit.is_none() {
            limit = self
                .pieces_in(hay, (&mut lo, hay.len()), bounds, &mut hits)
                .err();
        }
        let cut = lo.max(bounds.safe);
        (hits, limit.map_or(cut, |limit| cut.min(limit)))
    }

    /// Plans the runs of pieces in `hay[*lo..hi]` (advancing `lo` past each).
    /// Stops at the first run it cannot take yet (it starts at or after
    /// `safe`, or a whole form could still grow over it), returning its start.
    fn pieces_in<'s>(
        &'s self,
        hay: &[u8],
        (lo, hi): (&mut usize, usize),
        bounds: Bounds,
        hits: &mut Vec<Hit<'s>>,
    ) -> Result<(), usize> {
        let Some(index) = &self.pieces else {
            return Ok(());
        };
        while let Some(run) = index.next_run(hay, *lo, hi, bounds.base, bounds.safe) {
            if run.start >= bounds.safe || run.end + bounds.reach > hay.len() {
                return Err(run.start);
            }
            hits.push(Hit {
                start: run.start,
                end: run.end,
                replacement: index.forms()[run.form].replacement(),
            });
            *lo = run.end;
        }
        Ok(())
    }

    /// `hay[..cut]` with `hits` replaced, appended to `out`.
    fn emit(hay: &[u8], hits: &[Hit<'_>], cut: usize, out: &mut Vec<u8>) {
        let mut done = 0;
        for hit in hits {
            out.extend_from_slice(&hay[done..hit.start]);
            out.extend_from_slice(hit.replacement);
            done = hit.end;
        }
        out.extend_from_slice(&hay[done..cut.max(done)]);
    }

    /// Scrubs `data` whole.
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        let (hits, cut) = self.plan(data, 0, true);
        let mut out = Vec::with_capacity(data.len());
        Self::emit(data, &hits, cut, &mut out);
        out
    }

    /// Scrubs `data` whole; `None` when nothing in it had to change.
    pub fn scrub_if_needed(&self, data: &[u8]) -> Option<Vec<u8>> {
        let (hits, cut) = self.plan(data, 0, true);
        if hits.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(data.len());
        Self::emit(data, &hits, cut, &mut out);
        Some(out)
    }

    /// Scrubs every header value, and drops every header whose name carries a
    /// secret form: no upstream names a header after a secret in good faith.
    pub fn scrub_headers(&self, headers: &mut HeaderMap) {
        let tainted: Vec<http::HeaderName> = headers
            .keys()
            .filter(|name| self.scrub_if_needed(name.as_str().as_bytes()).is_some())
            .cloned()
            .collect();
        for name in tainted {
            headers.remove(name);
        }
        for value in headers.values_mut() {
            if let Some(clean) = self.scrub_if_needed(value.as_bytes()) {
                *value = HeaderValue::from_bytes(&clean).unwrap_or(HeaderValue::from_static(""));
            }
        }
    }

    /// A fresh stream through this scrubber.
    pub fn stream(self: &Arc<Self>) -> ScrubStream {
        ScrubStream {
            scrubber: self.clone(),
            pending: BytesMut::new(),
            consumed: 0,
        }
    }

    /// Scrubs a streamed body.
    pub fn scrub_body(self: Arc<Self>, body: ProxyBody) -> ProxyBody {
        ScrubBody {
            inner: body,
            stream: self.stream(),
            trailers: None,
            done: false,
        }
        .boxed()
    }
}

/// A byte stream being scrubbed: what goes in comes out, minus secrets, with
/// at most `longest form − 1` bytes held back until more arrive or it ends.
pub struct ScrubStream {
    scrubber: Arc<Scrubber>,
    pending: BytesMut,
    /// Bytes of the stream before `pending`.
    consumed: u64,
}

impl std::fmt::Debug for ScrubStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrubStream")
            .field("held", &self.pending.len())
            .field("consumed", &self.consumed)
            .finish()
    }
}

impl ScrubStream {
    /// Takes `data`; returns what is safe to send now.
    pub fn push(&mut self, data: &[u8]) -> Bytes {
        self.pending.extend_from_slice(data);
        self.drain(false)
    }

    /// Ends the stream; returns what was held back, scrubbed.
    pub fn finish(&mut self) -> Bytes {
        self.drain(true)
    }

    /// Bytes held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    fn drain(&mut self, at_end: bool) -> Bytes {
        let (hits, cut) = self.scrubber.plan(&self.pending, self.consumed, at_end);
        self.consumed += cut as u64;
        if hits.is_empty() {
            return self.pending.split_to(cut).freeze();
        }
        let mut out = Vec::with_capacity(cut);
        Scrubber::emit(&self.pending, &hits, cut, &mut out);
        drop(hits);
        let _ = self.pending.split_to(cut);
        Bytes::from(out)
    }
}

struct ScrubBody {
    inner: ProxyBody,
    stream: ScrubStream,
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
                        let out = this.stream.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        // Trailers (gRPC's grpc-message, say) can echo too.
                        let mut trailers = frame.into_trailers().unwrap_or_default();
                        this.stream.scrubber.scrub_headers(&mut trailers);
                        this.done = true;
                        let out = this.stream.finish();
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
                    let out = this.stream.finish();
                    return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
