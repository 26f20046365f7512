//! The one body type the proxy sends: streamed from upstream or a small fixed body.

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
