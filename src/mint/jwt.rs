//! RS256 JSON Web Tokens (RFC 7515 / 7519), signed with aws-lc-rs: the GitHub
//! App JWT and the RFC 7523 assertion of a service account.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// An RSA private key that signs JWTs.
pub struct RsaSigner {
    key: RsaKeyPair,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(..)")
    }
}

impl RsaSigner {
    /// Reads a PEM RSA key: PKCS#1 (`RSA PRIVATE KEY`, as GitHub hands out) or
    /// PKCS#8 (`PRIVATE KEY`, as in a Google service-account file). The error
    /// says what is wrong without quoting the key.
    pub fn from_pem(pem_text: &str) -> Result<Self, String> {
        let block = pem::parse(pem_text.trim())
            .map_err(|_| "the private key is not a PEM block".to_string())?;
        let key =
            match block.tag() {
                "RSA PRIVATE KEY" => RsaKeyPair::from_der(block.contents()),
                "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
                other if is_pem_label(other) => {
                    return Err(format!(
                        "the private key is a PEM `{other}` block, not an RSA private key"
                    ))
                }
                // The parser takes anything up to `-----` as the label, lines of the
                // key included: such a "label" is not quoted.
                _ => return Err(
                    "the private key is a PEM block with a malformed label, not an RSA private key"
                        .to_string(),
                ),
            }
            .map_err(|e| format!("the private key is not a usable RSA key: {e}"))?;
        Ok(Self { key })
    }

    /// `header.claims.signature`, each part base64url without padding.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, String> {
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing with the private key failed".to_string())?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

/// Whether a PEM block's label is one worth quoting: short, one line, printable
/// (RFC 7468 §3 labels are printable ASCII, such as `CERTIFICATE`).
pub fn is_pem_label(label: &str) -> bool {
    (1..=MAX_LABEL).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && label.trim() == label
}

/// Longest PEM label quoted in an error.
pub const MAX_LABEL: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    fn test_key() -> (String, Vec<u8>) {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .unwrap_or_else(|e| panic!("{e}"));
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&key)
            .unwrap_or_else(|e| panic!("{e}"));
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        (pem, key.public_key().as_ref().to_vec())
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let (pem, public) = test_key();
        let signer = RsaSigner::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
        let jwt = signer
            .sign(
                &serde_json::json!({"alg": "RS256", "typ": "JWT"}),
                &serde_json::json!({"iss": "1"}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let (signed, signature) = jwt.rsplit_once('.').unwrap_or_else(|| panic!("{jwt}"));
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap_or_else(|e| panic!("{e}"));
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(signed.as_bytes(), &signature)
            .unwrap_or_else(|e| panic!("{e}"));
        let claims = signed.split('.').nth(1).unwrap_or_default();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(claims).ok(),
            Some(br#"{"iss":"1"}"#.to_vec())
        );
    }

    #[test]
    fn bad_keys_are_refused_without_quoting_them() {
        for text in [
            "",
            "not pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        ] {
            let err = RsaSigner::from_pem(text).err().unwrap_or_default();
            assert!(err.contains("private key"), "{err}");
            assert!(!err.contains("AAAA"));
        }
        // A broken BEGIN line makes the parser read key lines as the label.
        let err = RsaSigner::from_pem(
            "-----BEGIN X\nMIIEsecretline\n-----\n-----END X\nMIIEsecretline\n-----",
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("malformed label"), "{err}");
        assert!(!err.contains("MIIE"), "{err}");
        let garbage = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", vec![1, 2, 3]));
        assert!(RsaSigner::from_pem(&garbage).is_err());
    }
}
