//! How the launcher reaches tollgate: an in-process proxy (no `--admin`), or a
//! running one over its admin API and the task's channel (`--admin URL`).

use super::error::LaunchError;
use crate::admin::client::AdminClient;
use crate::admin::{channel, Admin, NewTask};
use crate::config::Config;
use crate::proxy::state::ProxyState;
use crate::tasks::Task;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A task registered with tollgate, and the way to carry its sandbox's connections.
pub struct TaskLink {
    /// Task id.
    pub id: String,
    /// Its proxy token.
    pub token: String,
    /// The CA certificate the sandbox must trust.
    pub ca_pem: String,
    via: Via,
}

enum Via {
    Embedded {
        state: Arc<ProxyState>,
        admin: Arc<Admin>,
        task: Arc<Task>,
        shutdown: CancellationToken,
    },
    Remote {
        admin: AdminClient,
        channel: String,
        /// Cancelled when the launcher ends the task itself.
        closing: CancellationToken,
    },
}

impl std::fmt::Debug for TaskLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLink")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TaskLink {
    /// Starts tollgate in this process from `config` and registers a task under
    /// `policy`. The sandbox is its only client: no proxy listener, and the
    /// admin API only when the policy has `approve` rules, for the operators.
    pub async fn embedded(
        config: &Config,
        policy: &str,
        ttl: Option<String>,
    ) -> Result<Self, LaunchError> {
        let shutdown = CancellationToken::new();
        let state = Arc::new(
            crate::serve::build_state(config, shutdown.clone())
                .map_err(|e| LaunchError::Proxy(e.to_string()))?,
        );
        // A policy with `approve` rules needs operators to reach this run: it
        // gets the config's admin API (and token). Otherwise nothing listens.
        let asks_operators = state.policies.current().get(policy).is_some_and(|p| {
            p.rules
                .iter()
                .any(|r| r.action == crate::policy::Action::Approve)
        });
        let admin_token = if asks_operators {
            crate::admin::load_or_create_token(&config.admin_token_file)
                .map_err(LaunchError::Proxy)?
        } else {
            let mut random = [0u8; 32];
            aws_lc_rs::rand::fill(&mut random)
                .map_err(|_| LaunchError::Proxy("random bytes unavailable".into()))?;
            crate::text::hex(&random)
        };
        let admin = Arc::new(Admin::new(
            state.clone(),
            admin_token,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ));
        if asks_operators {
            match crate::admin::listen::serve_admin(admin.clone(), &config.admin_listen)
                .await
            {
                Ok(at) => eprintln!(
                    "tollgate: policy {policy} holds some requests for approval; answer with `tollgate approvals list|approve|deny` (admin API on {at})"
                ),
                Err(err) => eprintln!(
                    "tollgate: warning: policy {policy} holds some requests for approval, but nobody can answer them ({err}); they will time out"
                ),
            }
        }
        let created = admin
            .create(NewTask {
                policy: policy.to_string(),
                ttl,
                source: None,
                channel: false,
            })
            .map_err(|err| {
                if err.code == "unknown_policy" {
                    let known: Vec<String> = state
                        .policies
                        .current()
                        .iter()
                        .map(|p| p.name.clone())
                        .collect();
                    LaunchError::UnknownPolicy(format!(
                        "{} (loaded from {}: {})",
                        err.message,
                        config.policies_dir.display(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                } else {
                    LaunchError::Proxy(err.message)
                }
            })?;
        Ok(Self {
            id: created.task.id.clone(),
            token: created.token,
            ca_pem: state.leaves.ca_pem(),
            via: Via::Embedded {
                state,
                admin,
                task: created.task,
                shutdown,
            },
        })
    }

    /// Registers a task with the tollgate whose admin API is at `url`, opens its
    /// channel and holds the channel's control connection.
    pub async fn remote(
        url: &str,
        admin_token: String,
        policy: &str,
        ttl: Option<String>,
    ) -> Result<Self, LaunchError> {
        let admin = AdminClient::new(url, admin_token)?;
        let mut body = json!({"policy": policy, "channel": true});
        if let Some(ttl) = ttl {
            body["ttl"] = json!(ttl);
        }
        let (status, answer) = admin.call(Method::POST, "/v1/tasks", Some(body)).await?;
        if status != StatusCode::CREATED {
            return Err(admin_refusal(url, status, &answer));
        }
        let field = |name: &str| {
            answer[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| LaunchError::Admin(format!("{url}: the answer has no `{name}`")))
        };
        let (id, token, channel_name, ca_pem) = (
            field("id")?,
            field("token")?,
            field("channel")?,
            field("ca_cert")?,
        );
        let control = async {
            let mut control = channel::connect(&channel_name).await?;
            control.write_all(&[channel::CONTROL]).await?;
            Ok::<_, std::io::Error>(control)
        }
        .await
        .map_err(|e| {
            LaunchError::Admin(format!(
                "cannot connect to the task's channel {channel_name}: {e} (the launcher must run on the proxy's host, in its network namespace)"
            ))
        })?;
        let closing = CancellationToken::new();
        tokio::spawn(hold_control(control, id.clone(), closing.clone()));
        Ok(Self {
            id,
            token,
            ca_pem,
            via: Via::Remote {
                admin,
                channel: channel_name,
                closing,
            },
        })
    }

    /// Carries one sandbox connection to tollgate, in the background.
    pub fn carry(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        match &self.via {
            Via::Embedded { state, task, .. } => {
                let serve =
                    crate::proxy::channel::serve_channel(state.clone(), task.clone(), peer, stream);
                state.tracker.spawn(serve);
            }
            Via::Remote { channel, .. } => {
                let channel = channel.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    let mut upstream = match channel::connect(&channel).await {
                        Ok(upstream) => upstream,
                        Err(err) => {
                            return tracing::warn!(error = %err, "the task's channel is gone");
                        }
                    };
                    if channel::write_data_preamble(&mut upstream, peer)
                        .await
                        .is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                    }
                });
            }
        }
    }

    /// Ends the task (token revoked, tunnels closed, leases revoked) and, for an
    /// in-process proxy, drains it and closes its audit trail.
    pub async fn close(&self) {
        match &self.via {
            Via::Embedded {
                state,
                admin,
                shutdown,
                ..
            } => {
                if let Err(err) = admin.end(&self.id).await {
                    tracing::warn!(task = %self.id, error = %err, "task ended here only");
                }
                shutdown.cancel();
                state.tracker.close();
                let _ = tokio::time::timeout(Duration::from_secs(2), state.tracker.wait()).await;
                let audit = state.audit.clone();
                let _ = tokio::task::spawn_blocking(move || audit.shutdown(Duration::from_secs(5)))
                    .await;
            }
            Via::Remote { admin, closing, .. } => {
                closing.cancel();
                let path = format!("/v1/tasks/{}", self.id);
                match admin.call(Method::DELETE, &path, None).await {
                    Ok((status, _)) if status.is_success() || status == StatusCode::NOT_FOUND => {}
                    Ok((status, answer)) => {
                        tracing::warn!(%status, %answer, task = %self.id, "ending the task failed; it ends when the launcher's channel closes")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, task = %self.id, "ending the task failed; it ends when the launcher's channel closes")
                    }
                }
            }
        }
    }
}

/// Holds the channel's control connection for the whole run: when the launcher
/// exits or is killed, it closes and tollgate ends the task by itself. When
/// tollgate closes it first, the task was ended there (DELETE, expiry).
async fn hold_control(
    mut control: tokio::net::UnixStream,
    task: String,
    closing: CancellationToken,
) {
    let mut byte = [0u8; 1];
    loop {
        tokio::select! {
            _ = closing.cancelled() => return,
            read = tokio::io::AsyncReadExt::read(&mut control, &mut byte) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    eprintln!("tollgate run: tollgate ended task {task}; the sandbox has no way out any more");
}

fn admin_refusal(url: &str, status: StatusCode, answer: &Value) -> LaunchError {
    let message = answer["message"].as_str().unwrap_or("").to_string();
    match (status, answer["error"].as_str()) {
        (StatusCode::UNAUTHORIZED, _) => LaunchError::Admin(format!(
            "{url} refused the admin token (give it with --admin-token-file or $TOLLGATE_ADMIN_TOKEN)"
        )),
        (_, Some("unknown_policy")) => LaunchError::UnknownPolicy(message),
        _ => LaunchError::Admin(format!("{url} answered {status}: {message}")),
    }
}
