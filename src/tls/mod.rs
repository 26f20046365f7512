//! TLS: the MITM CA, minted leaf certificates, and the upstream client config.
//!
//! Exactly one crypto provider is used everywhere: aws-lc-rs.

pub mod ca;
pub mod client;
pub mod leaf;
pub mod upstream;

pub use ca::{ensure_ca, load_ca, CaStatus, CertificateAuthority};
pub use leaf::LeafIssuer;
pub use upstream::upstream_client_config;

use std::sync::Arc;

/// The process-wide crypto provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A random positive 128-bit certificate serial.
pub fn random_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    // aws-lc's RNG does not fail in practice; a zero serial would still be unique
    // enough per leaf key, so an error here is not worth refusing a connection.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes[0] &= 0x7F;
    bytes[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}
