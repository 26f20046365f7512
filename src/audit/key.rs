//! The ed25519 audit signing key: PKCS#8 v1 PEM (0600) with its SPKI PEM public key
//! at `<key>.pub`, so that `openssl pkeyutl -verify` can check a record by hand.
//!
//! New keys are PKCS#8 v1 (RFC 5208 `PrivateKeyInfo`, the seed only): OpenSSL 3.0
//! rejects the v2 form (RFC 5958, with the public key) as "unsupported". Keys an
//! earlier version wrote as v2, and v1 keys made by `openssl genpkey`, load alike.

use crate::tls::ca::{create_private_dir, write_new_file, CaError};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::Engine;
use std::path::{Path, PathBuf};

const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";
/// DER prefix of an ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Key file errors, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl From<CaError> for KeyError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Io { path, source } => KeyError::File {
                path,
                message: source.to_string(),
            },
            CaError::Invalid { path, message } => KeyError::File { path, message },
        }
    }
}

/// PEM with LF line ends, as openssl writes it, so that `openssl pkey -pubout`
/// prints exactly the `.pub` file.
fn pem_lf(label: &str, der: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The public key file that belongs to `key`.
pub fn public_key_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

/// Whether a key pair was created by [`ensure_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// The key existed.
    Existing,
    /// It was created now.
    Created,
}

/// Creates the signing key at `path` (and `path.pub`) if absent.
pub fn ensure_key(path: &Path) -> Result<KeyStatus, KeyError> {
    let pub_path = public_key_path(path);
    if path.exists() {
        if !pub_path.exists() {
            // The public half can always be derived again; writing it is harmless.
            let key = SigningKey::load(path)?;
            write_new_file(&pub_path, key.public_pem().as_bytes(), 0o644)?;
        }
        return Ok(KeyStatus::Existing);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let pair = Ed25519KeyPair::generate().map_err(|_| file_error(path, "key generation failed"))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| file_error(path, "cannot encode the new key"))?;
    let pem_text = pem_lf(PRIVATE_LABEL, pkcs8.as_ref().to_vec());
    write_new_file(path, pem_text.as_bytes(), 0o600)?;
    let key = SigningKey::from_pair(pair)?;
    if pub_path.exists() {
        std::fs::remove_file(&pub_path).map_err(|e| file_error(&pub_path, e))?;
    }
    write_new_file(&pub_path, key.public_pem().as_bytes(), 0o644)?;
    Ok(KeyStatus::Created)
}

/// The loaded signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    spki: Vec<u8>,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_id)
    }
}

impl SigningKey {
    /// Loads a PKCS#8 PEM ed25519 key, v1 (what tollgate and `openssl genpkey`
    /// write) or v2 (what tollgate wrote before).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read(path).map_err(|e| file_error(path, e))?;
        let parsed = pem::parse(&text).map_err(|e| file_error(path, format!("not PEM: {e}")))?;
        if parsed.tag() != PRIVATE_LABEL {
            return Err(file_error(
                path,
                format!(
                    "expected a `{PRIVATE_LABEL}` PEM block, found `{}`",
                    parsed.tag()
                ),
            ));
        }
        // Accepts v1 and v2; a v2 key's public half is checked against its seed.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(parsed.contents())
            .map_err(|e| file_error(path, format!("not an ed25519 PKCS#8 key: {e}")))?;
        Self::from_pair(pair).map_err(|_| file_error(path, "cannot encode the public key"))
    }

    /// The key whose 32-byte ed25519 seed is `seed`: a fixed key for tests and
    /// fuzzing. A real signing key comes from [`SigningKey::load`].
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| file_error(Path::new("audit key"), format!("bad seed: {e}")))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: Ed25519KeyPair) -> Result<Self, KeyError> {
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| file_error(Path::new("audit key"), "cannot encode the public key"))?
            .as_ref()
            .to_vec();
        let key_id = key_id_of(&spki);
        Ok(Self { pair, spki, key_id })
    }

    /// First 16 hex digits of the SHA-256 of the public key (SPKI DER).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Base64 ed25519 signature of `message`.
    pub fn sign_b64(&self, message: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.pair.sign(message).as_ref())
    }

    /// The SPKI PEM of the public key.
    pub fn public_pem(&self) -> String {
        pem_lf(PUBLIC_LABEL, self.spki.clone())
    }

    /// The verifying half.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            raw: self.pair.public_key().as_ref().to_vec(),
            key_id: self.key_id.clone(),
        }
    }
}

fn key_id_of(spki: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    crate::text::hex(&digest.as_ref()[..8])
}

/// A public key that checks record signatures.
#[derive(Debug, Clone)]
pub struct Verifier {
    raw: Vec<u8>,
    key_id: String,
}

impl Verifier {
    /// Loads an SPKI PEM ed25519 public key (`audit.key.pub`).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read(path).map_err(|e| file_error(path, e))?;
        let parsed = pem::parse(&text).map_err(|e| file_error(path, format!("not PEM: {e}")))?;
        let der = parsed.contents();
        if parsed.tag() != PUBLIC_LABEL
            || der.len() != ED25519_SPKI_PREFIX.len() + 32
            || der[..ED25519_SPKI_PREFIX.len()] != ED25519_SPKI_PREFIX
        {
            return Err(file_error(
                path,
                "not an ed25519 public key (expected `PUBLIC KEY` SPKI PEM, as in audit.key.pub)",
            ));
        }
        Ok(Self {
            raw: der[ED25519_SPKI_PREFIX.len()..].to_vec(),
            key_id: key_id_of(der),
        })
    }

    /// The key id records signed by this key carry.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether `sig_b64` is a valid signature of `message`.
    pub fn verify(&self, message: &[u8], sig_b64: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig_b64) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(message, &sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_signs_and_its_public_file_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        assert_eq!(ensure_key(&path).unwrap(), KeyStatus::Created);
        assert_eq!(ensure_key(&path).unwrap(), KeyStatus::Existing);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = SigningKey::load(&path).unwrap();
        let verifier = Verifier::load(&public_key_path(&path)).unwrap();
        assert_eq!(verifier.key_id(), key.key_id());
        assert_eq!(key.key_id().len(), 16);
        let sig = key.sign_b64(b"hello");
        assert!(verifier.verify(b"hello", &sig));
        assert!(!verifier.verify(b"hellO", &sig));
        assert!(!verifier.verify(b"hello", "not base64!"));
    }

    /// The DER inside a PEM file.
    fn der_of(path: &Path) -> Vec<u8> {
        pem::parse(std::fs::read(path).unwrap())
            .unwrap()
            .contents()
            .to_vec()
    }

    /// `version` of a PKCS#8 structure: 0 for v1 (RFC 5208), 1 for v2 (RFC 5958).
    fn pkcs8_version(der: &[u8]) -> u8 {
        // SEQUENCE (short length), then INTEGER of one byte.
        assert_eq!(der[0], 0x30, "{der:02x?}");
        assert_eq!(&der[2..4], &[0x02, 0x01], "{der:02x?}");
        der[4]
    }

    #[test]
    fn new_keys_are_pkcs8_v1_holding_only_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        ensure_key(&path).unwrap();
        let der = der_of(&path);
        assert_eq!(pkcs8_version(&der), 0, "v1: {der:02x?}");
        // SEQUENCE { 0, { id-Ed25519 }, OCTET STRING { OCTET STRING seed } }: no
        // public key attribute, which is what OpenSSL 3.0 cannot read.
        assert_eq!(der.len(), 48, "{der:02x?}");
        assert_eq!(
            &der[..16],
            &[
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20
            ]
        );
    }

    #[test]
    fn v2_keys_written_by_earlier_versions_still_load_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let pair = Ed25519KeyPair::generate().unwrap();
        let v2 = pair.to_pkcs8().unwrap();
        assert_eq!(pkcs8_version(v2.as_ref()), 1, "the fixture is v2");
        let text = pem::encode(&pem::Pem::new(PRIVATE_LABEL, v2.as_ref().to_vec()));
        std::fs::write(&path, &text).unwrap();

        assert_eq!(ensure_key(&path).unwrap(), KeyStatus::Existing);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "an existing key is never rewritten"
        );
        let key = SigningKey::load(&path).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        assert_eq!(key.key_id(), key_id_of(spki.as_ref()));
        // The public half ensure_key wrote verifies what the key signs.
        let verifier = Verifier::load(&public_key_path(&path)).unwrap();
        assert!(verifier.verify(b"record", &key.sign_b64(b"record")));
    }

    #[test]
    fn a_v2_key_whose_public_half_does_not_match_its_seed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let mut v2 = Ed25519KeyPair::generate()
            .unwrap()
            .to_pkcs8()
            .unwrap()
            .as_ref()
            .to_vec();
        // The public key is the last 32 bytes of the v2 document.
        let last = v2.len() - 1;
        v2[last] ^= 1;
        std::fs::write(&path, pem::encode(&pem::Pem::new(PRIVATE_LABEL, v2))).unwrap();
        let err = SigningKey::load(&path).unwrap_err();
        assert!(
            err.to_string().contains("not an ed25519 PKCS#8 key"),
            "{err}"
        );
    }

    /// The example key of RFC 8410 section 10.3, in the form `openssl genpkey
    /// -algorithm ed25519` writes (PKCS#8 v1), and its public key (section 10.1).
    const RFC8410_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";
    const RFC8410_PUB: &str = "-----BEGIN PUBLIC KEY-----\r\n\
        MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\r\n\
        -----END PUBLIC KEY-----\r\n";

    #[test]
    fn v1_keys_in_the_openssl_form_load_and_give_their_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        std::fs::write(&path, RFC8410_KEY).unwrap();
        assert_eq!(pkcs8_version(&der_of(&path)), 0);
        assert_eq!(ensure_key(&path).unwrap(), KeyStatus::Existing);
        let public = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(
            pem::parse(&public).unwrap(),
            pem::parse(RFC8410_PUB).unwrap()
        );
        let key = SigningKey::load(&path).unwrap();
        let verifier = Verifier::load(&public_key_path(&path)).unwrap();
        assert!(verifier.verify(b"x", &key.sign_b64(b"x")));
    }

    #[test]
    fn a_key_made_by_openssl_genpkey_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let made = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&path)
            .status()
            .expect("openssl must be installed (CI installs it)");
        assert!(made.success());
        assert_eq!(pkcs8_version(&der_of(&path)), 0);
        let key = SigningKey::load(&path).unwrap();
        let public = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(public.status.success());
        assert_eq!(
            pem::parse(&public.stdout).unwrap(),
            pem::parse(key.public_pem()).unwrap()
        );
    }

    #[test]
    fn a_public_key_is_not_accepted_as_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        ensure_key(&path).unwrap();
        let err = SigningKey::load(&public_key_path(&path)).unwrap_err();
        assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
        let err = Verifier::load(&path).unwrap_err();
        assert!(err.to_string().contains("ed25519 public key"), "{err}");
    }
}
