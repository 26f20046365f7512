//! Signing keys and signatures (SigV4, "Calculate the signature").

use super::auth::Scope;
use aws_lc_rs::hmac;
use std::collections::HashMap;
use std::sync::Mutex;

/// (access key id, date, region, service).
type KeyId = (String, String, String, String);
/// A derived key, with a digest of the secret it came from.
type Derived = (aws_lc_rs::digest::Digest, hmac::Key);

/// Derived signing keys, cached per access key, date, region and service, so
/// that a signature costs two HMACs rather than five.
#[derive(Default)]
pub struct SigningKeys {
    keys: Mutex<HashMap<KeyId, Derived>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeys(..)")
    }
}

/// Most keys kept; past it the cache starts over (keys change once a day).
const MAX_KEYS: usize = 1024;

impl SigningKeys {
    /// The signing key of `secret` for `scope`.
    pub fn key(&self, secret: &str, scope: &Scope) -> hmac::Key {
        let fingerprint = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        let id = (
            scope.access_key.clone(),
            scope.date.clone(),
            scope.region.clone(),
            scope.service.clone(),
        );
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, key)) = keys.get(&id) {
            if known.as_ref() == fingerprint.as_ref() {
                return key.clone();
            }
        }
        let key = derive(secret, scope);
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(id, (fingerprint, key.clone()));
        key
    }
}

/// `kSigning` = HMAC chain over date, region, service and `aws4_request`.
fn derive(secret: &str, scope: &Scope) -> hmac::Key {
    let mut seed = zeroize::Zeroizing::new(Vec::with_capacity(secret.len() + 4));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret.as_bytes());
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = step(&seed, &scope.date);
    let k_region = step(k_date.as_ref(), &scope.region);
    let k_service = step(k_region.as_ref(), &scope.service);
    let k_signing = step(k_service.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

/// Lower-case hex HMAC of `string_to_sign` under `key`.
pub fn signature(key: &hmac::Key, string_to_sign: &str) -> String {
    crate::text::hex(hmac::sign(key, string_to_sign.as_bytes()).as_ref())
}
