//! The TLS client config for upstream connections: always verified, against the
//! webpki roots plus `upstream.extra_roots`. There is no switch to turn it off.

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};

/// An extra root file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("upstream.extra_roots {path}: {message}")]
pub struct RootsError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// Builds the verified client config (no ALPN set; the connector sets it).
pub fn upstream_client_config(extra_roots: &[PathBuf]) -> Result<ClientConfig, RootsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_roots {
        add_pem_roots(&mut roots, path)?;
    }
    ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RootsError {
            path: PathBuf::new(),
            message: e.to_string(),
        })
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), RootsError> {
    let err = |message: String| RootsError {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificates in file".into()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}
