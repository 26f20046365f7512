//! Narrowing the answer to a `tools/list` request that a `jsonrpc` rule with
//! `tools` let through, so the sandbox is never told of tools it may not call:
//! a JSON answer is read whole (at most [`MAX_RESPONSE`]) and written again; a
//! `text/event-stream` answer is filtered event by event as it streams
//! ([`SseToolsFilter`]). Fail-closed: an answer that looks like JSON but cannot
//! be read safely, or is larger than the limit, is replaced by a JSON-RPC error.

use crate::body::{full_body, BoxError, ProxyBody};
use crate::content::sse::SseToolsFilter;
use crate::content::tools_filter::{filter_tools_list, refusal, MAX_RESPONSE};
use crate::error::Refusal;
use bytes::Bytes;
use http::{header, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The answer with only the `allowed` tools listed.
pub async fn narrow(
    response: Response<ProxyBody>,
    allowed: Vec<String>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (mut parts, body) = response.into_parts();
    let body = crate::inject::decoded(&mut parts, body).await?;
    // The list written again has another length.
    parts.headers.remove(header::CONTENT_LENGTH);
    let event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/event-stream"));
    let body = if event_stream {
        Filtered {
            inner: body,
            filter: SseToolsFilter::new(allowed),
            trailers: None,
            done: false,
        }
        .boxed()
    } else {
        full_body(narrowed_json(body, allowed).await)
    };
    Ok(Response::from_parts(parts, body))
}

/// A whole JSON answer narrowed; one over the limit, or cut off, is refused.
async fn narrowed_json(mut body: ProxyBody, allowed: Vec<String>) -> Vec<u8> {
    let mut whole = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return refusal();
        };
        if let Ok(data) = frame.into_data() {
            if whole.len() + data.len() > MAX_RESPONSE {
                return refusal();
            }
            whole.extend_from_slice(&data);
        }
    }
    filter_tools_list(&whole, &allowed).unwrap_or(whole)
}

/// An event stream with every `tools/list` answer in it narrowed.
struct Filtered {
    inner: ProxyBody,
    filter: SseToolsFilter,
    /// Trailers held back until what the filter still holds is sent.
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

impl http_body::Body for Filtered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    this.done = true;
                    let rest = this.filter.finish();
                    if rest.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest.into()))));
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let out = this.filter.push(&data);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                    }
                }
                Err(trailers) => {
                    this.trailers = Some(trailers);
                    this.done = true;
                    let rest = this.filter.finish();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(rest.into()))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn allowed() -> Vec<String> {
        vec!["add".into()]
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"add"},{"name":"delete_everything"}]}}"#;

    async fn text(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_json_answer_lists_only_the_allowed_tools() {
        let mut r = Response::new(full_body(LIST));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, LIST.len().into());
        let out = narrow(r, allowed()).await.unwrap();
        assert!(out.headers().get(header::CONTENT_LENGTH).is_none());
        let out = text(out).await;
        assert!(
            out.contains("\"add\"") && !out.contains("delete_everything"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_event_stream_cut_anywhere_lists_only_the_allowed_tools() {
        let stream = format!("event: message\ndata: {LIST}\n\n");
        let pieces: Vec<Result<Frame<Bytes>, BoxError>> = stream
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(pieces)).boxed();
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "text/event-stream; charset=utf-8".parse().unwrap(),
        );
        let out = text(narrow(r, allowed()).await.unwrap()).await;
        assert!(out.starts_with("event: message\n"), "{out}");
        assert!(
            out.contains("\"add\"") && !out.contains("delete_everything"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_withheld() {
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":2,"result":{{"tools":[{{"name":"delete_everything","description":"{}"}}]}}}}"#,
            "x".repeat(MAX_RESPONSE)
        );
        let out = text(
            narrow(Response::new(full_body(big)), allowed())
                .await
                .unwrap(),
        )
        .await;
        assert!(
            out.contains("withheld") && !out.contains("delete_everything"),
            "{out}"
        );
    }
}
