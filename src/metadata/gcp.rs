//! The GCP metadata server, as far as google-auth's `compute_engine`
//! credentials read it: the ping (`GET /`), the service account's info
//! (`…/service-accounts/default/?recursive=true`), its email and token, and the
//! project id. Every request needs `Metadata-Flavor: Google` (else 403), and
//! every answer carries it back.

use super::ask::{Ask, Caller, Reply};
use super::offer::{GcpAccount, GcpIdentity};
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};

const FLAVOR: &str = "metadata-flavor";
const GOOGLE: &str = "Google";
const ROOT: &str = "/computeMetadata/v1/";
const ACCOUNTS: &str = "instance/service-accounts/";
/// What GCE labels plain-text answers with.
const TEXT: &str = "application/text";
/// The account name answered when no service-account key names one.
const DEFAULT_ACCOUNT: &str = "default";

/// The answer to `ask` (the ping `/`, or a path under `/computeMetadata/`).
pub fn answer(
    account: Option<&GcpAccount>,
    identity: Option<&GcpIdentity>,
    ask: &Ask<'_>,
    caller: &Caller<'_>,
) -> Reply {
    let reply = route(account, identity, ask, caller);
    reply.with(
        HeaderName::from_static(FLAVOR),
        HeaderValue::from_static(GOOGLE),
    )
}

fn route(
    account: Option<&GcpAccount>,
    identity: Option<&GcpIdentity>,
    ask: &Ask<'_>,
    caller: &Caller<'_>,
) -> Reply {
    let Some(account) = account else {
        return not_found();
    };
    // SECURITY: like GCE, the header a browser or a forged server-side request
    // cannot add; and nothing that passed a forwarding proxy.
    if ask.header(FLAVOR) != Some(GOOGLE) || ask.has_header("x-forwarded-for") {
        return Reply::new(
            StatusCode::FORBIDDEN,
            TEXT,
            "Missing required header: Metadata-Flavor: Google",
        );
    }
    if ask.method != Method::GET {
        return Reply::new(StatusCode::METHOD_NOT_ALLOWED, TEXT, "Method Not Allowed");
    }
    if ask.path == "/" {
        return Reply::new(StatusCode::OK, TEXT, "computeMetadata/\n");
    }
    let Some(item) = ask.path.strip_prefix(ROOT) else {
        return not_found();
    };
    let email = identity.map_or(DEFAULT_ACCOUNT, |i| i.email.as_str());
    if item == "project/project-id" {
        return match identity.and_then(|i| i.project_id.as_deref()) {
            Some(project) => Reply::new(StatusCode::OK, TEXT, project),
            None => not_found(),
        };
    }
    if item == ACCOUNTS {
        let mut names = vec![DEFAULT_ACCOUNT.to_string() + "/"];
        if email != DEFAULT_ACCOUNT {
            names.push(format!("{email}/"));
        }
        return Reply::new(StatusCode::OK, TEXT, names.join("\n") + "\n");
    }
    let Some((name, leaf)) = item
        .strip_prefix(ACCOUNTS)
        .and_then(|rest| rest.split_once('/'))
    else {
        return not_found();
    };
    if name != DEFAULT_ACCOUNT && name != email {
        return not_found();
    }
    match leaf {
        "" if ask.query_param("recursive").as_deref() == Some("true") => Reply::json(
            StatusCode::OK,
            &serde_json::json!({
                "aliases": [DEFAULT_ACCOUNT],
                "email": email,
                "scopes": account.scopes,
            }),
        ),
        "" => Reply::new(StatusCode::OK, TEXT, "aliases\nemail\nscopes\ntoken\n"),
        "aliases" => Reply::new(StatusCode::OK, TEXT, format!("{DEFAULT_ACCOUNT}\n")),
        "email" => Reply::new(StatusCode::OK, TEXT, email),
        "scopes" => Reply::new(
            StatusCode::OK,
            TEXT,
            account
                .scopes
                .iter()
                .map(|s| format!("{s}\n"))
                .collect::<String>(),
        ),
        "token" => Reply::json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": account.placeholder,
                "expires_in": caller.expires_in(),
                "token_type": "Bearer",
            }),
        ),
        _ => not_found(),
    }
}

fn not_found() -> Reply {
    Reply::new(StatusCode::NOT_FOUND, TEXT, "Not Found")
}
