//! Minting leaf certificates for intercepted hosts, and caching the resulting
//! server configs so each host is minted once.

use super::ca::CertificateAuthority;
use crate::metrics::CacheCounters;
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

impl LeafIssuer {
    /// The CA certificate in PEM (what sandboxes must trust).
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }
}

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
    counters: CacheCounters,
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
            counters: CacheCounters::default(),
        }
    }

    /// Counts cache hits and misses into `counters` (the metrics' own).
    pub fn with_cache_counters(mut self, counters: CacheCounters) -> Self {
        self.counters = counters;
        self
    }

    /// The server config for `host`, minted on first use. Concurrent first requests
    /// for one host wait for a single mint.
    pub async fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, MintError> {
        let entry = self
            .cache
            .entry_by_ref(host)
            .or_try_insert_with(async { self.build_server_config(host).map(Arc::new) })
            .await;
        // Not fresh: it was cached, or minted by a concurrent first lookup that
        // this one waited for. A failed mint counts as a miss.
        match &entry {
            Ok(entry) if !entry.is_fresh() => self.counters.hit(),
            _ => self.counters.miss(),
        }
        entry
            .map(moka::Entry::into_value)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{ensure_ca, load_ca};
    use x509_parser::prelude::*;

    fn issuer() -> (tempfile::TempDir, LeafIssuer) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        ensure_ca(&cert, &key).unwrap();
        (dir, LeafIssuer::new(load_ca(&cert, &key).unwrap(), 100))
    }

    #[test]
    fn leaf_has_own_p256_key_random_serial_and_backdated_validity() {
        let (_dir, issuer) = issuer();
        let (chain_a, key_a) = issuer.mint_leaf("api.example.com").unwrap();
        let (chain_b, _) = issuer.mint_leaf("api.example.com").unwrap();
        assert_eq!(chain_a.len(), 2, "leaf plus CA");
        let (_, leaf) = X509Certificate::from_der(&chain_a[0]).unwrap();
        let (_, leaf_b) = X509Certificate::from_der(&chain_b[0]).unwrap();
        let (_, ca) = X509Certificate::from_der(&chain_a[1]).unwrap();

        assert_ne!(
            leaf.public_key().raw,
            ca.public_key().raw,
            "leaf must not reuse the CA key"
        );
        assert_ne!(
            leaf.public_key().raw,
            leaf_b.public_key().raw,
            "each mint has a fresh key"
        );
        assert_eq!(
            leaf.public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok()),
            Some(x509_parser::oid_registry::OID_EC_P256)
        );
        assert_ne!(leaf.raw_serial(), leaf_b.raw_serial(), "serials are random");
        assert!(leaf.raw_serial().len() >= 16);
        let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            leaf.validity().not_before.timestamp() < now - 3600,
            "not_before is backdated"
        );
        assert!(leaf.validity().not_after.timestamp() > now);
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        assert!(sans
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("api.example.com"))));
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        assert!(matches!(key_a, PrivateKeyDer::Pkcs8(_)));
    }

    #[test]
    fn ip_hosts_get_ip_sans() {
        let (_dir, issuer) = issuer();
        let (chain, _) = issuer.mint_leaf("10.1.2.3").unwrap();
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        assert!(sans
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::IPAddress(ip) if *ip == [10, 1, 2, 3])));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_requests_mint_once() {
        let (_dir, issuer) = issuer();
        let issuer = std::sync::Arc::new(issuer);
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let issuer = issuer.clone();
                tokio::spawn(async move { issuer.server_config("once.example.com").await.unwrap() })
            })
            .collect();
        let mut configs = Vec::new();
        for t in tasks {
            configs.push(t.await.unwrap());
        }
        assert!(
            configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])),
            "one mint shared by all"
        );
        let again = issuer.server_config("once.example.com").await.unwrap();
        assert!(
            Arc::ptr_eq(&again, &configs[0]),
            "cached across connections"
        );
        let other = issuer.server_config("other.example.com").await.unwrap();
        assert!(!Arc::ptr_eq(&other, &configs[0]));
        assert_eq!(issuer.cached_hosts().await, 2);
        assert_eq!(
            (issuer.counters.misses(), issuer.counters.hits()),
            (2, 32),
            "one miss per host minted, every other lookup a hit"
        );
    }
}
