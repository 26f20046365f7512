//! Real AWS credentials as one secret value: the access key id, the secret
//! access key, the session token of temporary credentials and when they
//! expire, one per line. The minter writes this form; the request path reads
//! it back without allocating.

use std::time::{SystemTime, UNIX_EPOCH};

/// AWS credentials read from a secret value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// Access key id (`AKIA…` or `ASIA…`).
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret_access_key: &'a str,
    /// Session token of temporary credentials.
    pub session_token: Option<&'a str>,
    /// Unix seconds at which they stop working, when known.
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl<'a> Credentials<'a> {
    /// The one-value form. `None` when a part holds a line break or is empty
    /// (no real credential does).
    pub fn encode(&self) -> Option<String> {
        let token = self.session_token.unwrap_or("");
        let parts = [self.access_key_id, self.secret_access_key, token];
        if self.access_key_id.is_empty()
            || self.secret_access_key.is_empty()
            || parts.iter().any(|p| p.contains(['\n', '\r']))
        {
            return None;
        }
        let expires = self.expires_at.map(|e| e.to_string()).unwrap_or_default();
        Some(format!(
            "{}\n{}\n{}\n{}",
            parts[0], parts[1], parts[2], expires
        ))
    }

    /// Reads the form [`Self::encode`] wrote.
    pub fn parse(value: &'a str) -> Option<Self> {
        let mut lines = value.split('\n');
        let access_key_id = lines.next().filter(|s| !s.is_empty())?;
        let secret_access_key = lines.next().filter(|s| !s.is_empty())?;
        let session_token = lines.next().filter(|s| !s.is_empty());
        let expires_at = match lines.next() {
            Some("") | None => None,
            Some(at) => Some(at.parse().ok()?),
        };
        if lines.next().is_some() {
            return None;
        }
        Some(Self {
            access_key_id,
            secret_access_key,
            session_token,
            expires_at,
        })
    }

    /// Seconds of life left now; `None` when the expiry is not known.
    pub fn remaining(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.expires_at.map(|at| at.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_line_breaks() {
        let creds = Credentials {
            access_key_id: "ASIAXXXXXXXXXXXXXXXX",
            secret_access_key: "wJalr/K7MDENG+bPxRfiCY",
            session_token: Some("FQoG//token=="),
            expires_at: Some(1_800_000_000),
        };
        let text = creds.encode().unwrap();
        assert_eq!(Credentials::parse(&text), Some(creds));
        let static_key = Credentials {
            session_token: None,
            expires_at: None,
            ..creds
        };
        assert_eq!(
            Credentials::parse(&static_key.encode().unwrap()),
            Some(static_key)
        );
        let broken = Credentials {
            session_token: Some("a\nb"),
            ..creds
        };
        assert_eq!(broken.encode(), None);
        assert_eq!(Credentials::parse("just-a-token"), None);
        assert_eq!(Credentials::parse("a\nb\nc\nnot-a-number"), None);
        assert!(!format!("{creds:?}").contains("wJalr"));
    }
}
