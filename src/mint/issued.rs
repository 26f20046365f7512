//! What an issuer hands out, and how its own words are quoted in errors.

use crate::secrets::SecretValue;
use std::time::SystemTime;

/// A token the issuer handed out, with when it stops working.
pub struct Fresh {
    /// The token.
    pub value: SecretValue,
    /// When the issuer said it expires.
    pub expires_at: SystemTime,
    /// The Vault lease to revoke when it is no longer used.
    pub lease: Option<crate::secrets::vault::Lease>,
}

/// An issuer's own words, made safe to quote: one line, at most 200
/// characters, and never containing `secrets` (what tollgate sent).
pub fn quote_issuer(text: &str, secrets: &[&str]) -> String {
    let mut text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTE)
        .collect();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        if text.contains(secret) {
            text = text.replace(secret, "[redacted]");
        }
    }
    // A cut-off piece of a secret at the very end is still a piece.
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        for keep in (8..secret.len()).rev() {
            if secret
                .get(..keep)
                .is_some_and(|piece| text.ends_with(piece))
            {
                text.truncate(text.len() - keep);
                text.push_str("[redacted]");
                break;
            }
        }
    }
    // `[redacted]` can be longer than what it replaced (a secret of 8 bytes
    // may be 2 characters): cut again, so the quote keeps its bound.
    let text = text.trim();
    if text.chars().count() <= MAX_QUOTE {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MAX_QUOTE - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Longest quote, in characters.
pub const MAX_QUOTE: usize = 200;
