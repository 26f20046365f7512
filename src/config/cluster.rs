//! The `cluster:` block: Redis (or Valkey) as the state every replica shares.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `cluster:` settings; absent for one process.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS).
    pub redis: String,
    /// File holding the Redis password (AUTH), if Redis wants one.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA(s) a `rediss://` server's certificate is checked
    /// against; without it, the system roots.
    pub ca_file: Option<PathBuf>,
    /// This replica's name: its audit stream, its holds and leases.
    pub replica_id: String,
}

/// The `cluster` block as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterWire {
    #[serde(default)]
    redis: Option<String>,
    #[serde(default)]
    redis_password_file: Option<PathBuf>,
    #[serde(default)]
    redis_ca_file: Option<PathBuf>,
    #[serde(default)]
    replica_id: Option<String>,
}

/// Longest replica id: it names keys, channels and the audit stream.
const MAX_REPLICA_ID: usize = 64;

pub(super) fn cluster_config(
    wire: ClusterWire,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<ClusterConfig, String> {
    let redis = wire
        .redis
        .ok_or("cluster needs `redis: redis://host:port/db` (or rediss://)")?;
    let url = redis.trim().to_string();
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| format!("cluster.redis `{url}` must start with redis:// or rediss://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // SECURITY: the config is often kept in git or a ConfigMap; the password
    // belongs in a file mounted from a Secret.
    if authority.contains('@') {
        return Err(
            "cluster.redis must not carry credentials; put the password in redis_password_file"
                .into(),
        );
    }
    if authority.is_empty() {
        return Err(format!("cluster.redis `{url}` names no host"));
    }
    let replica_id = match wire.replica_id {
        Some(id) => id,
        None => host_name().ok_or(
            "cluster.replica_id is not set and the host name cannot be read; set replica_id",
        )?,
    };
    if replica_id.is_empty()
        || replica_id.len() > MAX_REPLICA_ID
        || !replica_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "cluster.replica_id `{replica_id}` must be 1 to {MAX_REPLICA_ID} letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok(ClusterConfig {
        redis: url,
        password_file: wire.redis_password_file.map(|p| rel(&p)),
        ca_file: wire.redis_ca_file.map(|p| rel(&p)),
        replica_id,
    })
}

/// The host name (a pod's name on Kubernetes).
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ClusterConfig, String> {
        let wire: ClusterWire = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        cluster_config(wire, &|p: &Path| Path::new("/etc/t").join(p))
    }

    #[test]
    fn urls_ids_and_files() {
        let c = parse("redis: rediss://r:6380/2\nredis_password_file: pw\nreplica_id: tg-0\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.redis, "rediss://r:6380/2");
        assert_eq!(c.password_file.as_deref(), Some(Path::new("/etc/t/pw")));
        assert_eq!(c.replica_id, "tg-0");
        assert!(parse("redis: redis://127.0.0.1:6379\n").is_ok_and(|c| !c.replica_id.is_empty()));
        for (bad, says) in [
            ("replica_id: a\n", "needs `redis"),
            ("redis: http://r\n", "must start with"),
            ("redis: redis://:pw@r:6379\n", "must not carry credentials"),
            ("redis: redis:///0\n", "names no host"),
            ("redis: redis://r\nreplica_id: a/b\n", "replica_id `a/b`"),
            ("redis: redis://r\nreplica_id: ''\n", "replica_id ``"),
            ("redis: redis://r\npassword: x\n", "unknown field"),
        ] {
            let err = parse(bad).err().unwrap_or_default();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
