//! Opening the connections to Redis from `cluster:`: TLS for `rediss://`
//! through rustls (the process's aws-lc-rs provider), AUTH from
//! `redis_password_file`, and short timeouts so an outage is seen quickly.

use super::Cluster;
use crate::config::ClusterConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one command may take before it counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a connection attempt may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// Builds the client and the (lazily connected) command connection. Only a
/// configuration problem fails here; an unreachable Redis makes the replica
/// unavailable until it answers.
pub fn open(config: &ClusterConfig) -> Result<Cluster, String> {
    let mut info = config
        .redis
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("cluster.redis: {e}"))?;
    if let Some(file) = &config.password_file {
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("cluster.redis_password_file {}: {e}", file.display()))?;
        let password = password.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(format!(
                "cluster.redis_password_file {} is empty",
                file.display()
            ));
        }
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let tls = config.redis.starts_with("rediss://");
    let client = match (&config.ca_file, tls) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cluster.redis_ca_file {}: {e}", ca.display()))?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        (Some(_), false) => {
            return Err("cluster.redis_ca_file is set but cluster.redis is not rediss://".into())
        }
        (None, _) => redis::Client::open(info),
    }
    .map_err(|e| format!("cluster.redis: {e}"))?;
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
        .map_err(|e| format!("cluster.redis: {e}"))?;
    Ok(Cluster {
        replica: config.replica_id.clone(),
        client,
        conn,
        started: Instant::now(),
        last_answer_ms: AtomicU64::new(0),
        listening: AtomicBool::new(false),
    })
}

/// Opens the cluster and starts its health check; the subscriber starts
/// once the proxy state exists ([`super::bus::listen`]).
pub fn start(
    config: &ClusterConfig,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Arc<Cluster>, String> {
    let cluster = Arc::new(open(config)?);
    tokio::spawn(cluster.clone().watch_health(stop));
    Ok(cluster)
}
