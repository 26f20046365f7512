//! Fuzz target `task_token`: self-verifying task tokens ([`TaskKey`]).
//!
//! The first byte picks the mode:
//! - even: the rest, as text, is a token presented by a client. It must never
//!   panic, and it verifies under [`FUZZ_KEY`] only if it is exactly the token that
//!   key issues for the claims it carries (so only a token issued with the key);
//! - odd: the rest describes claims and one edit. The token issued for them must
//!   verify to the same claims until it expires, fail under another key, and fail
//!   after the edit (one character replaced, inserted or deleted) or a truncation.

use crate::task_token::{is_task_token, Claims, TaskKey};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The key the target's tokens are issued with; `fuzz/seeds/task_token/` holds a
/// token issued under it. Not a secret: it only ever signs fuzz inputs.
pub const FUZZ_KEY: [u8; 32] = [7; 32];

/// The verification time of presented tokens (2025-06-15).
pub const FUZZ_NOW: u64 = 1_750_000_000;

const OTHER_KEY: [u8; 32] = [8; 32];

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check_presented(&String::from_utf8_lossy(rest));
    } else {
        let (claims, edit) = claims_and_edit(rest);
        check_issued(&claims, edit);
    }
}

/// A token from a client verifies only if the key issued exactly this text.
pub(crate) fn check_presented(token: &str) {
    for key in [FUZZ_KEY, OTHER_KEY] {
        let key = TaskKey::from_bytes(&key);
        if let Some(claims) = key.verify(token, FUZZ_NOW) {
            assert!(
                is_task_token(token),
                "{token:?} verified without the prefix"
            );
            assert!(claims.exp > FUZZ_NOW, "{token:?} verified after it expired");
            assert_eq!(
                key.mint(&claims),
                token,
                "a token the key never issued verified"
            );
        }
    }
}

/// One change to an issued token's text.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Edit {
    /// Put `char` in place of the character at this index (mod the length).
    Replace(usize, char),
    /// Insert `char` before the character at this index (mod the length + 1).
    Insert(usize, char),
    /// Delete the character at this index (mod the length).
    Delete(usize),
    /// Keep only this many characters (mod the length).
    Truncate(usize),
}

impl Edit {
    /// `token` with the edit applied (characters, not bytes).
    pub(crate) fn apply(self, token: &str) -> String {
        let mut chars: Vec<char> = token.chars().collect();
        let len = chars.len().max(1);
        match self {
            Edit::Replace(i, c) => {
                if let Some(slot) = chars.get_mut(i % len) {
                    *slot = c;
                }
            }
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Delete(i) => {
                if i % len < chars.len() {
                    chars.remove(i % len);
                }
            }
            Edit::Truncate(n) => chars.truncate(n % len),
        }
        chars.into_iter().collect()
    }
}

/// An issued token round-trips its claims, and any edit of it fails.
pub(crate) fn check_issued(claims: &Claims, edit: Edit) {
    let key = TaskKey::from_bytes(&FUZZ_KEY);
    let token = key.mint(claims);
    assert!(
        is_task_token(&token),
        "issued token {token:?} lacks the prefix"
    );
    if let Some(before_expiry) = claims.exp.checked_sub(1) {
        assert_eq!(
            key.verify(&token, before_expiry).as_ref(),
            Some(claims),
            "an issued token does not round-trip"
        );
    }
    assert_eq!(key.verify(&token, claims.exp), None, "valid at its expiry");
    let other = TaskKey::from_bytes(&OTHER_KEY);
    assert_eq!(other.verify(&token, 0), None, "valid under another key");
    let edited = edit.apply(&token);
    if edited != token {
        assert_eq!(
            key.verify(&edited, 0),
            None,
            "{edit:?} of {token:?} still verifies"
        );
    }
}

/// Reads claims and an edit from bytes: exp (8 bytes), source kind and address,
/// edit kind, index (2 bytes) and character (4 bytes), id length, id, policy.
fn claims_and_edit(data: &[u8]) -> (Claims, Edit) {
    let mut input = Bytes(data);
    let exp = u64::from_le_bytes(input.array());
    let src = match input.byte() % 3 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::from(input.array::<4>()))),
        _ => Some(IpAddr::V6(Ipv6Addr::from(input.array::<16>()))),
    };
    let kind = input.byte();
    let index = usize::from(u16::from_le_bytes(input.array()));
    let c = char::from_u32(u32::from_le_bytes(input.array()) % 0x11_0000).unwrap_or('A');
    let edit = match kind % 4 {
        0 => Edit::Replace(index, c),
        1 => Edit::Insert(index, c),
        2 => Edit::Delete(index),
        _ => Edit::Truncate(index),
    };
    let id_len = usize::from(input.byte());
    let id = String::from_utf8_lossy(input.take(id_len)).into_owned();
    let policy = String::from_utf8_lossy(input.0).into_owned();
    let claims = Claims {
        id,
        policy,
        exp,
        src,
    };
    (claims, edit)
}

/// A cursor over input bytes that reads zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(head);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_token_is_one_the_fuzz_key_issued() {
        let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds/task_token/issued-token");
        let data = std::fs::read(seed).unwrap();
        let token = std::str::from_utf8(&data[1..]).unwrap();
        let claims = TaskKey::from_bytes(&FUZZ_KEY).verify(token, FUZZ_NOW);
        assert!(claims.is_some(), "the seed must be a live issued token");
        run(&data);
    }

    #[test]
    fn a_token_the_key_did_not_issue_fails_the_check() {
        // A MAC-valid token whose text is not what `mint` produces (another JSON
        // spelling of the same claims) is the forgery the invariant looks for.
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let body = URL_SAFE_NO_PAD.encode(br#"{"exp":4102444800,"id":"t","policy":"p"}"#);
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &FUZZ_KEY),
            body.as_bytes(),
        );
        let token = format!("tg1.{body}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        let outcome = std::panic::catch_unwind(|| check_presented(&token));
        assert!(
            outcome.is_err(),
            "re-spelled claims must trip the invariant"
        );
    }

    #[test]
    fn edits_apply_to_characters() {
        assert_eq!(Edit::Replace(1, 'x').apply("abc"), "axc");
        assert_eq!(Edit::Insert(3, 'x').apply("abc"), "abcx");
        assert_eq!(Edit::Delete(4).apply("abc"), "ac");
        assert_eq!(Edit::Truncate(2).apply("abc"), "ab");
        assert_eq!(Edit::Replace(0, 'x').apply(""), "");
    }
}
