//! Fuzz target `issuer`: what credential issuers send back and what key files
//! hold ([`crate::mint::answer`], [`quote_issuer`], [`RsaSigner::from_pem`]).
//!
//! The first byte picks the parser (mod 8; seeds use `'0'`..`'7'`). For 0 to 4
//! the rest is `[status, n, secret: n bytes, body…]`: `status` indexes
//! [`STATUSES`], and the secret (split at NUL bytes into several) is what
//! tollgate sent, to be redacted:
//! - 0: GitHub's token answer ([`answer::github_token`]);
//! - 1: GitHub's error ([`answer::github_refusal`]);
//! - 2: a token endpoint's answer ([`answer::oauth_token`]);
//! - 3: a token endpoint's RFC 6749 §5.2 error ([`answer::oauth_refusal`]);
//! - 4: [`quote_issuer`] on the body as text;
//! - 5: the rest is a PEM key file ([`RsaSigner::from_pem`]);
//! - 6: the rest is a service-account JSON key ([`answer::service_account`]);
//! - 7: the rest is GitHub's installation answer
//!   ([`answer::github_installation_id`]).
//!
//! Invariants: never a panic; an accepted token is non-empty printable ASCII
//! without spaces, and only comes from a success status; an error or a quote is
//! one line, bounded in length, and never contains a redacted secret; a key
//! file's error never quotes the file (at most its PEM label, when that is one).

use crate::mint::answer::{self, AnswerError, ServiceAccountError};
use crate::mint::issued::{quote_issuer, MAX_QUOTE};
use crate::mint::jwt::{is_pem_label, RsaSigner, MAX_LABEL};
use http::StatusCode;
use std::time::{Duration, UNIX_EPOCH};

/// The statuses the second byte picks from (mod 16).
pub const STATUSES: [u16; 16] = [
    200, 201, 204, 299, 100, 302, 400, 401, 403, 404, 422, 429, 500, 502, 503, 999,
];

/// The time answers are read at (2025-06-15).
const NOW_SECS: u64 = 1_750_000_000;
/// The `fallback` life of OAuth answers without `expires_in`.
const FALLBACK: Duration = Duration::from_secs(300);
/// Longest whole error: two quotes and the words around them.
const MAX_ERROR: usize = 2 * MAX_QUOTE + 80;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    match selector % 8 {
        mode @ 0..=4 => {
            let (status, secret, body) = split(rest);
            let sent: Vec<&str> = secret.split('\0').collect();
            match mode {
                0 => match answer::github_token(status, body, &sent, now) {
                    Ok(fresh) => {
                        assert!(status.is_success(), "a token from a {status} answer");
                        assert_usable(fresh.value.expose());
                    }
                    Err(err) => check_error(&err, status, true, &sent),
                },
                1 => {
                    let err = answer::github_refusal(status, body, &sent);
                    check_error(&err, status, false, &sent);
                }
                2 => match answer::oauth_token(status, body, &sent, now, FALLBACK) {
                    Ok(token) => {
                        assert!(status.is_success(), "a token from a {status} answer");
                        assert_usable(token.fresh.value.expose());
                        assert!(token.fresh.expires_at >= now, "expired on arrival");
                    }
                    Err(err) => check_error(&err, status, true, &sent),
                },
                3 => {
                    let err = answer::oauth_refusal(status, body, &sent);
                    check_error(&err, status, false, &sent);
                }
                _ => check_quote(&quote_issuer(&String::from_utf8_lossy(body), &sent), &sent),
            }
        }
        5 => {
            let text = String::from_utf8_lossy(rest);
            if let Err(err) = RsaSigner::from_pem(&text) {
                check_key_error(&err, &text);
            }
        }
        6 => match answer::service_account(&String::from_utf8_lossy(rest)) {
            Ok(account) => assert!(!account.email.is_empty()),
            Err(ServiceAccountError::NotJson { line }) => {
                assert!(line <= rest.split(|&b| b == b'\n').count() + 1);
            }
            Err(ServiceAccountError::Incomplete) => {}
            Err(ServiceAccountError::Key(err)) => check_key_error(&err, ""),
        },
        _ => {
            let _ = answer::github_installation_id(rest);
        }
    }
}

/// `[status, n, secret: n bytes, body…]`, any part possibly short.
fn split(rest: &[u8]) -> (StatusCode, String, &[u8]) {
    let status = rest.first().map_or(200, |&b| STATUSES[usize::from(b % 16)]);
    let rest = rest.get(1..).unwrap_or_default();
    let n = rest.first().map_or(0, |&n| usize::from(n));
    let rest = rest.get(1..).unwrap_or_default();
    let n = n.min(rest.len());
    let secret = String::from_utf8_lossy(&rest[..n]).into_owned();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        secret,
        &rest[n..],
    )
}

/// An accepted token can go into a header as a bearer token.
fn assert_usable(token: &str) {
    assert!(answer::is_usable_token(token), "unusable token {token:?}");
    assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
}

/// The secrets a quote must not contain: [`quote_issuer`] redacts those of 8
/// bytes or more. One with a bracket, or `redacted` itself, could be formed by
/// the `[redacted]` marker and the text next to it without having been sent.
fn redactable<'a>(sent: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    sent.iter()
        .copied()
        .filter(|s| s.len() >= 8 && !s.contains(['[', ']']) && !"[redacted]".contains(*s))
}

fn check_quote(quote: &str, sent: &[&str]) {
    assert!(
        !quote.chars().any(char::is_control),
        "a quote with a control character: {quote:?}"
    );
    assert!(
        quote.chars().count() <= MAX_QUOTE,
        "a quote of {} characters",
        quote.chars().count()
    );
    assert_eq!(quote, quote.trim(), "an untrimmed quote");
    for secret in redactable(sent) {
        assert!(
            !quote.contains(secret),
            "{quote:?} quotes the secret {secret:?}"
        );
    }
}

/// `whole`: the error came from reading a whole answer with `status` (a refusal
/// then means a failure status, a missing token a success), not from reading a
/// refusal directly.
fn check_error(err: &AnswerError, status: StatusCode, whole: bool, sent: &[&str]) {
    let failed = whole.then_some(!status.is_success());
    match err {
        AnswerError::Github {
            status: got,
            message,
        } => {
            assert_eq!(*got, status.as_u16());
            assert_ne!(failed, Some(false), "a refusal from a success");
            check_quote(message, sent);
        }
        AnswerError::OAuth {
            status: got,
            error,
            description,
        } => {
            assert_eq!(*got, status.as_u16());
            assert_ne!(failed, Some(false), "a refusal from a success");
            assert!(error.is_some() || description.is_none());
            for quote in error.iter().chain(description) {
                check_quote(quote, sent);
            }
        }
        AnswerError::NoGithubToken | AnswerError::NoAccessToken => {
            assert_eq!(failed, Some(false), "no token reported for a failure");
        }
    }
    let text = err.to_string();
    assert!(
        !text.chars().any(char::is_control),
        "an error with a control character: {text:?}"
    );
    assert!(
        text.chars().count() <= MAX_ERROR,
        "an error of {}",
        text.len()
    );
}

/// A key file's error is one of [`RsaSigner::from_pem`]'s sentences, quoting at
/// most the file's PEM label (which, if `text` is given, is the one it has).
fn check_key_error(err: &str, text: &str) {
    assert!(!err.chars().any(char::is_control), "{err:?}");
    assert!(err.len() <= 100 + MAX_LABEL, "{err:?}");
    if let Some(label) = err
        .strip_prefix("the private key is a PEM `")
        .and_then(|e| e.strip_suffix("` block, not an RSA private key"))
    {
        assert!(is_pem_label(label), "{err:?}");
        if !text.is_empty() {
            let tag = pem::parse(text.trim()).map(|p| p.tag().to_string());
            assert_eq!(tag.ok().as_deref(), Some(label), "{err:?}");
        }
    } else if let Some(reason) = err.strip_prefix("the private key is not a usable RSA key: ") {
        assert!(reason.bytes().all(|b| b.is_ascii_alphanumeric()), "{err:?}");
    } else {
        assert!(
            [
                "the private key is not a PEM block",
                "the private key is a PEM block with a malformed label, not an RSA private key",
            ]
            .contains(&err),
            "unexpected key error {err:?}"
        );
    }
}
