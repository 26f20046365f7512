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

/// The JSON lines `tests/sigv4/sign_with_botocore.py ARGS` prints, or `None`
/// (after a loud skip) without python3 or botocore.
fn run_botocore(args: &[&str]) -> Option<Vec<serde_json::Value>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sigv4/sign_with_botocore.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        ),
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'botocore'") => {
            common::skip::skipped("needs python3 with botocore (.ci/run installs it)");
            None
        }
        Ok(out) => panic!("{}", String::from_utf8_lossy(&out.stderr)),
        Err(err) => {
            common::skip::skipped(&format!("needs python3: {err}"));
            None
        }
    }
}

/// Requests signed by botocore.
fn signed_by_botocore() -> Option<Vec<Signed>> {
    let lines = run_botocore(&[])?;
    Some(
        lines
            .iter()
            .map(|v| Signed {
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

/// botocore's presigned URLs, made at one instant with the placeholder and with
/// real temporary credentials.
fn presigned_by_botocore() -> Option<Vec<serde_json::Value>> {
    run_botocore(&["presign"])
}

fn sha256_hex(data: &[u8]) -> String {
    tollgate::text::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

/// The signature of a presigned `query` (without `X-Amz-Signature`).
fn presigned_signature(
    method: &str,
    url: &str,
    query: &str,
    scope: &tollgate::sigv4::Scope,
    amz_date: &str,
    secret: &str,
) -> String {
    let rest = url.split_once("://").unwrap().1;
    let (host, path_and_query) = rest.split_at(rest.find('/').unwrap());
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    let payload = if scope.service == "s3" {
        "UNSIGNED-PAYLOAD".to_string()
    } else {
        sha256_hex(b"")
    };
    let canonical = canonical_request(&CanonicalInput {
        method,
        path,
        query,
        headers: &HeaderMap::new(),
        host,
        signed_headers: &["host".to_string()],
        payload_hash: &payload,
        service: &scope.service,
        exclude_query: &["X-Amz-Signature"],
    })
    .unwrap();
    let keys = SigningKeys::default();
    signature(
        &keys.key(secret, scope),
        &string_to_sign(amz_date, scope, &canonical),
    )
}

#[test]
fn a_presigned_url_is_checked_and_signed_again_exactly_as_botocore_would() {
    let Some(cases) = presigned_by_botocore() else {
        return;
    };
    assert!(cases.len() >= 3);
    for case in &cases {
        let method = case["method"].as_str().unwrap();
        let url = case["placeholder"].as_str().unwrap();
        let (base, query) = url.split_once('?').unwrap();
        let presigned = tollgate::sigv4::parse_presigned(query).unwrap().unwrap();
        assert_eq!(presigned.scope.access_key, "__AWS__");
        assert!(presigned.has_token);
        // The sandbox's signature checks out with the placeholder as the secret.
        let check = presigned_signature(
            method,
            url,
            query,
            &presigned.scope,
            &presigned.amz_date,
            "__AWS__",
        );
        assert_eq!(check, presigned.signature, "{url}");
        // A changed query does not.
        let tampered = query.replacen("X-Amz-Expires=", "X-Amz-Expires=1", 1);
        let changed = presigned_signature(
            method,
            url,
            &tampered,
            &presigned.scope,
            &presigned.amz_date,
            "__AWS__",
        );
        assert_ne!(changed, presigned.signature);
        // Signed again with the real credentials: byte for byte botocore's URL.
        let real = tollgate::sigv4::Scope {
            access_key: case["real_key"].as_str().unwrap().into(),
            ..presigned.scope.clone()
        };
        let requeried = tollgate::sigv4::requery(
            query,
            &real,
            Some(case["real_token"].as_str().unwrap()),
            presigned.expires,
        );
        let sig = presigned_signature(
            method,
            url,
            &requeried,
            &real,
            &presigned.amz_date,
            case["real_secret"].as_str().unwrap(),
        );
        assert_eq!(
            format!("{base}?{requeried}&X-Amz-Signature={sig}"),
            case["real"].as_str().unwrap()
        );
    }
}

#[test]
fn malformed_presigning_parameters_are_refused() {
    let good = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=__AWS__%2F20261205%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261205T080000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=".to_string() + &"a".repeat(64);
    assert!(tollgate::sigv4::parse_presigned(&good).unwrap().is_some());
    assert!(tollgate::sigv4::parse_presigned("a=1&b=2")
        .unwrap()
        .is_none());
    for (broken, why) in [
        (
            good.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
            "unsupported",
        ),
        (
            good.replace("X-Amz-Expires=900", "X-Amz-Expires=604801"),
            "604800",
        ),
        (
            good.replace("X-Amz-Date=20261205", "X-Amz-Date=20261204"),
            "does not match",
        ),
        (
            good.clone() + "&X-Amz-Signature=" + &"b".repeat(64),
            "repeated",
        ),
        (
            good.replace(
                "X-Amz-SignedHeaders=host",
                "X-Amz-SignedHeaders=x-amz-date%3Bhost",
            ),
            "sorted",
        ),
        (
            good.replace("&X-Amz-Credential=", "&X-Amz-Nothing="),
            "no X-Amz-Credential",
        ),
    ] {
        let err = tollgate::sigv4::parse_presigned(&broken).err().unwrap();
        assert!(err.to_string().contains(why), "{broken}: {err}");
    }
}

/// Parts of a request as botocore sent it to `url`, in origin form (as it
/// arrives inside an intercepted tunnel), with its Host header.
fn parts_of(
    method: &str,
    url: &str,
    headers: &serde_json::Value,
) -> (http::request::Parts, String) {
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", host.as_str());
    for pair in headers.as_array().unwrap() {
        builder = builder.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    }
    (builder.body(()).unwrap().into_parts().0, host)
}

fn header_of(headers: &serde_json::Value, name: &str) -> Option<String> {
    headers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_string())
}

#[test]
fn a_request_signed_with_the_placeholder_is_signed_again_exactly_as_botocore_signs_with_real_credentials(
) {
    let Some(cases) = run_botocore(&["resign"]) else {
        return;
    };
    assert!(cases.len() >= 5);
    let keys = SigningKeys::default();
    for case in &cases {
        let method = case["method"].as_str().unwrap();
        let body = case["body"].as_str().unwrap().as_bytes();
        let placeholder = &case["placeholder"];
        let body_sha256 = tollgate::text::hex(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref(),
        );
        for kind in ["real", "static"] {
            let (mut parts, host) = parts_of(
                method,
                placeholder["url"].as_str().unwrap(),
                &placeholder["headers"],
            );
            let signed = tollgate::sigv4::Signed::read(&parts).unwrap().unwrap();
            assert_eq!(signed.scope().access_key, "__AWS__");
            signed
                .verify(&parts, "__AWS__", &body_sha256, &keys)
                .unwrap_or_else(|e| panic!("{method} {}: {e}", placeholder["url"]));
            // The same request under another secret key does not verify.
            assert!(signed
                .verify(&parts, "__OTHER__", &body_sha256, &keys)
                .is_err());

            let real = &case[kind];
            let creds = tollgate::sigv4::Credentials {
                access_key_id: real["key"].as_str().unwrap(),
                secret_access_key: real["secret"].as_str().unwrap(),
                session_token: real["token"].as_str(),
                expires_at: None,
            };
            signed
                .resign(&mut parts, &host, &creds, &body_sha256, &keys)
                .unwrap();
            let got = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            assert_eq!(
                got("authorization"),
                header_of(&real["headers"], "authorization"),
                "{kind} {method} {}",
                placeholder["url"]
            );
            assert_eq!(
                got("x-amz-security-token"),
                header_of(&real["headers"], "x-amz-security-token"),
                "{kind}"
            );
        }
    }
}

#[test]
fn a_presigned_request_is_read_checked_and_signed_again_into_botocores_url() {
    let Some(cases) = presigned_by_botocore() else {
        return;
    };
    let keys = SigningKeys::default();
    for case in &cases {
        let method = case["method"].as_str().unwrap();
        let url = case["placeholder"].as_str().unwrap();
        let (mut parts, host) = parts_of(method, url, &serde_json::json!([]));
        let signed = tollgate::sigv4::Signed::read(&parts).unwrap().unwrap();
        let empty = sha256_hex(b"");
        signed
            .verify(&parts, "__AWS__", &empty, &keys)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let creds = tollgate::sigv4::Credentials {
            access_key_id: case["real_key"].as_str().unwrap(),
            secret_access_key: case["real_secret"].as_str().unwrap(),
            session_token: case["real_token"].as_str(),
            expires_at: None,
        };
        signed
            .resign(&mut parts, &host, &creds, &empty, &keys)
            .unwrap();
        let real: http::Uri = case["real"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            parts.uri.path_and_query().unwrap().as_str(),
            real.path_and_query().unwrap().as_str(),
            "{url}"
        );
    }
}

/// Seconds since the epoch as SigV4's `X-Amz-Date`.
fn amz_date_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

const REAL_KEY_ID: &str = "AKIDSTATICNOTREAL001";
const REAL_SECRET: &str = "static/secret+key-for-the-chunk-test";

/// An `aws-chunked` upload signed with the placeholder (chunk by chunk, with
/// and without a signed trailer) goes through tollgate and arrives with every
/// chunk and trailer signature remade under the real key, which the real
/// chain checks; one changed byte of chunk data is 400 and the upstream never
/// gets the body whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_chunked_uploads_arrive_signed_with_the_real_key() {
    use tollgate::fuzzing::sigv4_chunked::signed_body;
    use tollgate::sigv4::chunked::{Chain, Resigner};

    let ca = common::upstream::TestCa::new("chunked upload CA");
    let upstream = common::upstream::start_upstream(Some(ca.server_config(&["s3.aws.test"]))).await;
    let policy = format!("name: aws\nsecrets:\n  AWS:\n    aws:\n      credentials: {{ access_key_id: {{ env: AKID }}, secret_access_key: {{ env: SAK }} }}\n      services: [s3]\n    hosts: [s3.aws.test]\nrules:\n  - host: s3.aws.test\n    port: {}\n    inject: [AWS]\n", upstream.port);
    let mut setup = common::ProxySetup::with_policy("aws", &policy)
        .trust(&ca.cert_pem)
        .resolve("s3.aws.test", upstream.port);
    setup.env = vec![
        ("TOLLGATE_SECRET_AKID".into(), REAL_KEY_ID.into()),
        ("TOLLGATE_SECRET_SAK".into(), REAL_SECRET.into()),
    ];
    let proxy = common::start_proxy(&setup);
    let client = common::reqwest_client(&proxy);
    let keys = SigningKeys::default();
    let host = format!("s3.aws.test:{}", upstream.port);

    for (trailer, tamper) in [(false, false), (true, false), (false, true)] {
        let amz_date = amz_date_now();
        let scope = tollgate::sigv4::Scope {
            access_key: "__AWS__".into(),
            date: amz_date[..8].into(),
            region: "us-east-1".into(),
            service: "s3".into(),
        };
        let mode = if trailer {
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
        } else {
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        };
        let chunks: [&[u8]; 3] = [b"first chunk of data;", b"second, ", b"last"];
        let decoded: usize = chunks.iter().map(|c| c.len()).sum();
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        };
        set("host", &host);
        set("x-amz-date", &amz_date);
        set("x-amz-content-sha256", mode);
        set("content-encoding", "aws-chunked");
        set("x-amz-decoded-content-length", &decoded.to_string());
        if trailer {
            set("x-amz-trailer", "x-amz-checksum-crc32");
        }
        let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
        signed.sort();
        let canonical = canonical_request(&CanonicalInput {
            method: "PUT",
            path: "/echo-body",
            query: "",
            headers: &headers,
            host: &host,
            signed_headers: &signed,
            payload_hash: mode,
            service: "s3",
            exclude_query: &[],
        })
        .unwrap();
        let key = keys.key("__AWS__", &scope);
        let seed = signature(&key, &string_to_sign(&amz_date, &scope, &canonical));
        let mut chain = Chain::new(key, &amz_date, &scope.credential_scope(), &seed);
        let trailers = ["x-amz-checksum-crc32:AAAAAA=="];
        let mut body = signed_body(&mut chain, &chunks, trailer.then_some(&trailers[..]));
        if tamper {
            let at = body.windows(5).position(|w| w == b"first").unwrap();
            body[at] = b'F';
        }
        let sent_len = body.len();
        let mut request = client
            .put(format!("https://{host}/echo-body"))
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=__AWS__/{}, SignedHeaders={}, Signature={seed}",
                    scope.credential_scope(),
                    signed.join(";")
                ),
            )
            .body(body);
        for (name, value) in &headers {
            if name != "host" {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if tamper {
            assert_eq!(status, 400, "{text}");
            assert!(text.contains("bad_request"), "{text}");
            continue;
        }
        assert_eq!(status, 200, "{mode}: {text}");
        assert!(
            text.starts_with(&format!(
                "content-length={sent_len} actual={sent_len} body="
            )),
            "the length is kept: {text}"
        );
        let received = text.split_once(" body=").unwrap().1.as_bytes().to_vec();
        assert!(!text.contains("__AWS__"));
        // The request's new seed and the real chain accept every signature.
        let seen = upstream.seen.lock().unwrap().last().cloned().unwrap();
        let auth = parse_authorization(seen["headers"]["authorization"].as_str().unwrap()).unwrap();
        assert_eq!(auth.scope.access_key, REAL_KEY_ID);
        let real_key = keys.key(REAL_SECRET, &auth.scope);
        let check = Chain::new(
            real_key.clone(),
            &amz_date,
            &auth.scope.credential_scope(),
            &auth.signature,
        );
        let sink = Chain::new(
            real_key,
            &amz_date,
            &auth.scope.credential_scope(),
            &auth.signature,
        );
        let mut verifier = if trailer {
            Resigner::with_trailer(check, sink)
        } else {
            Resigner::new(check, sink)
        };
        let mut out = Vec::new();
        verifier
            .push(&received, &mut out)
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        verifier.finish().unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(
            out, received,
            "signed again identically under the real chain"
        );
    }
}
