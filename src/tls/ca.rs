//! The MITM certificate authority: created once with a 0600 key, loaded at start.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration as TimeDuration, OffsetDateTime};

/// How long a new CA is valid.
const CA_VALIDITY_DAYS: i64 = 3650;

/// CA errors, each naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The certificate or key did not parse, or generation failed.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A loaded CA able to sign leaf certificates.
pub struct CertificateAuthority {
    /// Signs leaves; holds the CA key.
    pub issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, appended to each leaf chain.
    pub cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority(..)")
    }
}

impl CertificateAuthority {
    /// The CA certificate in PEM, for clients to trust.
    pub fn cert_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.cert_der.to_vec()))
    }
}

/// Whether the CA was created by this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStatus {
    /// Both files existed.
    Existing,
    /// They were created now.
    Created,
}

/// Creates the CA at `cert_path` / `key_path` if either is absent.
pub fn ensure_ca(cert_path: &Path, key_path: &Path) -> Result<CaStatus, CaError> {
    if cert_path.exists() && key_path.exists() {
        return Ok(CaStatus::Existing);
    }
    if cert_path.exists() != key_path.exists() {
        let missing = if cert_path.exists() {
            key_path
        } else {
            cert_path
        };
        return Err(CaError::Invalid {
            path: missing.to_path_buf(),
            message: "the CA certificate and key must both exist or both be absent; refusing to overwrite one".into(),
        });
    }
    let invalid = |message: String| CaError::Invalid {
        path: cert_path.to_path_buf(),
        message,
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| invalid(format!("cannot generate CA key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tollgate");
    dn.push(DnType::CommonName, format!("tollgate MITM CA {}", hex_id()));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - TimeDuration::days(1);
    params.not_after = now + TimeDuration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(super::random_serial());
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid(format!("cannot sign CA certificate: {e}")))?;
    for path in [cert_path, key_path] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
    }
    write_new_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new_file(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(CaStatus::Created)
}

/// Loads the CA from PEM files.
pub fn load_ca(cert_path: &Path, key_path: &Path) -> Result<CertificateAuthority, CaError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| CaError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Invalid {
        path: key_path.to_path_buf(),
        message: format!("not a usable private key: {e}"),
    })?;
    let der =
        rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            CaError::Invalid {
                path: cert_path.to_path_buf(),
                message: format!("not a PEM certificate: {e}"),
            }
        })?;
    let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| CaError::Invalid {
        path: cert_path.to_path_buf(),
        message: format!("not a usable CA certificate: {e}"),
    })?;
    Ok(CertificateAuthority {
        issuer,
        cert_der: der,
    })
}

/// Creates `dir` (and parents) with mode 0700 if absent.
pub fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| CaError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file that must not exist yet, with `mode`, and syncs it.
pub(crate) fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

fn hex_id() -> String {
    let mut bytes = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    crate::text::hex(&bytes)
}
