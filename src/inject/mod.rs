//! Placeholders: deciding where they may be replaced, replacing them, and
//! scrubbing injected values out of responses.

pub mod decode;
pub mod remembered;
pub mod request;
pub mod scrub;

pub use remembered::InjectedForms;
pub use request::{check_request, value_forms, InjectionPermit, MAX_INJECT_BODY};
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
    // Every Content-Encoding header and every listed coding counts: a body must
    // not leave still compressed with its header gone.
    let codings: Vec<String> = parts
        .headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .flat_map(|v| {
            v.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    parts.headers.remove(header::CONTENT_ENCODING);
    let body = match codings.as_slice() {
        [] => body,
        [one] => decode::decode_body(body, one).ok_or_else(|| {
            Refusal::new(
                Reason::UpstreamError,
                format!("the upstream answered with Content-Encoding {one}, which tollgate cannot scrub secrets from"),
            )
        })?,
        _ => {
            return Err(Refusal::new(
                Reason::UpstreamError,
                format!("the upstream answered with several content codings ({}), which tollgate cannot scrub", codings.join(", ")),
            ))
        }
    };
    // Scrubbing can change the length.
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, scrubber.scrub_body(body)))
}
