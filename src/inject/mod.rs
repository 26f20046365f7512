//! Placeholders: deciding where they may be replaced, replacing them, and
//! scrubbing injected values out of responses.

pub mod decode;
pub mod request;
pub mod scrub;

pub use request::{check_request, InjectionPermit, MAX_INJECT_BODY};
pub use scrub::Scrubber;

use crate::error::{Reason, Refusal};
use crate::proxy::body::ProxyBody;
use http::{header, Response};
use std::sync::Arc;

/// Scrubs a response to a request that carried injected secrets: headers, and the
/// body streamed (decompressed first when the upstream compressed it anyway).
pub fn scrub_response(
    response: Response<ProxyBody>,
    scrubber: Arc<Scrubber>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (mut parts, body) = response.into_parts();
    scrubber.scrub_headers(&mut parts.headers);
    let body = match parts.headers.remove(header::CONTENT_ENCODING) {
        None => body,
        Some(encoding) => {
            let name = encoding.to_str().unwrap_or("?").to_string();
            if name.trim().eq_ignore_ascii_case("identity") {
                body
            } else {
                decode::decode_body(body, &name).ok_or_else(|| {
                    Refusal::new(
                        Reason::UpstreamError,
                        format!("the upstream answered with Content-Encoding {name}, which tollgate cannot scrub secrets from"),
                    )
                })?
            }
        }
    };
    // Scrubbing can change the length.
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, scrubber.scrub_body(body)))
}
