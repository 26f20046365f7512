//! What issuers send back, read by small pure functions that take the status and
//! the body bytes (or a key file's text) and return a typed result: GitHub's
//! installation token answer and its errors, an OAuth 2.0 token endpoint's answer
//! and its RFC 6749 §5.2 errors, and a Google service-account key file. Nothing
//! here does I/O, so `src/fuzzing/issuer.rs` fuzzes all of it.
//!
//! Every error quotes the issuer only through [`quote_issuer`], with what
//! tollgate sent (`sent`: the App JWT, a refresh token, an assertion, the client
//! secret) redacted.

use super::issued::{quote_issuer, Fresh};
use super::jwt::RsaSigner;
use crate::secrets::SecretValue;
use http::StatusCode;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Token lifetime assumed when GitHub's answer gives none (GitHub's is 1 h).
pub const GITHUB_DEFAULT_LIFE: Duration = Duration::from_secs(3600);

/// Why an issuer's answer gave no token. `Display` is the reason in the
/// `secret … could not be minted: …` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// GitHub refused: its status and its own `message`, quoted safely.
    Github {
        /// HTTP status code.
        status: u16,
        /// GitHub's `message` (or `no message`), through [`quote_issuer`].
        message: String,
    },
    /// GitHub answered with success but without a usable `token`.
    NoGithubToken,
    /// The token endpoint refused: its status, and the RFC 6749 §5.2 `error`
    /// code and `error_description` if it sent them, quoted safely.
    OAuth {
        /// HTTP status code.
        status: u16,
        /// The `error` code, through [`quote_issuer`]; `None` without one.
        error: Option<String>,
        /// The `error_description`, through [`quote_issuer`]; only read when
        /// there is an `error`.
        description: Option<String>,
    },
    /// The token endpoint answered with success but without a usable
    /// `access_token`.
    NoAccessToken,
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Github { status, message } => write!(f, "GitHub answered {status}: {message}"),
            Self::NoGithubToken => f.write_str("GitHub's answer has no usable token"),
            Self::OAuth {
                status,
                error: Some(code),
                description: Some(text),
            } => write!(f, "the token endpoint answered {status} {code}: {text}"),
            Self::OAuth {
                status,
                error: Some(code),
                description: None,
            } => write!(f, "the token endpoint answered {status} {code}"),
            Self::OAuth {
                status,
                error: None,
                ..
            } => write!(
                f,
                "the token endpoint answered HTTP {status} without an OAuth error"
            ),
            Self::NoAccessToken => {
                f.write_str("the token endpoint's answer has no usable access_token")
            }
        }
    }
}

/// The body as JSON, or `Null` when it is not JSON.
fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
}

/// Whether `token` can be a bearer token: non-empty printable ASCII, no spaces.
pub fn is_usable_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// GitHub's answer to `POST /app/installations/{id}/access_tokens`: on success
/// its `token`, expiring at its `expires_at` (RFC 3339), or
/// [`GITHUB_DEFAULT_LIFE`] after `now` without a usable one; otherwise GitHub's
/// refusal ([`github_refusal`]).
pub fn github_token(
    status: StatusCode,
    body: &[u8],
    sent: &[&str],
    now: SystemTime,
) -> Result<Fresh, AnswerError> {
    if !status.is_success() {
        return Err(github_refusal(status, body, sent));
    }
    let json = json(body);
    let token = json["token"]
        .as_str()
        .filter(|t| is_usable_token(t))
        .ok_or(AnswerError::NoGithubToken)?;
    let expires_at = json["expires_at"]
        .as_str()
        .and_then(crate::text::parse_rfc3339_ms)
        .and_then(|ms| u64::try_from(ms).ok())
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .or_else(|| now.checked_add(GITHUB_DEFAULT_LIFE))
        .unwrap_or(now);
    Ok(Fresh {
        value: SecretValue::new(token.to_string()),
        expires_at,
        lease: None,
    })
}

/// GitHub's refusal: its status and its own `message`, with `sent` redacted.
pub fn github_refusal(status: StatusCode, body: &[u8], sent: &[&str]) -> AnswerError {
    let json = json(body);
    let message = json["message"].as_str().unwrap_or("no message");
    AnswerError::Github {
        status: status.as_u16(),
        message: quote_issuer(message, sent),
    }
}

/// The `id` of GitHub's answer to `GET /orgs/{owner}/installation` (or
/// `/users/…`), if it has one.
pub fn github_installation_id(body: &[u8]) -> Option<u64> {
    json(body)["id"].as_u64()
}

/// A token endpoint's access token, and the refresh token it rotated, if any.
pub struct OAuthToken {
    /// The access token and when it expires.
    pub fresh: Fresh,
    /// The answer's `refresh_token`, as sent (possibly empty, possibly the one
    /// tollgate sent: the caller decides whether it is a new one).
    pub refresh_token: Option<SecretValue>,
}

/// A token endpoint's answer (RFC 6749 §5.1): on success its `access_token`,
/// living `expires_in` seconds (a number or a string of digits) from `now`, or
/// `fallback` without a usable one, and a rotated `refresh_token`; otherwise
/// the endpoint's refusal ([`oauth_refusal`]).
pub fn oauth_token(
    status: StatusCode,
    body: &[u8],
    sent: &[&str],
    now: SystemTime,
    fallback: Duration,
) -> Result<OAuthToken, AnswerError> {
    if !status.is_success() {
        return Err(oauth_refusal(status, body, sent));
    }
    let json = json(body);
    let token = json["access_token"]
        .as_str()
        .filter(|t| is_usable_token(t))
        .ok_or(AnswerError::NoAccessToken)?;
    let life = match &json["expires_in"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    // A life so long that it runs past what a time can hold counts as none.
    let expires_at = life
        .and_then(|secs| now.checked_add(Duration::from_secs(secs)))
        .or_else(|| now.checked_add(fallback))
        .unwrap_or(now);
    Ok(OAuthToken {
        fresh: Fresh {
            value: SecretValue::new(token.to_string()),
            expires_at,
            lease: None,
        },
        refresh_token: json["refresh_token"]
            .as_str()
            .map(|t| SecretValue::new(t.to_string())),
    })
}

/// The token endpoint's refusal (RFC 6749 §5.2): its status, the `error` code
/// and its `error_description`, with `sent` redacted.
pub fn oauth_refusal(status: StatusCode, body: &[u8], sent: &[&str]) -> AnswerError {
    let json = json(body);
    let error = json["error"].as_str().map(|code| quote_issuer(code, sent));
    let description = error
        .as_ref()
        .and(json["error_description"].as_str())
        .map(|text| quote_issuer(text, sent));
    AnswerError::OAuth {
        status: status.as_u16(),
        error,
        description,
    }
}

/// What a Google service-account JSON key holds that an RFC 7523 assertion
/// needs.
#[derive(Debug)]
pub struct ServiceAccount {
    /// `client_email`: the assertion's `iss`.
    pub email: String,
    /// `private_key_id`: the assertion's `kid`, if the file has one.
    pub key_id: Option<String>,
    /// `private_key`, read.
    pub signer: RsaSigner,
}

/// Why a service-account key file cannot be used. It never quotes the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAccountError {
    /// The file is not JSON; the line where parsing stopped.
    NotJson {
        /// 1-based line.
        line: usize,
    },
    /// `client_email` or `private_key` is missing, empty or not a string.
    Incomplete,
    /// `private_key` is not a usable RSA key ([`RsaSigner::from_pem`]'s reason).
    Key(String),
}

impl ServiceAccountError {
    /// The reason, naming the key file by `source` (where it was read from).
    pub fn describe(&self, source: &dyn fmt::Display) -> String {
        match self {
            Self::NotJson { line } => {
                format!("the service-account key ({source}) is not JSON (line {line})")
            }
            Self::Incomplete => {
                format!("the service-account key ({source}) needs client_email and private_key")
            }
            Self::Key(reason) => format!("the service-account key ({source}): {reason}"),
        }
    }
}

/// Reads a Google service-account JSON key file.
pub fn service_account(text: &str) -> Result<ServiceAccount, ServiceAccountError> {
    // Parsed as a Value first: serde's typed errors could quote the key.
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ServiceAccountError::NotJson { line: e.line() })?;
    let field = |key: &str| json[key].as_str().filter(|v| !v.is_empty());
    let (Some(email), Some(pem)) = (field("client_email"), field("private_key")) else {
        return Err(ServiceAccountError::Incomplete);
    };
    let signer = RsaSigner::from_pem(pem).map_err(ServiceAccountError::Key)?;
    Ok(ServiceAccount {
        email: email.to_string(),
        key_id: field("private_key_id").map(str::to_string),
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_750_000_000)
    }

    const FALLBACK: Duration = Duration::from_secs(300);

    #[test]
    fn github_answers_read_as_before() {
        let body = br#"{"token":"ghs_abc","expires_at":"2025-06-15T13:00:00Z"}"#;
        let fresh = github_token(StatusCode::CREATED, body, &[], now());
        let fresh = fresh.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fresh.value.expose(), "ghs_abc");
        assert_eq!(
            fresh.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_749_992_400)
        );
        let fresh = github_token(StatusCode::CREATED, br#"{"token":"t"}"#, &[], now());
        let fresh = fresh.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fresh.expires_at, now() + GITHUB_DEFAULT_LIFE);
        for body in [
            &br#"{"token":"a b"}"#[..],
            br#"{"token":""}"#,
            b"{}",
            b"<html>",
        ] {
            let err = github_token(StatusCode::CREATED, body, &[], now()).err();
            assert_eq!(err, Some(AnswerError::NoGithubToken));
        }
        let jwt = "eyJhbGciOiJSUzI1NiJ9.claims.signature";
        let body = format!(r#"{{"message":"Bad JWT {jwt}\nsee docs"}}"#);
        let err = github_token(StatusCode::UNAUTHORIZED, body.as_bytes(), &[jwt], now());
        let err = err.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("GitHub answered 401: Bad JWT [redacted] see docs")
        );
        let err = github_refusal(StatusCode::BAD_GATEWAY, b"<html>", &[]).to_string();
        assert_eq!(err, "GitHub answered 502: no message");
        assert_eq!(github_installation_id(br#"{"id":7}"#), Some(7));
        assert_eq!(github_installation_id(br#"{"id":-7}"#), None);
    }

    #[test]
    fn oauth_answers_read_as_before() {
        let body = br#"{"access_token":"ya29.x","expires_in":"3600","refresh_token":"rt2"}"#;
        let token = oauth_token(StatusCode::OK, body, &[], now(), FALLBACK);
        let token = token.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(token.fresh.value.expose(), "ya29.x");
        assert_eq!(token.fresh.expires_at, now() + Duration::from_secs(3600));
        assert_eq!(
            token.refresh_token.as_ref().map(|t| t.expose()),
            Some("rt2")
        );
        let token = oauth_token(
            StatusCode::OK,
            br#"{"access_token":"a","expires_in":-1}"#,
            &[],
            now(),
            FALLBACK,
        );
        let token = token.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(token.fresh.expires_at, now() + FALLBACK);
        assert!(token.refresh_token.is_none());
        let err = oauth_token(
            StatusCode::OK,
            br#"{"access_token":7}"#,
            &[],
            now(),
            FALLBACK,
        );
        assert_eq!(err.err(), Some(AnswerError::NoAccessToken));
        let secret = "client-secret-123";
        let body = format!(r#"{{"error":"invalid_client","error_description":"bad {secret}"}}"#);
        let err = oauth_refusal(StatusCode::UNAUTHORIZED, body.as_bytes(), &[secret]).to_string();
        assert_eq!(
            err,
            "the token endpoint answered 401 invalid_client: bad [redacted]"
        );
        let err = oauth_refusal(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant"}"#,
            &[],
        );
        assert_eq!(
            err.to_string(),
            "the token endpoint answered 400 invalid_grant"
        );
        let body = br#"{"error_description":"no code"}"#;
        let err = oauth_refusal(StatusCode::INTERNAL_SERVER_ERROR, body, &[]);
        assert_eq!(
            err.to_string(),
            "the token endpoint answered HTTP 500 without an OAuth error"
        );
    }

    /// Found while extracting `oauth_token` (saved as
    /// `fuzz/regressions/issuer/crash-908e6ea8983173f4`): `now + expires_in`
    /// with an `expires_in` near `u64::MAX` overflowed `SystemTime` and
    /// panicked the mint. Such a life now counts as none.
    #[test]
    fn an_expires_in_past_the_end_of_time_counts_as_none() {
        for life in [u64::MAX, i64::MAX as u64, i64::MAX as u64 - 1_000_000_000] {
            let body = format!(r#"{{"access_token":"t","expires_in":{life}}}"#);
            let token = oauth_token(StatusCode::OK, body.as_bytes(), &[], now(), FALLBACK);
            let token = token.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(token.fresh.expires_at, now() + FALLBACK);
            let body = format!(r#"{{"access_token":"t","expires_in":"{life}"}}"#);
            let token = oauth_token(StatusCode::OK, body.as_bytes(), &[], now(), FALLBACK);
            let token = token.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(token.fresh.expires_at, now() + FALLBACK);
        }
    }

    #[test]
    fn service_account_errors_never_quote_the_file() {
        let err = service_account("{\n\"private_key\": \"MIIEsecret").err();
        assert_eq!(err, Some(ServiceAccountError::NotJson { line: 2 }));
        let err = service_account(r#"{"client_email":"a@b","private_key":""}"#).err();
        assert_eq!(err, Some(ServiceAccountError::Incomplete));
        let text = r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nMIIEsecret\n-----END PRIVATE KEY-----"}"#;
        let err = service_account(text)
            .err()
            .map(|e| e.describe(&"file /k.json"));
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with("the service-account key (file /k.json): the private key"),
            "{err}"
        );
        assert!(!err.contains("MIIE"), "{err}");
    }

    /// Bodies: JSON objects with the fields issuers send, of any JSON type, and
    /// some that are not JSON at all.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let value = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,300}".prop_map(serde_json::Value::from),
            "[0-9]{1,22}".prop_map(serde_json::Value::from),
        ];
        let key = prop_oneof![
            Just("token"),
            Just("expires_at"),
            Just("message"),
            Just("access_token"),
            Just("expires_in"),
            Just("refresh_token"),
            Just("error"),
            Just("error_description"),
            Just("id"),
        ];
        prop_oneof![
            proptest::collection::btree_map(key, value, 0..6).prop_map(|m| {
                let m: serde_json::Map<String, serde_json::Value> =
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                serde_json::Value::Object(m).to_string().into_bytes()
            }),
            proptest::collection::vec(any::<u8>(), 0..200),
        ]
    }

    fn status() -> impl Strategy<Value = StatusCode> {
        (100u16..1000).prop_map(|s| StatusCode::from_u16(s).unwrap_or(StatusCode::OK))
    }

    fn one_line_without(text: &str, secret: &str) -> bool {
        !text.chars().any(char::is_control) && !text.contains(secret) && text.len() < 1200
    }

    proptest! {
        /// Any body, any status: no panic; a token only from a success, and
        /// usable; an error one line and without what tollgate sent.
        #[test]
        fn any_answer_reads_safely(status in status(), body in body(), secret in "[A-Za-z0-9._-]{8,40}") {
            let sent = [secret.as_str()];
            match github_token(status, &body, &sent, now()) {
                Ok(fresh) => {
                    prop_assert!(status.is_success());
                    prop_assert!(is_usable_token(fresh.value.expose()));
                }
                Err(e) => prop_assert!(one_line_without(&e.to_string(), &secret), "{}", e),
            }
            match oauth_token(status, &body, &sent, now(), FALLBACK) {
                Ok(token) => {
                    prop_assert!(status.is_success());
                    prop_assert!(is_usable_token(token.fresh.value.expose()));
                    prop_assert!(token.fresh.expires_at >= now());
                }
                Err(e) => prop_assert!(one_line_without(&e.to_string(), &secret), "{}", e),
            }
            let _ = github_installation_id(&body);
        }

        /// An issuer that echoes what tollgate sent, anywhere in its error,
        /// has it redacted.
        #[test]
        fn echoed_secrets_are_redacted(
            status in (400u16..600).prop_map(|s| StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST)),
            before in ".{0,250}",
            after in ".{0,50}",
            secret in "[A-Za-z0-9._~+/-]{8,80}",
        ) {
            let echoed = format!("{before}{secret}{after}");
            let sent = [secret.as_str()];
            let body = serde_json::json!({"message": echoed, "error": echoed, "error_description": echoed}).to_string();
            for err in [
                github_refusal(status, body.as_bytes(), &sent),
                oauth_refusal(status, body.as_bytes(), &sent),
            ] {
                let text = err.to_string();
                prop_assert!(one_line_without(&text, &secret), "{}", text);
            }
        }

        /// A valid answer round-trips: its token, its expiry, its rotated
        /// refresh token.
        #[test]
        fn valid_answers_round_trip(
            token in "[!-~]{1,200}",
            life in 0u64..10_000_000_000,
            as_text in any::<bool>(),
            refresh in proptest::option::of("[!-~]{0,100}"),
            ms in 0i64..253_402_300_799_000,
        ) {
            let mut answer = serde_json::json!({"access_token": token, "token_type": "Bearer"});
            answer["expires_in"] = if as_text { life.to_string().into() } else { life.into() };
            if let Some(refresh) = &refresh {
                answer["refresh_token"] = refresh.as_str().into();
            }
            let got = oauth_token(StatusCode::OK, answer.to_string().as_bytes(), &[], now(), FALLBACK);
            let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.fresh.value.expose(), token.as_str());
            prop_assert_eq!(got.fresh.expires_at, now() + Duration::from_secs(life));
            prop_assert_eq!(got.refresh_token.as_ref().map(|t| t.expose()), refresh.as_deref());

            let at = crate::text::rfc3339_from_epoch_ms(ms);
            let answer = serde_json::json!({"token": token, "expires_at": at});
            let got = github_token(StatusCode::CREATED, answer.to_string().as_bytes(), &[], now());
            let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.value.expose(), token.as_str());
            prop_assert_eq!(got.expires_at, UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs()));
        }

        /// Any text as a service-account key: no panic, and an error never
        /// quotes it.
        #[test]
        fn any_key_file_reads_safely(text in ".{0,300}", pem_body in "[A-Za-z0-9+/=\n]{0,200}") {
            let file = serde_json::json!({
                "client_email": "a@b",
                "private_key": format!("-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----\n"),
            })
            .to_string();
            for input in [text.as_str(), file.as_str()] {
                if let Err(e) = service_account(input) {
                    let text = e.describe(&"src");
                    prop_assert!(!text.chars().any(char::is_control), "{}", text);
                    if pem_body.trim().len() >= 8 {
                        prop_assert!(!text.contains(pem_body.trim()), "{}", text);
                    }
                }
            }
        }
    }
}
