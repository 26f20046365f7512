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

/// The query line (the third) of the canonical request of `GET /?query`.
fn canonical_query_of(query: &str) -> String {
    let headers = HeaderMap::new();
    let bytes = canonical_request(&CanonicalInput {
        method: "GET",
        path: "/",
        query,
        headers: &headers,
        host: "h",
        signed_headers: &["host".to_string()],
        payload_hash: "-",
        service: "s3",
        exclude_query: &[],
    })
    .unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .split('\n')
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// A presigned query around `others`, a parameter list as written.
fn presigned_query(others: &[String], at: usize, token: bool) -> String {
    let mut params: Vec<String> = vec![
        "X-Amz-Algorithm=AWS4-HMAC-SHA256".into(),
        "X-Amz-Credential=__AWS__%2F20261205%2Fus-east-1%2Fs3%2Faws4_request".into(),
        "X-Amz-Date=20261205T080936Z".into(),
        "X-Amz-Expires=3600".into(),
        "X-Amz-SignedHeaders=host".into(),
    ];
    if token {
        params.push("X-Amz-Security-Token=__AWS__".into());
    }
    params.push(format!("X-Amz-Signature={}", "0".repeat(64)));
    // The others, in their order, starting among the presigning parameters.
    let at = at % (params.len() + 1);
    for (i, other) in others.iter().enumerate() {
        params.insert(at + i, other.clone());
    }
    params.join("&")
}

proptest! {
    /// Sorting and encoding again is idempotent: a canonical query is its own
    /// canonical form, whatever was sent (stray `%`, `+`, spaces, `=` in
    /// values, empty names).
    #[test]
    fn the_canonical_query_of_a_canonical_query_is_itself(query in "[a-zA-Z0-9%~ +./=&*-]{0,40}|(%[0-9a-fA-F]{2}|[a-z=&]){0,20}") {
        let once = canonical_query_of(&query);
        prop_assert_eq!(canonical_query_of(&once), once);
    }

    /// Re-querying a presigned URL replaces the credential, the token and the
    /// expiry and drops the signature; every other parameter stays, in its
    /// order and as it was written.
    #[test]
    fn requery_keeps_every_other_parameter(
        others in prop::collection::vec("[a-zA-Z0-9_.~-]{1,8}(=[a-zA-Z0-9%/+=._~-]{0,12})?", 0..5),
        at in 0usize..8,
        token_before in any::<bool>(),
        token_after in any::<bool>(),
        expires in 1u64..=presigned::MAX_EXPIRES,
    ) {
        let others: Vec<String> = others.into_iter().filter(|o| !o.starts_with("X-Amz-")).collect();
        let query = presigned_query(&others, at, token_before);
        let parsed = parse_presigned(&query);
        prop_assert!(matches!(parsed, Ok(Some(_))), "{} → {:?}", query, parsed);
        let Ok(Some(parsed)) = parsed else { return Ok(()) };
        let real = Scope { access_key: "ASIAREALKEYEXAMPLE01".into(), ..parsed.scope.clone() };
        let token = token_after.then_some("real/token+==");
        let rewritten = requery(&query, &real, token, expires);
        let is_presigning = |p: &&str| p.starts_with("X-Amz-");
        let kept: Vec<&str> = rewritten.split('&').filter(|p| !is_presigning(p)).collect();
        prop_assert_eq!(kept, others.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert!(!rewritten.contains("X-Amz-Signature"));
        let again = parse_presigned(&format!("{rewritten}&X-Amz-Signature={}", "1".repeat(64)));
        let Ok(Some(again)) = again else {
            prop_assert!(false, "{} does not read", rewritten);
            return Ok(());
        };
        prop_assert_eq!(again.scope, real);
        prop_assert_eq!(again.expires, expires);
        prop_assert_eq!(again.has_token, token_after);
        prop_assert_eq!(again.amz_date, parsed.amz_date);
        prop_assert_eq!(again.signed_headers, parsed.signed_headers);
    }
}

/// A presigning parameter written percent-encoded is that parameter, as in
/// the canonical query: a second signature cannot hide as `X-Amz-Signatur%65`
/// (found by the `sigv4` fuzz target: the URL signed again did not verify).
#[test]
fn encoded_presigning_names_are_those_names() {
    let query = presigned_query(&["X-Amz-Signatur%65=1".to_string()], 0, false);
    assert_eq!(
        parse_presigned(&query),
        Err(SigV4Error::Malformed("a presigning parameter is repeated"))
    );
    let alone = query.replace(&format!("&X-Amz-Signature={}", "0".repeat(64)), "");
    let alone = alone.replace(
        "X-Amz-Signatur%65=1",
        &format!("X-Amz-Signatur%65={}", "0".repeat(64)),
    );
    assert!(matches!(parse_presigned(&alone), Ok(Some(_))), "{alone}");
    let real = Scope {
        access_key: "ASIAREALKEYEXAMPLE01".into(),
        date: "20261205".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    let rewritten = requery(&alone, &real, None, 60);
    assert!(!rewritten.contains("Signatur"), "{rewritten}");
    assert!(
        rewritten.contains("X-Amz-Credential=ASIAREALKEYEXAMPLE01"),
        "{rewritten}"
    );
}
