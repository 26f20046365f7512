//! What the emulated services read of a request ([`Ask`]), who is asking
//! ([`Caller`]), and what they answer ([`Reply`]): plain values, so that every
//! answer can be tested without a socket.

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The parts of one request to a metadata address that decide its answer.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path as sent (not normalized: an odd spelling is a 404).
    pub path: &'a str,
    /// Raw query, if any.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

impl Ask<'_> {
    /// The one value of header `name`, as text; `None` when absent, repeated or
    /// not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.get_all(name).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        value.to_str().ok()
    }

    /// Whether header `name` is present at all.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }

    /// The first value of query parameter `name`, form-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Who is asking, and when.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The task the request belongs to.
    pub task: &'a str,
    /// Now.
    pub now: SystemTime,
    /// When the credentials handed out expire: an hour from now, or the task's
    /// end if sooner.
    pub expires: SystemTime,
}

impl Caller<'_> {
    /// Whole seconds until [`Caller::expires`], at least 1.
    pub fn expires_in(&self) -> u64 {
        self.expires
            .duration_since(self.now)
            .unwrap_or(Duration::ZERO)
            .as_secs()
            .max(1)
    }

    /// [`Caller::expires`] in Unix seconds.
    pub fn expires_unix(&self) -> u64 {
        unix(self.expires)
    }

    /// [`Caller::now`] in Unix seconds.
    pub fn now_unix(&self) -> u64 {
        unix(self.now)
    }
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The answer of an emulated metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers, `Content-Type` included.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: String,
}

impl Reply {
    /// A reply of `content_type`.
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body: body.into(),
        }
    }

    /// A JSON reply.
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Self::new(status, "application/json", body.to_string())
    }

    /// Adds a header.
    pub fn with(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A header's value, for tests and callers.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_form_decoded_and_headers_must_be_single() {
        let mut headers = HeaderMap::new();
        headers.append("metadata", HeaderValue::from_static("true"));
        headers.append("x-twice", HeaderValue::from_static("a"));
        headers.append("x-twice", HeaderValue::from_static("b"));
        let ask = Ask {
            method: &Method::GET,
            path: "/",
            query: Some("api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&x&a+b=c+d"),
            headers: &headers,
        };
        assert_eq!(
            ask.query_param("resource").as_deref(),
            Some("https://vault.azure.net")
        );
        assert_eq!(ask.query_param("x").as_deref(), Some(""));
        assert_eq!(ask.query_param("a b").as_deref(), Some("c d"));
        assert_eq!(ask.query_param("missing"), None);
        assert_eq!(ask.header("Metadata"), Some("true"));
        assert_eq!(ask.header("x-twice"), None);
        assert!(ask.has_header("x-twice"));
    }
}
