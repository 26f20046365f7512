//! Lua scripts sent inside pipelines: by hash (`EVALSHA`), and when Redis does
//! not know a script (it restarted, or its script cache was flushed) the
//! scripts are loaded and the pipeline is sent once more. Every pipeline that
//! goes through here must be safe to send twice: its commands are reads, or
//! scripts, and a script Redis did not know did nothing.

use super::{Cluster, ClusterUnavailable};
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, Script, ServerErrorKind, ToRedisArgs};

/// `EVALSHA` of `script` with `keys` and `args`.
pub fn evalsha<K: ToRedisArgs, A: ToRedisArgs>(script: &Script, keys: &[K], args: A) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

/// Sends `pipe`, whose scripts are among `scripts`, on the command connection.
pub async fn query<T: FromRedisValue>(
    cluster: &Cluster,
    pipe: &Pipeline,
    scripts: &[&Script],
) -> Result<T, ClusterUnavailable> {
    let mut conn = cluster.conn();
    let answer = match pipe.query_async(&mut conn).await {
        Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            for script in scripts {
                script.load_async(&mut conn).await?;
            }
            pipe.query_async(&mut conn).await?
        }
        other => other?,
    };
    cluster.answered();
    Ok(answer)
}
