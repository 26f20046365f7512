//! The admin API on `admin.listen` (never on the proxy port): bearer-token auth,
//! `/healthz`, `/readyz`, `/metrics`, `/v1/tasks` for tasks with self-verifying tokens,
//! `/v1/approvals` for requests held by `action: approve` rules, `/v1/reload`.

pub mod channel;
pub mod client;
pub mod listen;

use crate::body::{full_body, ProxyBody};
use crate::cluster::ClusterUnavailable;
use crate::proxy::state::ProxyState;
use crate::task_token::{now_secs, Claims};
use crate::tasks::Task;
use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest task TTL the API grants.
pub const MAX_TASK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// TTL when a request names none.
pub const DEFAULT_TASK_TTL: Duration = Duration::from_secs(3600);
/// Largest request body the API reads.
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub use crate::tasks::TaskInfo;

/// What the admin API shares.
pub struct Admin {
    state: Arc<ProxyState>,
    token: String,
    proxy_addr: SocketAddr,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admin(..)")
    }
}

/// Reads the admin token at `path`, creating a random one (0600) if absent.
pub fn load_or_create_token(path: &Path) -> Result<String, String> {
    if !path.exists() {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "random bytes unavailable".to_string())?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::tls::ca::create_private_dir(dir).map_err(|e| e.to_string())?;
        }
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        crate::tls::ca::write_new_file(path, format!("{token}\n").as_bytes(), 0o600)
            .map_err(|e| e.to_string())?;
    }
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .trim()
        .to_string();
    if token.len() < 16 {
        return Err(format!(
            "{}: the admin token must be at least 16 characters",
            path.display()
        ));
    }
    Ok(token)
}

impl Admin {
    /// The API over `state`; proxy URLs name `proxy_addr`.
    pub fn new(state: Arc<ProxyState>, token: String, proxy_addr: SocketAddr) -> Self {
        Self {
            state,
            token,
            proxy_addr,
        }
    }

    /// Handles one admin request.
    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let path = req.uri().path().to_string();
        if req.method() == Method::GET && path == "/healthz" {
            return reply(StatusCode::OK, json!({"status": "ok"}));
        }
        if req.method() == Method::GET && path == "/readyz" {
            return self.readiness();
        }
        if req.method() == Method::GET && path == "/metrics" {
            return self.state.metrics.response(&self.state.gauges());
        }
        if !self.authorized(&req) {
            let mut response = reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": "send Authorization: Bearer <admin token>"}),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"tollgate-admin\""),
            );
            return response;
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method().clone(), segments.as_slice()) {
            (Method::POST, ["v1", "tasks"]) => self.create_task(req).await,
            (Method::GET, ["v1", "tasks"]) => match self.all_tasks().await {
                Ok(tasks) => reply(StatusCode::OK, json!(tasks)),
                Err(err) => cluster_unavailable(&err),
            },
            (Method::GET, ["v1", "tasks", id]) => {
                let found = match self.find_task(id).await {
                    Ok(found) => found,
                    Err(err) => return cluster_unavailable(&err),
                };
                let shown = found.map(|info| (json!(info), info.policy)).or_else(|| {
                    // A static task from the config: no expiry, no token to show.
                    let task = self.state.tasks.iter().find(|t| t.id == *id)?;
                    let body = json!({"id": task.id, "policy": task.policy, "source": task.source, "expires_at": null, "static": true});
                    Some((body, task.policy.clone()))
                });
                match shown {
                    Some((mut body, policy)) => {
                        let expires_at = body["expires_at"].as_u64();
                        if let Err(err) = self.refresh_budgets(id, &policy, expires_at).await {
                            return cluster_unavailable(&err);
                        }
                        body["minted"] = json!(self.state.minter.minted_for(id, &policy));
                        body["budgets"] = self.budgets(id, &policy);
                        reply(StatusCode::OK, body)
                    }
                    None => not_found("no such task"),
                }
            }
            (Method::DELETE, ["v1", "tasks", id]) => self.end_task(id).await,
            (Method::GET, ["v1", "approvals"]) => match &self.state.cluster {
                None => reply(StatusCode::OK, json!(self.state.approvals.pending())),
                Some(cluster) => match crate::cluster::holds::list(cluster).await {
                    Ok(holds) => {
                        let shown: Vec<_> = holds.iter().map(|h| h.shown().view).collect();
                        reply(StatusCode::OK, json!(shown))
                    }
                    Err(err) => cluster_unavailable(&err),
                },
            },
            (Method::GET, ["v1", "approvals", id]) => {
                let shown = match &self.state.cluster {
                    None => self.state.approvals.detail(id).map(|d| json!(d)),
                    Some(cluster) => match crate::cluster::holds::lookup(cluster, id).await {
                        Ok(hold) => hold.map(|h| json!(h.shown())),
                        Err(err) => return cluster_unavailable(&err),
                    },
                };
                match shown {
                    Some(detail) => reply(StatusCode::OK, detail),
                    None => not_found(&format!(
                        "no pending approval {id} (already answered, timed out or withdrawn)"
                    )),
                }
            }
            (Method::POST, ["v1", "approvals", id, verb @ ("approve" | "deny")]) => {
                let (id, approve) = (id.to_string(), *verb == "approve");
                self.answer(req, &id, approve).await
            }
            (Method::POST, ["v1", "reload"]) => match crate::reload::reload_policies(&self.state) {
                Ok(count) => reply(StatusCode::OK, json!({"policies": count})),
                Err(errors) => {
                    let errors: Vec<_> = errors
                            .iter()
                            .map(|e| json!({"file": e.file.display().to_string(), "line": e.line, "message": e.message}))
                            .collect();
                    reply(StatusCode::UNPROCESSABLE_ENTITY, json!({"errors": errors}))
                }
            },
            _ => not_found("no such endpoint"),
        }
    }

    /// `/readyz`: 200 while this replica can serve (policies loaded, audit
    /// writable, Redis reachable in cluster mode), else 503 saying what is wrong.
    fn readiness(&self) -> Response<ProxyBody> {
        let mut problems = Vec::new();
        if let Err(err) = self.state.audit.ensure_writable() {
            problems.push(json!({"check": "audit", "message": err.to_string()}));
        }
        if let Err(err) = self.state.ensure_cluster() {
            problems.push(json!({"check": "cluster", "message": err.to_string()}));
        }
        if problems.is_empty() {
            reply(
                StatusCode::OK,
                json!({"status": "ready", "policies": self.state.policies.current().len()}),
            )
        } else {
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not_ready", "problems": problems}),
            )
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        // SECURITY: constant time, so the token cannot be found byte by byte.
        aws_lc_rs::constant_time::verify_slices_are_equal(
            given.trim().as_bytes(),
            self.token.as_bytes(),
        )
        .is_ok()
    }

    fn live_tasks(&self) -> Vec<TaskInfo> {
        self.state.created.live(now_secs(), &self.state.tasks)
    }

    /// Cluster mode: reads task `id`'s budget use from Redis, when `policy`
    /// has budgets, so that every replica shows the fleet's numbers.
    async fn refresh_budgets(
        &self,
        id: &str,
        policy: &str,
        expires_at: Option<u64>,
    ) -> Result<(), ClusterUnavailable> {
        let Some(cluster) = &self.state.cluster else {
            return Ok(());
        };
        let budgeted = self
            .state
            .policies
            .current()
            .get(policy)
            .is_some_and(|p| !p.budgets.is_empty());
        if !budgeted {
            return Ok(());
        }
        crate::cluster::ledger::refresh(cluster, &*self.state.budgets, id, expires_at).await
    }

    /// `{"requests":{"used":3,"limit":3},...}` for the budgets of `policy`.
    fn budgets(&self, id: &str, policy: &str) -> serde_json::Value {
        let Some(policy) = self.state.policies.current().get(policy) else {
            return json!({});
        };
        let account = self.state.budgets.account(id);
        let shown: serde_json::Map<String, serde_json::Value> =
            crate::budget::ledger::report(&*account, &policy.budgets)
                .into_iter()
                .map(|(meter, used)| (meter.name().to_string(), json!(used)))
                .collect();
        serde_json::Value::Object(shown)
    }

    fn task(&self, id: &str) -> Option<TaskInfo> {
        self.live_tasks().into_iter().find(|t| t.id == id)
    }

    /// Task `id`: created here, or (cluster mode) by any replica.
    async fn find_task(&self, id: &str) -> Result<Option<TaskInfo>, ClusterUnavailable> {
        if let Some(info) = self.task(id) {
            return Ok(Some(info));
        }
        let Some(cluster) = &self.state.cluster else {
            return Ok(None);
        };
        let listed = crate::cluster::tasks::lookup(cluster, id).await?;
        Ok(listed
            .and_then(|text| serde_json::from_str::<TaskInfo>(&text).ok())
            .filter(|info| info.expires_at > now_secs()))
    }

    /// Every live task: this replica's, or (cluster mode) every replica's.
    async fn all_tasks(&self) -> Result<Vec<TaskInfo>, ClusterUnavailable> {
        let Some(cluster) = &self.state.cluster else {
            return Ok(self.live_tasks());
        };
        let now = now_secs();
        Ok(crate::cluster::tasks::list(cluster)
            .await?
            .iter()
            .filter_map(|text| serde_json::from_str::<TaskInfo>(text).ok())
            .filter(|info| info.expires_at > now)
            .collect())
    }

    async fn create_task(self: &Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let body = match http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return bad_request("the body could not be read (at most 64 KiB)"),
        };
        let new: NewTask = match serde_json::from_slice(&body) {
            Ok(new) => new,
            Err(e) => return bad_request(&format!("invalid task request: {e}")),
        };
        let with_channel = new.channel;
        let created = match self.create(new) {
            Ok(created) => created,
            Err(err) => {
                return reply(
                    err.status,
                    json!({"error": err.code, "message": err.message}),
                )
            }
        };
        if let Err(err) = self.list_in_cluster(&created.task.id).await {
            // Another replica could neither show nor end it: no such task.
            let _ = self.end(&created.task.id).await;
            return cluster_unavailable(&err);
        }
        let mut body = json!({
            "id": created.task.id,
            "token": created.token,
            "proxy_url": format!("http://{}:{}@{}", created.task.id, created.token, self.proxy_addr),
            "expires_at": crate::text::rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_secs(created.expires_at)
            ),
            "policy": created.task.policy,
        });
        if with_channel {
            let admin = self.clone();
            let id = created.task.id.clone();
            let end_task = async move {
                if let Err(err) = admin.end(&id).await {
                    tracing::warn!(task = %id, error = %err, "task ended here only");
                }
            };
            match channel::open(self.state.clone(), created.task.clone(), end_task) {
                Ok(name) => {
                    body["channel"] = json!(name);
                    body["ca_cert"] = json!(self.state.leaves.ca_pem());
                }
                Err(err) => {
                    let _ = self.end(&created.task.id).await;
                    return reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "channel", "message": format!("cannot open the task's channel: {err}")}),
                    );
                }
            }
        }
        reply(StatusCode::CREATED, body)
    }

    /// Cluster mode: lists task `id` (created here) for every replica.
    async fn list_in_cluster(&self, id: &str) -> Result<(), ClusterUnavailable> {
        let (Some(cluster), Some(info)) = (&self.state.cluster, self.task(id)) else {
            return Ok(());
        };
        let text = json!(info).to_string();
        crate::cluster::tasks::register(cluster, id, &text, info.expires_at).await
    }

    /// Creates a task with a self-verifying token. The caller keeps the token; this
    /// process only lists the task.
    pub fn create(&self, new: NewTask) -> Result<CreatedTask, ApiError> {
        if self.state.policies.current().get(&new.policy).is_none() {
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "unknown_policy",
                message: format!("no policy named `{}` is loaded", new.policy),
            });
        }
        if new.channel && new.source.is_some() {
            return Err(ApiError::bad_request(
                "a task with a channel is identified by it: leave out source",
            ));
        }
        let ttl = match new.ttl.as_deref().map(crate::duration::parse_duration) {
            None => DEFAULT_TASK_TTL,
            Some(Ok(ttl)) if !ttl.is_zero() && ttl <= MAX_TASK_TTL => ttl,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "ttl must be a duration such as 30m or 1h, at most 7 days",
                ))
            }
        };
        let Some(signer) = self.state.tasks.signer() else {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "no_task_key",
                message: "this proxy has no task key".into(),
            });
        };
        let mut id_bytes = [0u8; 8];
        aws_lc_rs::rand::fill(&mut id_bytes).map_err(|_| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "random",
            message: "random bytes unavailable".into(),
        })?;
        let id = format!("t-{}", crate::text::hex(&id_bytes));
        let claims = Claims {
            id: id.clone(),
            policy: new.policy.clone(),
            exp: now_secs() + ttl.as_secs(),
            src: new.source,
        };
        let token = signer.mint(&claims);
        let task = self
            .state
            .tasks
            .verify_token(
                &id,
                &token,
                new.source.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            )
            .ok_or_else(|| ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "task_key",
                message: "a freshly minted task token did not verify".into(),
            })?;
        let info = TaskInfo {
            id: id.clone(),
            policy: new.policy,
            expires_at: claims.exp,
            source: new.source,
        };
        self.state.created.insert(info);
        tracing::info!(task = %id, policy = %task.policy, ttl_s = ttl.as_secs(), "task created");
        Ok(CreatedTask {
            task,
            token,
            expires_at: claims.exp,
        })
    }

    async fn answer(&self, req: Request<Incoming>, id: &str, approve: bool) -> Response<ProxyBody> {
        let body = match http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return bad_request("the body could not be read (at most 64 KiB)"),
        };
        let mut answer: crate::approvals::Answer = if body.iter().all(u8::is_ascii_whitespace) {
            crate::approvals::Answer::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(answer) => answer,
                Err(e) => return bad_request(&format!("invalid answer: {e}")),
            }
        };
        if answer.by.as_deref().is_none_or(|by| by.trim().is_empty()) {
            answer.by = Some("admin-api".into());
        }
        if let Some(cluster) = &self.state.cluster {
            return self.answer_in_cluster(cluster, id, approve, answer).await;
        }
        let by = answer.by.clone();
        let outcome = if approve {
            self.state
                .approvals
                .approve(id, answer)
                .map(|grant| json!(crate::approvals::Decided::approved(id, by, grant)))
        } else {
            self.state
                .approvals
                .deny(id, answer)
                .map(|()| json!(crate::approvals::Decided::denied(id, by)))
        };
        match outcome {
            Ok(body) => reply(StatusCode::OK, body),
            Err(err @ crate::approvals::AnswerError::NotPending(_)) => not_found(&err.to_string()),
            Err(err) => bad_request(&err.to_string()),
        }
    }

    /// Cluster mode: a hold pending here is answered here; one held by
    /// another replica gets the answer through Redis, and the reply is its
    /// outcome there, or 202 when that did not come back in time.
    async fn answer_in_cluster(
        &self,
        cluster: &std::sync::Arc<crate::cluster::Cluster>,
        id: &str,
        approve: bool,
        answer: crate::approvals::Answer,
    ) -> Response<ProxyBody> {
        use crate::cluster::holds::{self, AnswerMessage, AnswerResult};
        let result = if self.state.approvals.is_pending(id) {
            crate::replicas::answer_here(&self.state, id, approve, answer).await
        } else {
            let hold = match holds::lookup(cluster, id).await {
                Ok(Some(hold)) if hold.replica != cluster.replica() => hold,
                // Not pending anywhere, or ended here just now.
                Ok(_) => {
                    return not_found(
                        &crate::approvals::AnswerError::NotPending(id.to_string()).to_string(),
                    )
                }
                Err(err) => return cluster_unavailable(&err),
            };
            let Some(reply_to) = holds::reply_nonce() else {
                return cluster_unavailable(&ClusterUnavailable("random bytes unavailable".into()));
            };
            let message = AnswerMessage {
                hold: id.to_string(),
                replica: hold.replica.clone(),
                approve,
                answer,
                reply: reply_to,
            };
            match holds::forward(cluster, &message).await {
                Ok(Some(result)) => result,
                Ok(None) => {
                    return reply(
                        StatusCode::ACCEPTED,
                        json!({"id": id, "replica": hold.replica, "decision": null,
                               "message": "the answer was sent to the replica holding the request, which has not confirmed it yet"}),
                    )
                }
                Err(err) => return cluster_unavailable(&err),
            }
        };
        match result {
            AnswerResult::Decided { body } => reply(StatusCode::OK, body),
            AnswerResult::NotPending { message } => not_found(&message),
            AnswerResult::Invalid { message } => bad_request(&message),
            AnswerResult::Unavailable { message } => {
                cluster_unavailable(&ClusterUnavailable(message))
            }
        }
    }

    async fn end_task(&self, id: &str) -> Response<ProxyBody> {
        match self.end(id).await {
            Ok(true) => reply(StatusCode::OK, json!({"id": id, "ended": true})),
            Ok(false) => not_found("no such task"),
            Err(err) => cluster_unavailable(&err),
        }
    }

    /// Ends a task created here or (cluster mode) by any replica: its token
    /// stops working on every replica, its open tunnels and channel close, and
    /// its Vault leases and minted tokens are revoked. Returns whether there
    /// was such a task. In cluster mode the revocation is recorded in Redis
    /// first; when Redis cannot take it, the task still ends here, and the
    /// error says the other replicas were not told.
    pub async fn end(&self, id: &str) -> Result<bool, ClusterUnavailable> {
        let local = self.state.created.remove(id);
        let info = match (local, &self.state.cluster) {
            (Some(info), _) => info,
            (None, Some(_)) => match self.find_task(id).await? {
                Some(info) => info,
                None => return Ok(false),
            },
            (None, None) => return Ok(false),
        };
        let shared = match &self.state.cluster {
            Some(cluster) => {
                let published =
                    crate::cluster::revocations::publish(cluster, id, info.expires_at).await;
                match published {
                    Ok(()) => crate::cluster::tasks::unlist(cluster, id).await,
                    Err(err) => Err(err),
                }
            }
            None => Ok(()),
        };
        let (leases, minted_revoked) =
            crate::replicas::end_task_here(&self.state, id, info.expires_at).await;
        tracing::info!(task = %id, leases, minted_revoked, "task ended");
        shared.map(|()| true)
    }
}

/// 503 `cluster_unavailable` from the admin API.
fn cluster_unavailable(err: &ClusterUnavailable) -> Response<ProxyBody> {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "cluster_unavailable", "message": err.to_string()}),
    )
}

/// `POST /v1/tasks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Policy name.
    pub policy: String,
    /// Lifetime such as `30m` (default one hour).
    #[serde(default)]
    pub ttl: Option<String>,
    /// Source address the token is bound to.
    #[serde(default)]
    pub source: Option<IpAddr>,
    /// Also open the task's own channel (for `tollgate run --admin`).
    #[serde(default)]
    pub channel: bool,
}

/// A task just created.
#[derive(Debug)]
pub struct CreatedTask {
    /// The task, as its token authenticates it.
    pub task: Arc<Task>,
    /// Its proxy token.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// Why a task could not be created.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    fn bad_request(message: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn not_found(message: &str) -> Response<ProxyBody> {
    reply(
        StatusCode::NOT_FOUND,
        json!({"error": "not_found", "message": message}),
    )
}

fn bad_request(message: &str) -> Response<ProxyBody> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"error": "bad_request", "message": message}),
    )
}
