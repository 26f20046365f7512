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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::body::full_body;
    use http_body_util::BodyExt;

    fn scrubber() -> Arc<Scrubber> {
        Arc::new(Scrubber::new(vec![(b"s3cr3t".to_vec(), b"__T__".to_vec())]).unwrap())
    }

    fn response(encodings: &[&str], body: Vec<u8>) -> Response<ProxyBody> {
        let mut r = Response::new(full_body(body));
        for e in encodings {
            r.headers_mut()
                .append(header::CONTENT_ENCODING, e.parse().unwrap());
        }
        r
    }

    async fn gzip(data: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        async_compression::tokio::bufread::GzipEncoder::new(data)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn gzip_is_decoded_then_scrubbed() {
        let r =
            scrub_response(response(&["gzip"], gzip(b"token s3cr3t").await), scrubber()).unwrap();
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(
            &r.into_body().collect().await.unwrap().to_bytes()[..],
            b"token __T__"
        );
    }

    #[tokio::test]
    async fn stacked_or_unknown_codings_are_refused_not_passed_on() {
        let body = gzip(b"token s3cr3t").await;
        for encodings in [
            &["identity", "gzip", "gzip"][..],
            &["gzip, gzip"],
            &["br"],
            &["gzip", "br"],
        ] {
            let err = scrub_response(response(encodings, body.clone()), scrubber()).unwrap_err();
            assert_eq!(err.reason, Reason::UpstreamError, "{encodings:?}");
        }
        // A lone identity among the headers is fine.
        assert!(scrub_response(response(&["identity"], b"x".to_vec()), scrubber()).is_ok());
    }
}
