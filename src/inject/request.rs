//! Binding and substituting placeholders in a request.
//!
//! [`check_request`] is the binding decision: it finds every declared placeholder
//! the request carries and refuses the request if any of them may not be injected
//! there. Only its [`InjectionPermit`] lets [`InjectionPermit::apply`] put secret
//! values into a request, so no code path injects without that decision.

use super::basic;
use super::forms::{Echo, SecretForm};
use crate::error::{Reason, Refusal};
use crate::policy::model::{PlaceholderName, SecretSpec};
use crate::policy::{Policy, Rule, Scheme};
use crate::secrets::SecretValue;
use http::header::{HeaderValue, AUTHORIZATION, PROXY_AUTHORIZATION};
use http::request::Parts;
use http::Uri;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Largest body an `inject_body` rule reads to substitute placeholders in.
pub const MAX_INJECT_BODY: usize = 1024 * 1024;

/// Permission to inject the listed secrets into one request.
#[derive(Debug)]
pub struct InjectionPermit<'p> {
    secrets: Vec<&'p SecretSpec>,
    /// The `aws` secret whose placeholder signed the request, with the
    /// signature that was found to hold.
    signed: Option<(&'p SecretSpec, Option<crate::sigv4::request::Verified>)>,
}

impl<'p> InjectionPermit<'p> {
    /// The secrets the request carries placeholders for.
    pub fn secrets(&self) -> &[&'p SecretSpec] {
        &self.secrets
    }

    /// The `aws` secret whose placeholder the request carries: the request is
    /// checked and signed again rather than having its placeholder replaced.
    pub fn signer(&self) -> Option<&'p SecretSpec> {
        self.signed.as_ref().map(|(spec, _)| *spec)
    }

    /// Records the sandbox's signature, checked.
    pub fn set_verified(&mut self, verified: crate::sigv4::request::Verified) {
        if let Some((_, slot)) = &mut self.signed {
            *slot = Some(verified);
        }
    }

    /// The checked signature, to sign again with the real credentials.
    pub fn take_verified(&mut self) -> Option<crate::sigv4::request::Verified> {
        self.signed.as_mut().and_then(|(_, v)| v.take())
    }

    /// Whether every secret to inject is an `aws` one (signed with, never
    /// written into the request).
    pub fn only_signs(&self) -> bool {
        self.secrets.iter().all(|s| is_aws(s))
    }

    /// Whether nothing is to be injected.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Replaces placeholders in header values (inside Basic credentials too), the
    /// query and `body`, with `values` (in the order of [`Self::secrets`]).
    /// Returns the header values it rewrote, as forms a response scrubber must
    /// turn back whole (the values' own forms are the caller's to remember, see
    /// [`value_forms`](super::forms::value_forms)).
    ///
    /// A secret whose value cannot be a header value (CR, LF or another control
    /// character) is refused rather than left as its placeholder: 503
    /// `secret_unavailable`, naming the secret.
    pub fn apply(
        self,
        parts: &mut Parts,
        body: Option<&mut Vec<u8>>,
        values: &[Arc<SecretValue>],
    ) -> Result<Vec<SecretForm>, Refusal> {
        // An `aws` secret's placeholder stays: the request is signed again.
        let (secrets, subs): (Vec<&SecretSpec>, Vec<(String, &str)>) = self
            .secrets
            .iter()
            .zip(values)
            .filter(|(spec, _)| !is_aws(spec))
            .map(|(spec, value)| (*spec, (spec.name.placeholder(), value.expose())))
            .unzip();
        let mut rewritten = Vec::new();

        for (name, value) in parts.headers.iter_mut() {
            if name == PROXY_AUTHORIZATION {
                continue;
            }
            let original = value.as_bytes();
            let in_basic = if name == AUTHORIZATION {
                replace_in_basic(original, &subs)
            } else {
                None
            };
            let replaced = match in_basic {
                Some(encoded) => Some(encoded),
                None => {
                    refuse_unfit_for_header(&secrets, &subs, original, name)?;
                    replace_all(original, &subs).map(Zeroizing::new)
                }
            };
            let Some(new) = replaced else { continue };
            let Ok(new_value) = HeaderValue::from_bytes(&new) else {
                continue;
            };
            // A client-chosen header could make a huge needle; the value's own
            // forms still cover anything longer.
            if new.len() <= MAX_HEADER_NEEDLE {
                rewritten.push(SecretForm::new(
                    new.to_vec(),
                    original.to_vec(),
                    Echo::Whole,
                ));
            }
            *value = new_value;
        }

        if let Some(pq) = parts.uri.path_and_query() {
            if let Some(query) = pq.query() {
                let encoded: Vec<(String, Zeroizing<String>)> = subs
                    .iter()
                    .map(|(p, v)| {
                        (
                            p.clone(),
                            Zeroizing::new(crate::text::percent_encode_unreserved(v)),
                        )
                    })
                    .collect();
                let refs: Vec<(String, &str)> = encoded
                    .iter()
                    .map(|(p, v)| (p.clone(), v.as_str()))
                    .collect();
                if let Some(new_query) = replace_all(query.as_bytes(), &refs).map(Zeroizing::new) {
                    let new_pq = Zeroizing::new(format!(
                        "{}?{}",
                        pq.path(),
                        String::from_utf8_lossy(&new_query)
                    ));
                    let mut uri_parts = parts.uri.clone().into_parts();
                    if let Ok(pq) = new_pq.parse() {
                        uri_parts.path_and_query = Some(pq);
                        if let Ok(uri) = Uri::from_parts(uri_parts) {
                            parts.uri = uri;
                        }
                    }
                }
            }
        }

        if let Some(body) = body {
            if let Some(new) = replace_all(body, &subs) {
                *body = new;
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
        }
        Ok(rewritten)
    }
}

/// Longest rewritten header value kept as a scrub needle.
pub const MAX_HEADER_NEEDLE: usize = 1024;

/// Refuses the request if a secret whose placeholder is in `header` has a value
/// that no header may carry.
///
/// SECURITY: forwarding the placeholder instead would hide the failure, and
/// splitting the value at CR/LF would let a secret's content add headers.
fn refuse_unfit_for_header(
    secrets: &[&SecretSpec],
    subs: &[(String, &str)],
    header: &[u8],
    name: &http::HeaderName,
) -> Result<(), Refusal> {
    for (spec, (placeholder, value)) in secrets.iter().zip(subs) {
        if !contains(header, placeholder.as_bytes()) {
            continue;
        }
        let unfit = |b: &u8| (*b < 0x20 && *b != b'\t') || *b == 0x7f;
        if let Some(bad) = value.as_bytes().iter().find(|b| unfit(b)) {
            let what = if matches!(bad, b'\r' | b'\n') {
                "CR or LF"
            } else {
                "a control character"
            };
            tracing::warn!(secret = %spec.name, header = %name, "a secret's value cannot go into a header");
            return Err(Refusal::new(
                Reason::SecretUnavailable,
                format!(
                    "secret {} cannot go into the {name} header: its value contains {what}",
                    spec.name
                ),
            ));
        }
    }
    Ok(())
}

/// Finds the declared placeholders in the request and decides whether each may be
/// injected: the rule lists it, the host is among the secret's `hosts`, and the
/// request leaves over TLS (or the rule sets `allow_plaintext`). A placeholder in
/// the path is never injected, so it is always refused.
pub fn check_request<'p>(
    policy: &'p Policy,
    rule: &Rule,
    host: &str,
    scheme: Scheme,
    parts: &Parts,
    body: Option<&[u8]>,
) -> Result<InjectionPermit<'p>, Refusal> {
    let mut secrets: Vec<&'p SecretSpec> = Vec::new();
    if policy.secrets.is_empty() {
        return Ok(InjectionPermit {
            secrets,
            signed: None,
        });
    }
    let refuse = |name: &PlaceholderName, why: &str| {
        Refusal::new(
            Reason::SecretNotAllowed,
            format!("the request carries __{name}__ {why}"),
        )
    };
    let path = parts.uri.path().as_bytes();
    for spec in policy.secrets.values() {
        let placeholder = spec.name.placeholder();
        if contains(path, placeholder.as_bytes()) {
            return Err(refuse(
                &spec.name,
                "in its path, where no secret is ever injected",
            ));
        }
        let in_query = parts
            .uri
            .query()
            .is_some_and(|q| contains(q.as_bytes(), placeholder.as_bytes()));
        let in_headers = parts.headers.iter().any(|(name, value)| {
            name != PROXY_AUTHORIZATION
                && (contains(value.as_bytes(), placeholder.as_bytes())
                    || (name == AUTHORIZATION
                        && basic_contains(value.as_bytes(), placeholder.as_bytes())))
        });
        let in_body = body.is_some_and(|b| contains(b, placeholder.as_bytes()));
        if !(in_query || in_headers || in_body) {
            continue;
        }
        if !rule.inject.contains(&spec.name) {
            return Err(refuse(
                &spec.name,
                &format!("but rule `{}` does not inject it", rule.name),
            ));
        }
        if !spec.hosts.iter().any(|h| h.matches(host)) {
            return Err(refuse(
                &spec.name,
                &format!("to {host}, which is not among its hosts"),
            ));
        }
        if scheme == Scheme::Http && !rule.allow_plaintext {
            return Err(refuse(
                &spec.name,
                "over plain http, and the rule does not set allow_plaintext",
            ));
        }
        secrets.push(spec);
    }
    let mut signers = secrets.iter().filter(|s| is_aws(s));
    let signed = signers.next().map(|spec| (*spec, None));
    if let Some(second) = signers.next() {
        return Err(Refusal::new(
            Reason::BadRequest,
            format!(
                "the request carries the placeholders of two aws secrets ({} and {}); a request is signed with one",
                signed.as_ref().map_or("", |(s, _)| s.name.as_str()),
                second.name
            ),
        ));
    }
    Ok(InjectionPermit { secrets, signed })
}

/// Whether `spec` is an `aws` secret (used to sign, never written in).
fn is_aws(spec: &SecretSpec) -> bool {
    matches!(spec.source, crate::policy::model::SecretSource::Aws(_))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Whether `Basic base64(...)` credentials decode to something containing `needle`.
fn basic_contains(value: &[u8], needle: &[u8]) -> bool {
    basic::decode(value).is_some_and(|decoded| contains(&decoded, needle))
}

/// Replaces placeholders inside Basic credentials and re-encodes them.
fn replace_in_basic(value: &[u8], subs: &[(String, &str)]) -> Option<Zeroizing<Vec<u8>>> {
    let decoded = basic::decode(value)?;
    let replaced = Zeroizing::new(replace_all(&decoded, subs)?);
    Some(basic::encode(&replaced))
}

/// Replaces every placeholder; `None` when there was none.
fn replace_all(text: &[u8], subs: &[(String, &str)]) -> Option<Vec<u8>> {
    let mut current: Option<Vec<u8>> = None;
    for (placeholder, value) in subs {
        let source = current.as_deref().unwrap_or(text);
        if !contains(source, placeholder.as_bytes()) {
            continue;
        }
        let mut out = Vec::with_capacity(source.len() + value.len());
        let mut rest = source;
        while let Some(i) = memchr::memmem::find(rest, placeholder.as_bytes()) {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(value.as_bytes());
            rest = &rest[i + placeholder.len()..];
        }
        out.extend_from_slice(rest);
        current = Some(out);
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::Scrubber;
    use crate::policy::parse_policy;
    use base64::Engine;
    use std::path::Path;

    const POLICY: &str = "name: p\nsecrets:\n  TOKEN:\n    env: TOKEN\n    hosts: [api.test]\n  OTHER:\n    env: OTHER\n    hosts: [other.test]\nrules:\n  - name: r\n    host: api.test\n    inject: [TOKEN]\n  - name: bare\n    host: bare.test\n";

    fn policy() -> Policy {
        parse_policy(Path::new("p.yaml"), POLICY).unwrap().0
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn injects_headers_basic_and_query_and_scrubs_all_forms() {
        let p = policy();
        let rule = &p.rules[0];
        let basic = base64::engine::general_purpose::STANDARD.encode("x-access-token:__TOKEN__");
        let mut req = parts(
            "https://api.test/x?t=__TOKEN__&u=__UNDECLARED__",
            &[
                ("authorization", &format!("Basic {basic}")),
                ("x-api-key", "__TOKEN__"),
                ("x-keep", "__UNDECLARED__"),
            ],
        );
        let permit = check_request(&p, rule, "api.test", Scheme::Https, &req, None).unwrap();
        assert_eq!(permit.secrets().len(), 1);
        let value = Arc::new(SecretValue::new("s3cr3t/+v".into()));
        let mut forms = crate::inject::forms::value_forms("__TOKEN__", "s3cr3t/+v");
        forms.extend(permit.apply(&mut req, None, &[value]).unwrap());
        let scrubber = Scrubber::new(forms).unwrap();
        let expected_basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("x-access-token:s3cr3t/+v")
        );
        assert_eq!(req.headers["authorization"], expected_basic.as_str());
        assert_eq!(req.headers["x-api-key"], "s3cr3t/+v");
        assert_eq!(req.headers["x-keep"], "__UNDECLARED__");
        assert_eq!(req.uri.query(), Some("t=s3cr3t%2F%2Bv&u=__UNDECLARED__"));
        let echoed = format!("{expected_basic} | s3cr3t/+v | t=s3cr3t%2F%2Bv");
        let clean = String::from_utf8(scrubber.scrub(echoed.as_bytes())).unwrap();
        assert_eq!(clean, format!("Basic {basic} | __TOKEN__ | t=__TOKEN__"));
    }

    #[test]
    fn a_value_no_header_may_carry_is_refused_naming_the_secret() {
        let p = policy();
        for (value, what) in [
            ("abc\r\nX-Injected: 1", "CR or LF"),
            ("abc\0", "a control character"),
        ] {
            let mut req = parts(
                "https://api.test/",
                &[("authorization", "Bearer __TOKEN__")],
            );
            let permit =
                check_request(&p, &p.rules[0], "api.test", Scheme::Https, &req, None).unwrap();
            let value = Arc::new(SecretValue::new(value.into()));
            let err = permit.apply(&mut req, None, &[value]).unwrap_err();
            assert_eq!(err.reason, Reason::SecretUnavailable);
            assert!(
                err.message.contains("TOKEN") && err.message.contains(what),
                "{}",
                err.message
            );
            assert!(!err.message.contains("abc"), "{}", err.message);
        }
        // Inside Basic credentials it is base64, so any byte can go.
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:__TOKEN__")
        );
        let mut req = parts("https://api.test/", &[("authorization", &basic)]);
        let permit = check_request(&p, &p.rules[0], "api.test", Scheme::Https, &req, None).unwrap();
        let value = Arc::new(SecretValue::new("line\nbreak".into()));
        assert!(permit.apply(&mut req, None, &[value]).is_ok());
    }

    #[test]
    fn refuses_placeholders_where_they_may_not_go() {
        let p = policy();
        let with = |uri: &str, h: &[(&str, &str)]| parts(uri, h);
        // Host outside the secret's hosts (a rule for bare.test does not inject).
        let err = check_request(
            &p,
            &p.rules[1],
            "bare.test",
            Scheme::Https,
            &with("https://bare.test/", &[("x", "__TOKEN__")]),
            None,
        )
        .unwrap_err();
        assert_eq!(err.reason, Reason::SecretNotAllowed);
        // In the path.
        let err = check_request(
            &p,
            &p.rules[0],
            "api.test",
            Scheme::Https,
            &with("https://api.test/__TOKEN__", &[]),
            None,
        )
        .unwrap_err();
        assert!(err.message.contains("path"));
        // A declared secret the rule does not list.
        let err = check_request(
            &p,
            &p.rules[0],
            "api.test",
            Scheme::Https,
            &with("https://api.test/", &[("x", "__OTHER__")]),
            None,
        )
        .unwrap_err();
        assert!(err.message.contains("OTHER"));
        // Plain http without allow_plaintext.
        let err = check_request(
            &p,
            &p.rules[0],
            "api.test",
            Scheme::Http,
            &with("http://api.test/", &[("x", "__TOKEN__")]),
            None,
        )
        .unwrap_err();
        assert!(err.message.contains("plain http"));
        // Inside Basic credentials, toward a host it may not go to.
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:__TOKEN__")
        );
        assert!(check_request(
            &p,
            &p.rules[1],
            "bare.test",
            Scheme::Https,
            &with("https://bare.test/", &[("authorization", &basic)]),
            None
        )
        .is_err());
        // In the body of an inject_body request.
        assert!(check_request(
            &p,
            &p.rules[1],
            "bare.test",
            Scheme::Https,
            &with("https://bare.test/", &[]),
            Some(b"{\"t\":\"__TOKEN__\"}")
        )
        .is_err());
        // Undeclared placeholders pass.
        assert!(check_request(
            &p,
            &p.rules[1],
            "bare.test",
            Scheme::Https,
            &with("https://bare.test/__NOPE__", &[("x", "__NOPE__")]),
            None
        )
        .unwrap()
        .is_empty());
    }
}
