use super::*;
use http::HeaderMap;
use proptest::prelude::*;

const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// AWS's worked example ("Create a signed AWS API request", IAM ListUsers).
#[test]
fn aws_documented_example_signs_to_the_documented_signature() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    headers.insert(
        "host",
        "iam.amazonaws.com"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    headers.insert(
        "x-amz-date",
        "20150830T123600Z".parse().unwrap_or_else(|e| panic!("{e}")),
    );
    let auth = parse_authorization(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let empty =
        crate::text::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"").as_ref());
    let canonical = canonical_request(&CanonicalInput {
        method: "GET",
        path: "/",
        query: "Version=2010-05-08&Action=ListUsers",
        headers: &headers,
        host: "iam.amazonaws.com",
        signed_headers: &auth.signed_headers,
        payload_hash: &empty,
        service: &auth.scope.service,
        exclude_query: &[],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let hashed = crate::text::hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical).as_ref(),
    );
    assert_eq!(
        hashed,
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    );
    let to_sign = string_to_sign("20150830T123600Z", &auth.scope, &canonical);
    let keys = SigningKeys::default();
    let key = keys.key(EXAMPLE_SECRET, &auth.scope);
    assert_eq!(signature(&key, &to_sign), auth.signature);
    // A second signature under the same scope comes from the cache, the same.
    assert_eq!(
        signature(&keys.key(EXAMPLE_SECRET, &auth.scope), &to_sign),
        auth.signature
    );
    // Another secret for the same access key id is not served the old key.
    assert_ne!(
        signature(&keys.key("other", &auth.scope), &to_sign),
        auth.signature
    );
}

#[test]
fn other_algorithms_and_broken_headers_are_refused() {
    let good_sig = "0".repeat(64);
    let cases = [
        ("AWS4-ECDSA-P256-SHA256 Credential=a/20150830/us-east-1/s3/aws4_request", "unsupported"),
        ("AWS AKID:sig", "unsupported"),
        ("AWS4-HMAC-SHA256 Credential=a/2015083/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=SIG", "YYYYMMDD"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/s3/aws5_request, SignedHeaders=host, Signature=SIG", "aws4_request"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date;host, Signature=SIG", "sorted"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/s3/aws4_request, SignedHeaders=Host, Signature=SIG", "lower-case"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=XYZ", "64"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/s3/aws4_request, Credential=b/20150830/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=SIG", "repeated"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=SIG", "no Credential"),
    ];
    for (header, expected) in cases {
        let header = header.replace("SIG", &good_sig);
        let err = parse_authorization(&header)
            .err()
            .unwrap_or_else(|| panic!("accepted {header}"));
        assert!(err.to_string().contains(expected), "{header}: {err}");
    }
}

#[test]
fn paths_are_encoded_again_except_for_s3() {
    let headers = HeaderMap::new();
    let signed = vec!["host".to_string()];
    let canonical = |service: &str, path: &str| {
        let bytes = canonical_request(&CanonicalInput {
            method: "GET",
            path,
            query: "b=2&a=%7e&a=1&X-Amz-Signature=x",
            headers: &headers,
            host: "h",
            signed_headers: &signed,
            payload_hash: "UNSIGNED-PAYLOAD",
            service,
            exclude_query: &["X-Amz-Signature"],
        })
        .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(bytes).unwrap_or_default()
    };
    assert!(canonical("s3", "/b/a%20b/./c").starts_with("GET\n/b/a%20b/./c\na=1&a=~&b=2\nhost:h\n"));
    assert!(canonical("sqs", "/b//a%20b/./c/../d/").starts_with("GET\n/b/a%2520b/d/\n"));
}

proptest! {
    /// Whatever a client sends as `Authorization`, reading it never panics and
    /// what is accepted is well formed.
    #[test]
    fn any_authorization_header_is_read_or_refused(header in "\\PC{0,200}", scoped in "AWS4-HMAC-SHA256 Credential=[a-zA-Z0-9/_.-]{0,60}, SignedHeaders=[a-z;-]{0,30}, Signature=[0-9a-f]{60,66}") {
        for text in [header.as_str(), scoped.as_str()] {
            if let Ok(auth) = parse_authorization(text) {
                prop_assert_eq!(auth.signature.len(), 64);
                prop_assert!(!auth.signed_headers.is_empty());
                prop_assert_eq!(auth.scope.date.len(), 8);
            }
        }
    }

    /// The canonical query does not depend on the order of the parameters.
    #[test]
    fn the_canonical_query_is_order_independent(pairs in prop::collection::vec(("[a-zA-Z0-9%~ +.-]{0,6}", "[a-zA-Z0-9%~ +.=-]{0,6}"), 0..6)) {
        let headers = HeaderMap::new();
        let render = |pairs: &[(String, String)]| {
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            canonical_request(&CanonicalInput {
                method: "GET", path: "/", query: &query.join("&"), headers: &headers, host: "h",
                signed_headers: &["host".to_string()], payload_hash: "-", service: "s3", exclude_query: &[],
            }).unwrap_or_default()
        };
        let mut reversed = pairs.clone();
        reversed.reverse();
        prop_assert_eq!(render(&pairs), render(&reversed));
    }
}
