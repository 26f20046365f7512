//! Minting leaf certificates for intercepted hosts, and caching the resulting
//! server configs so each host is minted once.

use super::ca::CertificateAuthority;
use moka::future::Cache;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::Duration;
use time::{Duration as TimeDuration, OffsetDateTime};

/// Validity of a minted leaf.
const LEAF_VALIDITY: TimeDuration = TimeDuration::days(7);
/// How far back `not_before` is set, to tolerate client clock skew.
const LEAF_BACKDATE: TimeDuration = TimeDuration::days(1);
/// Cached configs are dropped well before their certificate expires.
const CACHE_TTL: Duration = Duration::from_secs(6 * 24 * 3600);
/// Hosts kept in the cache.
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;

/// Minting failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot mint a certificate for {host}: {message}")]
pub struct MintError {
    /// Host asked for.
    pub host: String,
    /// Why.
    pub message: String,
}

/// Issues per-host TLS server configs signed by the CA.
pub struct LeafIssuer {
    ca: CertificateAuthority,
    provider: Arc<CryptoProvider>,
    cache: Cache<String, Arc<ServerConfig>>,
}

impl std::fmt::Debug for LeafIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafIssuer")
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

impl LeafIssuer {
    /// An issuer with a cache of `capacity` hosts.
    pub fn new(ca: CertificateAuthority, capacity: u64) -> Self {
        Self {
            ca,
            provider: super::provider(),
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// The server config for `host`, minted on first use. Concurrent first requests
    /// for one host wait for a single mint.
    pub async fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, MintError> {
        self.cache
            .try_get_with(host.to_string(), async {
                self.build_server_config(host).map(Arc::new)
            })
            .await
            .map_err(|e: Arc<MintError>| (*e).clone())
    }

    /// Mints a fresh config for `host`, bypassing the cache (for benches).
    pub fn build_server_config(&self, host: &str) -> Result<ServerConfig, MintError> {
        let fail = |message: String| MintError {
            host: host.to_string(),
            message,
        };
        let (chain, key) = self.mint_leaf(host).map_err(|e| fail(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| fail(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Mints a leaf for `host` with its own P-256 key, a random serial and a
    /// backdated `not_before`. Returns the chain (leaf, CA) and the leaf key.
    pub fn mint_leaf(
        &self,
        host: &str,
    ) -> Result<
        (
            Vec<rustls_pki_types::CertificateDer<'static>>,
            PrivateKeyDer<'static>,
        ),
        rcgen::Error,
    > {
        // SECURITY: the leaf has its own key; the CA key only signs.
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(super::random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&leaf_key, &self.ca.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        Ok((vec![cert.der().clone(), self.ca.cert_der.clone()], key))
    }

    /// Number of cached hosts (approximate; for tests and metrics).
    pub async fn cached_hosts(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}
