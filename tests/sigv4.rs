//! SigV4 against the real signer: botocore (what every boto3 client runs) signs
//! S3, SQS, IAM, API Gateway and DynamoDB requests with awkward paths, queries
//! and header values (tests/sigv4/sign_with_botocore.py), and tollgate must
//! rebuild the same canonical request and signature from the request as sent.
//! A request changed after signing must not verify.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use http::{HeaderMap, HeaderName, HeaderValue};
use tollgate::sigv4::{
    canonical_request, parse_authorization, signature, string_to_sign, CanonicalInput, SigningKeys,
};

/// A change made to a signed request.
type Change = Box<dyn Fn(&mut Signed)>;

struct Signed {
    service: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    payload_hash: String,
    secret: String,
}

/// Requests signed by botocore, or `None` (after a loud skip) without it.
fn signed_by_botocore() -> Option<Vec<Signed>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sigv4/sign_with_botocore.py"
    );
    let out = std::process::Command::new("python3").arg(script).output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'botocore'") => {
            common::skip::skipped("needs python3 with botocore (.ci/run installs it)");
            return None;
        }
        Ok(out) => panic!("{}", String::from_utf8_lossy(&out.stderr)),
        Err(err) => {
            common::skip::skipped(&format!("needs python3: {err}"));
            return None;
        }
    };
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                Signed {
                    service: v["service"].as_str().unwrap().into(),
                    method: v["method"].as_str().unwrap().into(),
                    url: v["url"].as_str().unwrap().into(),
                    headers: v["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
                        .collect(),
                    payload_hash: v["payload_hash"].as_str().unwrap().into(),
                    secret: v["secret"].as_str().unwrap().into(),
                }
            })
            .collect(),
    )
}

/// The signature tollgate computes for `req` as sent, and the one it carries.
fn recompute(req: &Signed, keys: &SigningKeys) -> (String, String) {
    let rest = req.url.split_once("://").unwrap().1;
    let (host, path_and_query) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut headers = HeaderMap::new();
    let mut authorization = None;
    let mut amz_date = None;
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.clone());
            continue;
        }
        if name.eq_ignore_ascii_case("x-amz-date") {
            amz_date = Some(value.clone());
        }
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let auth = parse_authorization(&authorization.unwrap()).unwrap();
    assert_eq!(auth.scope.service, req.service);
    let canonical = canonical_request(&CanonicalInput {
        method: &req.method,
        path,
        query,
        headers: &headers,
        host,
        signed_headers: &auth.signed_headers,
        payload_hash: &req.payload_hash,
        service: &auth.scope.service,
        exclude_query: &[],
    })
    .unwrap();
    let to_sign = string_to_sign(&amz_date.unwrap(), &auth.scope, &canonical);
    let key = keys.key(&req.secret, &auth.scope);
    (signature(&key, &to_sign), auth.signature)
}

#[test]
fn botocore_signatures_are_recomputed_exactly() {
    let Some(requests) = signed_by_botocore() else {
        return;
    };
    assert!(requests.len() >= 7);
    let keys = SigningKeys::default();
    for req in &requests {
        let (ours, theirs) = recompute(req, &keys);
        assert_eq!(ours, theirs, "{} {} ({})", req.method, req.url, req.service);
    }
}

#[test]
fn a_request_changed_after_signing_does_not_verify() {
    let Some(requests) = signed_by_botocore() else {
        return;
    };
    let keys = SigningKeys::default();
    for req in &requests {
        let changes: Vec<Change> = vec![
            Box::new(|r| {
                r.method = if r.method == "GET" {
                    "DELETE".into()
                } else {
                    "GET".into()
                }
            }),
            Box::new(|r| r.url = r.url.replacen(".com/", ".com/other/", 1)),
            Box::new(|r| {
                r.url.push_str(if r.url.contains('?') {
                    "&extra=1"
                } else {
                    "?extra=1"
                })
            }),
            Box::new(|r| r.payload_hash = "UNSIGNED-PAYLOAD".into()),
            Box::new(|r| {
                for (name, value) in &mut r.headers {
                    if name.eq_ignore_ascii_case("x-amz-date") {
                        *value = "20000101T000000Z".into();
                    }
                }
            }),
            Box::new(|r| r.secret = "not the placeholder's secret".into()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut altered = Signed {
                service: req.service.clone(),
                method: req.method.clone(),
                url: req.url.clone(),
                headers: req.headers.clone(),
                payload_hash: req.payload_hash.clone(),
                secret: req.secret.clone(),
            };
            change(&mut altered);
            let (ours, theirs) = recompute(&altered, &keys);
            assert_ne!(
                ours, theirs,
                "change {i} of {} {} went unnoticed",
                req.method, req.url
            );
        }
    }
}
