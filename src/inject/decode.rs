//! Decoding response bodies so that they can be scrubbed: content codings
//! (tollgate asks for `Accept-Encoding: identity` on requests it injected into,
//! but an upstream may compress anyway) and transfer codings (hop-by-hop, so
//! tollgate must remove them whatever the request). gzip and deflate are decoded;
//! any other coding is refused rather than passed on unscrubbed or mislabelled.

use crate::body::{BoxError, ProxyBody};
use crate::error::{Reason, Refusal};
use async_compression::tokio::bufread::{GzipDecoder, ZlibDecoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderMap, HeaderName};
use http_body::Frame;
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// The codings listed in every `name` header, in the order they were applied,
/// lowercased, `identity` left out. A value that is not text counts as a coding
/// nobody can decode.
pub fn listed_codings(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap_or("?")
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty() && c != "identity")
        .collect()
}

/// Removes the transfer codings hyper left on a response body (it removes a
/// final `chunked` itself, nothing else): `gzip, chunked` is decoded here, and
/// any coding tollgate cannot decode is a 502.
///
/// SECURITY: transfer codings are hop-by-hop, so their header is never passed
/// on; passing the coded bytes on without it would hand the sandbox a body the
/// scrubber never saw in clear.
pub async fn remove_transfer_codings(
    headers: &mut HeaderMap,
    body: ProxyBody,
) -> Result<ProxyBody, Refusal> {
    let mut codings = listed_codings(headers, &header::TRANSFER_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    if codings.last().is_some_and(|c| c == "chunked") {
        codings.pop();
    }
    let one = match codings.as_slice() {
        [] => return Ok(body),
        [one] if one != "chunked" => one.clone(),
        _ => {
            return Err(Refusal::new(
                Reason::UpstreamError,
                format!(
                    "the upstream answered with Transfer-Encoding {}, which tollgate cannot decode",
                    codings.join(", ")
                ),
            ))
        }
    };
    let decoded = decode_body(body, &one).ok_or_else(|| {
        Refusal::new(
            Reason::UpstreamError,
            format!(
                "the upstream answered with Transfer-Encoding {one}, which tollgate cannot decode"
            ),
        )
    })?;
    // The length on the wire was of the coded bytes, if it meant anything.
    headers.remove(header::CONTENT_LENGTH);
    prime(decoded).await.map_err(|err| {
        Refusal::new(
            Reason::UpstreamError,
            format!("the upstream's body is labelled Transfer-Encoding {one} but does not decode: {err}"),
        )
    })
}

/// The decoded body, or `None` for an encoding tollgate cannot decode.
pub fn decode_body(body: ProxyBody, encoding: &str) -> Option<ProxyBody> {
    let reader = StreamReader::new(BodyDataStream::new(body).map_err(std::io::Error::other));
    match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Some(into_body(GzipDecoder::new(reader))),
        "deflate" => Some(into_body(ZlibDecoder::new(reader))),
        _ => None,
    }
}

/// Reads the first frame of `body` before anything is answered, so that a body
/// that is not what it claims to be (a "gzip" body that is not gzip) becomes an
/// error response instead of a connection cut after a 200.
pub async fn prime(mut body: ProxyBody) -> Result<ProxyBody, BoxError> {
    match body.frame().await {
        None => Ok(crate::body::empty_body()),
        Some(Err(err)) => Err(err),
        Some(Ok(first)) => Ok(Primed {
            first: Some(first),
            rest: body,
        }
        .boxed()),
    }
}

/// A body whose first frame was read ahead.
struct Primed {
    first: Option<Frame<Bytes>>,
    rest: ProxyBody,
}

impl http_body::Body for Primed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(first))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }
}

fn into_body<R: AsyncRead + Send + Sync + 'static>(reader: R) -> ProxyBody {
    StreamBody::new(
        ReaderStream::new(reader)
            .map_ok(Frame::data)
            .map_err(|e| Box::new(e) as BoxError),
    )
    .boxed()
}
