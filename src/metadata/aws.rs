//! The AWS instance metadata service, IMDSv2 only, as a hardened instance runs
//! it: a session token from `PUT /latest/api/token`, then the role credentials
//! (placeholders) and the placement. A GET without a valid token is 401.
//!
//! botocore 1.43 asks for `latest/api/token`, `latest/meta-data/iam/security-credentials/`,
//! `…/security-credentials/<role>` and `latest/meta-data/placement/availability-zone/`
//! (the region is the zone less its last letter).

use super::ask::{Ask, Caller, Reply};
use super::offer::{AwsRole, Offer};
use super::session::{SessionKey, MAX_SESSION_TTL};
use http::header::HeaderValue;
use http::{Method, StatusCode};

/// Where sessions are opened.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// Header naming the session's life on the `PUT`.
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Header carrying the session token on a `GET`.
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const META_DATA: &str = "/latest/meta-data/";
const CREDENTIALS: &str = "iam/security-credentials/";
const TEXT: &str = "text/plain";

/// The answer to `ask`, a path under `/latest`.
pub fn answer(offer: &Offer, ask: &Ask<'_>, caller: &Caller<'_>, key: &SessionKey) -> Reply {
    if offer.aws.is_empty() {
        return not_found();
    }
    if ask.path == TOKEN_PATH {
        return open_session(ask, caller, key);
    }
    if ask.method != Method::GET {
        return Reply::new(StatusCode::METHOD_NOT_ALLOWED, TEXT, "Method Not Allowed");
    }
    // SECURITY: IMDSv1 (no token) is refused, as on an instance with
    // `HttpTokens: required`: a server-side request forgery cannot read
    // credentials with one GET.
    let valid = ask
        .header(TOKEN_HEADER)
        .is_some_and(|token| key.verify(token, caller.task, caller.now));
    if !valid {
        return Reply::new(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized");
    }
    let Some(item) = ask.path.strip_prefix(META_DATA) else {
        return not_found();
    };
    match item {
        "iam/security-credentials" | CREDENTIALS => {
            let names: Vec<&str> = offer.aws.iter().map(|r| r.name.as_str()).collect();
            Reply::new(StatusCode::OK, TEXT, names.join("\n"))
        }
        "placement/region" => match offer.aws_region() {
            Some(region) => Reply::new(StatusCode::OK, TEXT, region),
            None => not_found(),
        },
        "placement/availability-zone" | "placement/availability-zone/" => {
            match offer.aws_region() {
                Some(region) => Reply::new(StatusCode::OK, TEXT, format!("{region}a")),
                None => not_found(),
            }
        }
        _ => match item
            .strip_prefix(CREDENTIALS)
            .and_then(|name| offer.aws.iter().find(|r| r.name == name))
        {
            Some(role) => credentials(role, caller),
            None => not_found(),
        },
    }
}

fn open_session(ask: &Ask<'_>, caller: &Caller<'_>, key: &SessionKey) -> Reply {
    if ask.method != Method::PUT {
        return Reply::new(StatusCode::METHOD_NOT_ALLOWED, TEXT, "Method Not Allowed");
    }
    // SECURITY: as AWS does, a token PUT that carries X-Forwarded-For is refused:
    // it came through a forwarding proxy, as a request forged by a server would.
    if ask.has_header("x-forwarded-for") {
        return Reply::new(StatusCode::FORBIDDEN, TEXT, "Forbidden");
    }
    let ttl = ask
        .header(TTL_HEADER)
        .filter(|t| !t.is_empty() && t.len() <= 5 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| (1..=MAX_SESSION_TTL).contains(t));
    let Some(ttl) = ttl else {
        return Reply::new(StatusCode::BAD_REQUEST, TEXT, "Bad Request");
    };
    Reply::new(
        StatusCode::OK,
        TEXT,
        key.issue(caller.task, caller.now, ttl),
    )
    .with(
        http::HeaderName::from_static(TTL_HEADER),
        HeaderValue::from(ttl),
    )
}

/// The role's credentials: the placeholder in every field, as botocore reads them.
fn credentials(role: &AwsRole, caller: &Caller<'_>) -> Reply {
    let body = serde_json::json!({
        "Code": "Success",
        "LastUpdated": crate::text::rfc3339_seconds(caller.now),
        "Type": "AWS-HMAC",
        "AccessKeyId": role.placeholder,
        "SecretAccessKey": role.placeholder,
        "Token": role.placeholder,
        "Expiration": crate::text::rfc3339_seconds(caller.expires),
    });
    Reply::new(StatusCode::OK, TEXT, body.to_string())
}

fn not_found() -> Reply {
    Reply::new(StatusCode::NOT_FOUND, TEXT, "Not Found")
}
