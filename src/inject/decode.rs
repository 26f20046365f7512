//! Decompressing response bodies so that they can be scrubbed.
//!
//! tollgate asks for `Accept-Encoding: identity` on requests it injected into, but
//! an upstream may compress anyway; gzip and deflate are decoded here, and any
//! other encoding is refused rather than passed on unscrubbed.

use crate::proxy::body::{BoxError, ProxyBody};
use async_compression::tokio::bufread::{GzipDecoder, ZlibDecoder};
use futures_util::TryStreamExt;
use http_body::Frame;
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// The decoded body, or `None` for an encoding tollgate cannot decode.
pub fn decode_body(body: ProxyBody, encoding: &str) -> Option<ProxyBody> {
    let reader = StreamReader::new(BodyDataStream::new(body).map_err(std::io::Error::other));
    match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Some(into_body(GzipDecoder::new(reader))),
        "deflate" => Some(into_body(ZlibDecoder::new(reader))),
        _ => None,
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
