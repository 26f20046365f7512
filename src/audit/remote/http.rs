//! The HTTP sink: batched POSTs to a collector (Splunk HEC, Elastic, Vector, ...).
//!
//! Body without an envelope: a JSON array of records. With `envelope:
//! splunk_hec`: one `{"time":..,"host":..,"source":"tollgate",
//! "sourcetype":"tollgate:audit","event":<record>}` object per line (`host`
//! omitted when unknown). Both are sent as `application/json`; configured
//! headers are added (and win over the defaults). The record goes into the body
//! verbatim, so the collector stores the signed canonical bytes. Any 2xx
//! acknowledges the whole batch; anything else, a timeout or a connect error
//! means the same records are sent again later.

use super::delivery::{error_chain, Failure};
use super::queue::Queue;
use super::{ocsf, stamp};
use crate::config::{HttpEnvelope, HttpSink, SinkFormat};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use std::borrow::Cow;
use std::time::Duration;
use tracing::error;

/// How much of a collector's answer is read (and quoted in logs).
const MAX_RESPONSE_BODY: usize = 64 * 1024;
pub(super) struct Http {
    client: crate::tls::client::HttpsClient,
    uri: Uri,
    headers: HeaderMap,
    envelope: HttpEnvelope,
    format: SinkFormat,
    host: Option<String>,
    timeout: Duration,
}

impl Http {
    pub(super) fn new(
        cfg: &HttpSink,
        tls: &rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Http, String> {
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|e| format!("audit http sink url is not a valid URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err("audit http sink url must be http:// or https:// with a host".into());
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("audit http sink header name `{k}` is not valid"))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| format!("audit http sink header `{k}` has an invalid value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = crate::tls::client::https_client(tls, timeout);
        Ok(Http {
            client,
            uri,
            headers,
            envelope: cfg.envelope,
            format: cfg.format,
            host: stamp::hostname(),
            timeout,
        })
    }

    pub(super) async fn send(&mut self, batch: &[Bytes], queue: &Queue) -> Result<(), Failure> {
        let (body, included, invalid) =
            build_body(batch, self.envelope, self.format, self.host.as_deref());
        if included == 0 {
            queue.count_dropped(invalid);
            return Ok(());
        }
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        let fail = |reason: String| Failure { acked: 0, reason };
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(fail(format!("http sink: {}", error_chain(&e)))),
            Err(_) => {
                return Err(fail(format!(
                    "http sink: no response within {:?}",
                    self.timeout
                )))
            }
        };
        let status = resp.status();
        let answer = tokio::time::timeout(
            self.timeout,
            Limited::new(resp.into_body(), MAX_RESPONSE_BODY).collect(),
        )
        .await;
        if status.is_success() {
            queue.count_dropped(invalid);
            return Ok(());
        }
        let text = match answer {
            Ok(Ok(collected)) => {
                let bytes = collected.to_bytes();
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    .replace(['\r', '\n'], " ");
                if text.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", text.trim())
                }
            }
            _ => String::new(),
        };
        Err(fail(format!(
            "http sink: collector answered {status}{text}"
        )))
    }
}

/// Builds the POST body for `batch`: (body, records included, records dropped as
/// not JSON).
pub(super) fn build_body(
    batch: &[Bytes],
    envelope: HttpEnvelope,
    format: SinkFormat,
    host: Option<&str>,
) -> (Vec<u8>, usize, u64) {
    let mut out = Vec::with_capacity(batch.iter().map(|r| r.len() + 96).sum::<usize>() + 2);
    let mut included = 0usize;
    let mut invalid = 0u64;
    let host = host.and_then(|h| serde_json::to_string(h).ok());
    if envelope == HttpEnvelope::None {
        out.push(b'[');
    }
    for line in batch {
        // Parsing for `ts` also checks the record is JSON: one malformed record
        // must not make the collector refuse every batch forever.
        let ts = match stamp::record_ts_ms(line) {
            Ok(ts) => ts,
            Err(e) => {
                invalid += 1;
                error!(error = %e, "audit record is not JSON; not sent to the http sink");
                continue;
            }
        };
        let event: Cow<'_, [u8]> = match format {
            SinkFormat::Native => Cow::Borrowed(line.trim_ascii()),
            SinkFormat::Ocsf => match ocsf::render_ocsf(line) {
                Ok(v) => Cow::Owned(v),
                Err(e) => {
                    invalid += 1;
                    error!(error = %e, "audit record cannot be rendered as OCSF; not sent to the http sink");
                    continue;
                }
            },
        };
        match envelope {
            HttpEnvelope::None => {
                if included > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&event);
            }
            HttpEnvelope::SplunkHec => {
                if included > 0 {
                    out.push(b'\n');
                }
                out.extend_from_slice(b"{\"time\":");
                out.extend_from_slice(
                    stamp::epoch_seconds(ts.unwrap_or_else(stamp::now_ms)).as_bytes(),
                );
                if let Some(host) = &host {
                    out.extend_from_slice(b",\"host\":");
                    out.extend_from_slice(host.as_bytes());
                }
                out.extend_from_slice(
                    b",\"source\":\"tollgate\",\"sourcetype\":\"tollgate:audit\",\"event\":",
                );
                out.extend_from_slice(&event);
                out.push(b'}');
            }
        }
        included += 1;
    }
    if envelope == HttpEnvelope::None {
        out.push(b']');
    }
    (out, included, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rec(seq: u64) -> Bytes {
        Bytes::from(format!(
            "{{\"seq\":{seq},\"ts\":\"2026-11-23T05:00:00.123Z\",\"type\":\"request\"}}"
        ))
    }

    #[test]
    fn array_body_skips_non_json() {
        let batch = [rec(1), Bytes::from_static(b"garbage"), rec(2)];
        let (body, included, invalid) =
            build_body(&batch, HttpEnvelope::None, SinkFormat::Native, Some("h"));
        assert_eq!((included, invalid), (2, 1));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["seq"], 1);
        assert_eq!(v[1]["seq"], 2);
    }

    #[test]
    fn hec_body_one_object_per_line() {
        let batch = [rec(1), rec(2)];
        let (body, included, _) = build_body(
            &batch,
            HttpEnvelope::SplunkHec,
            SinkFormat::Native,
            Some("box-1"),
        );
        assert_eq!(included, 2);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            format!(
                "{{\"time\":1795410000.123,\"host\":\"box-1\",\"source\":\"tollgate\",\"sourcetype\":\"tollgate:audit\",\"event\":{}}}",
                String::from_utf8_lossy(&rec(1))
            )
        );
        let (body, _, _) = build_body(&batch[..1], HttpEnvelope::SplunkHec, SinkFormat::Ocsf, None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v.get("host").is_none());
        assert_eq!(v["event"]["class_uid"], 4002);
        assert_eq!(v["event"]["unmapped"]["tollgate"]["seq"], 1);
    }
}
