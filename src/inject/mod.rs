//! Placeholders: deciding where they may be replaced, replacing them, and
//! scrubbing injected values out of responses.

pub mod basic;
pub mod decode;
pub mod forms;
pub mod pieces;
pub mod remembered;
pub mod request;
pub mod scrub;

pub use forms::{value_forms, Echo, SecretForm};
pub use remembered::InjectedForms;
pub use request::{check_request, InjectionPermit, MAX_INJECT_BODY};
pub use scrub::{ScrubStream, Scrubber};

use crate::body::ProxyBody;
use crate::error::{Reason, Refusal};
use http::{header, Response};
use std::sync::Arc;

/// Scrubs the answer to a HEAD request: its reason phrase and headers. Its
/// Content-Length and Content-Encoding describe the body a GET would get
/// (clients read an object's size there), so they stay.
pub fn scrub_head(response: Response<ProxyBody>, scrubber: &Scrubber) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    scrubber.scrub_headers(&mut parts.headers);
    Response::from_parts(parts, body)
}

/// Scrubs a response to a request that carried injected secrets: the reason
/// phrase, headers, and the body streamed (decompressed first when the upstream
/// compressed it anyway).
pub async fn scrub_response(
    response: Response<ProxyBody>,
    scrubber: Arc<Scrubber>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (mut parts, body) = response.into_parts();
    // SECURITY: an HTTP/1.1 reason phrase is the upstream's own text, which
    // hyper would send on verbatim; the client gets the canonical one instead.
    parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    scrubber.scrub_headers(&mut parts.headers);
    let body = decoded(&mut parts, body).await?;
    // Scrubbing can change the length.
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, scrubber.scrub_body(body)))
}

/// The body of a response that tollgate must read, with its Content-Encoding
/// undone (and the header removed); an encoding it cannot undo is 502.
pub async fn decoded(
    parts: &mut http::response::Parts,
    body: ProxyBody,
) -> Result<ProxyBody, Refusal> {
    // Every Content-Encoding header and every listed coding counts: a body must
    // not leave still compressed with its header gone.
    let codings = decode::listed_codings(&parts.headers, &header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_ENCODING);
    let body = match codings.as_slice() {
        [] => body,
        [one] => {
            let decoded = decode::decode_body(body, one).ok_or_else(|| {
                Refusal::new(
                    Reason::UpstreamError,
                    format!("the upstream answered with Content-Encoding {one}, which tollgate cannot read"),
                )
            })?;
            decode::prime(decoded).await.map_err(|err| {
                Refusal::new(
                    Reason::UpstreamError,
                    format!("the upstream's body is labelled Content-Encoding {one} but does not decode: {err}"),
                )
            })?
        }
        _ => {
            return Err(Refusal::new(
                Reason::UpstreamError,
                format!("the upstream answered with several content codings ({}), which tollgate cannot read", codings.join(", ")),
            ))
        }
    };
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full_body;
    use http_body_util::BodyExt;

    fn scrubber() -> Arc<Scrubber> {
        Arc::new(
            Scrubber::new(vec![SecretForm::new(
                b"s3cr3t".to_vec(),
                b"__T__".to_vec(),
                Echo::Whole,
            )])
            .unwrap(),
        )
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
        let r = scrub_response(response(&["gzip"], gzip(b"token s3cr3t").await), scrubber())
            .await
            .unwrap();
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
            let err = scrub_response(response(encodings, body.clone()), scrubber())
                .await
                .unwrap_err();
            assert_eq!(err.reason, Reason::UpstreamError, "{encodings:?}");
        }
        // A lone identity among the headers is fine.
        assert!(
            scrub_response(response(&["identity"], b"x".to_vec()), scrubber())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_body_labelled_gzip_that_is_not_gzip_is_refused_before_anything_is_sent() {
        let err = scrub_response(response(&["gzip"], b"plain text".to_vec()), scrubber())
            .await
            .unwrap_err();
        assert_eq!(err.reason, Reason::UpstreamError);
        assert!(err.message.contains("does not decode"), "{}", err.message);
    }

    #[test]
    fn a_head_answer_keeps_its_length_and_loses_secrets_in_headers() {
        let mut r = response(&["gzip"], Vec::new());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, "1234".parse().unwrap());
        r.headers_mut()
            .insert("x-echo", "token s3cr3t".parse().unwrap());
        let r = scrub_head(r, &scrubber());
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "1234");
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()["x-echo"], "token __T__");
    }

    #[tokio::test]
    async fn a_custom_reason_phrase_does_not_reach_the_client() {
        let mut r = response(&[], b"x".to_vec());
        r.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(
                b"Bad credentials Bearer s3cr3t",
            ));
        let r = scrub_response(r, scrubber()).await.unwrap();
        assert!(r.extensions().get::<hyper::ext::ReasonPhrase>().is_none());
    }
}
