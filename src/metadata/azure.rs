//! The Azure instance metadata service's managed-identity token endpoint, as
//! MSAL (under azure-identity's `ManagedIdentityCredential`) reads it:
//! `GET /metadata/identity/oauth2/token?api-version=…&resource=…` with
//! `Metadata: true` (else 400). Nothing else under `/metadata/` is answered: no
//! instance document, no user data.

use super::ask::{Ask, Caller, Reply};
use super::offer::AzureIdentity;
use http::{Method, StatusCode};
use serde_json::json;

/// The token endpoint.
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// The answer to `ask`, a path under `/metadata/`.
pub fn answer(identity: Option<&AzureIdentity>, ask: &Ask<'_>, caller: &Caller<'_>) -> Reply {
    // SECURITY: like Azure's IMDS, the header a forged server-side request
    // cannot add; and nothing that passed a forwarding proxy.
    let header_ok = ask
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !header_ok || ask.has_header("x-forwarded-for") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    let Some(identity) = identity.filter(|_| ask.path == TOKEN_PATH) else {
        return error(StatusCode::NOT_FOUND, "not_found", "Not Found");
    };
    if ask.method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Only GET is allowed",
        );
    }
    if ask.query_param("api-version").is_none_or(|v| v.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = ask.query_param("resource").filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required audience parameter not specified",
        );
    };
    let expires_in = caller.expires_in().to_string();
    Reply::json(
        StatusCode::OK,
        &json!({
            "access_token": identity.placeholder,
            "refresh_token": "",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "expires_on": caller.expires_unix().to_string(),
            "not_before": caller.now_unix().to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}

fn error(status: StatusCode, code: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": code, "error_description": description }),
    )
}
