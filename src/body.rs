//! The one body type the proxy and the admin API send: streamed from upstream
//! or a small fixed body.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Boxed error of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response or request body passed through the proxy. Never buffered whole.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body with fixed contents (error bodies).
pub fn full_body(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty_body() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Wraps a streamed body (hyper's `Incoming`) without buffering it.
pub fn stream_body<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Most of an unread request body read and thrown away after an early answer.
pub const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// Longest time spent reading an unread request body after an early answer.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A client's request body that, when dropped before its end (a 403 or 413
/// answered before the upload finished), is read to its end in the background,
/// up to [`DRAIN_LIMIT`] bytes and [`DRAIN_TIME`].
///
/// Without this, HTTP/2 resets the stream before the answer goes out (curl:
/// "Stream error in the HTTP/2 framing layer") and an HTTP/1.1 client that is
/// still writing its body gets a reset instead of the answer.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<hyper::body::Incoming>,
}

impl RequestBody {
    /// Wraps a body hyper received.
    pub fn new(inner: hyper::body::Incoming) -> Self {
        Self { inner: Some(inner) }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take() else {
            return;
        };
        if http_body::Body::is_end_stream(&body) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0u64;
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
}

/// Why a request body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadWholeError {
    /// It is (or says it is) larger than the limit.
    TooLarge,
    /// The client broke it off, or it did not parse as HTTP framing.
    Unreadable,
}

/// Reads a request body of at most `limit` bytes, refusing one whose
/// `Content-Length` says it is larger before reading anything.
pub async fn read_whole(
    headers: &http::HeaderMap,
    body: RequestBody,
    limit: usize,
) -> Result<Vec<u8>, ReadWholeError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ReadWholeError::TooLarge);
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ReadWholeError::TooLarge),
        Err(_) => Err(ReadWholeError::Unreadable),
    }
}
