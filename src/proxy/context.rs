//! What a request carries through the pipeline: the identity of its connection
//! ([`ConnCtx`]) and, per request, the proxy state, that connection and the
//! exchange's audit record ([`RequestCtx`]).

use super::exchange::Exchange;
use super::state::ProxyState;
use crate::audit::{Decision, RequestRecord};
use crate::body::ProxyBody;
use crate::error::{Reason, Refusal};
use crate::policy::{Policy, Scheme};
use crate::tasks::Task;
use http::{Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// What is known about the client connection a request arrived on.
#[derive(Debug)]
pub struct ConnCtx {
    /// The authenticated task.
    pub task: Arc<Task>,
    /// Its policy when the connection was authenticated (each request looks up
    /// the policy as loaded then: [`RequestCtx::current_policy`]).
    pub policy: Arc<Policy>,
    /// Client address.
    pub client: SocketAddr,
    /// For an intercepted tunnel: the CONNECT target every request must name.
    pub tunnel_target: Option<(String, u16)>,
    /// `client` as audit records write it, formatted once per connection.
    client_text: String,
}

impl ConnCtx {
    /// The context of a connection from `client`, authenticated as `task`.
    pub fn new(
        task: Arc<Task>,
        policy: Arc<Policy>,
        client: SocketAddr,
        tunnel_target: Option<(String, u16)>,
    ) -> Self {
        Self {
            task,
            policy,
            client,
            tunnel_target,
            client_text: client.to_string(),
        }
    }

    /// `https` inside an intercepted tunnel, else `http`.
    pub fn scheme(&self) -> Scheme {
        if self.tunnel_target.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// The audit record of a request on this connection, identity filled in.
    pub fn record(&self, method: &str) -> RequestRecord {
        let mut record = RequestRecord {
            at: std::time::SystemTime::now(),
            client: self.client_text.clone(),
            method: method.to_string(),
            scheme: self.scheme().as_str(),
            task: Some(self.task.id.clone()),
            policy: Some(self.policy.name.clone()),
            ..RequestRecord::default()
        };
        if let Some((host, port)) = &self.tunnel_target {
            record.host.clone_from(host);
            record.port = *port;
        }
        record
    }
}

/// One request on its way through the pipeline.
#[derive(Debug)]
pub struct RequestCtx<'a> {
    /// The proxy.
    pub state: &'a ProxyState,
    /// The connection it came on.
    pub conn: &'a ConnCtx,
    /// Its audit record, filled in phase by phase.
    pub log: Exchange,
    /// Cluster mode: the `max_concurrent` place still to take, with the rate
    /// limits in one round trip ([`super::throttle`]).
    pub slot_wanted: Option<usize>,
}

impl<'a> RequestCtx<'a> {
    /// Starts the record of `req`, which arrived now on `conn`.
    pub fn new<B>(state: &'a ProxyState, conn: &'a ConnCtx, req: &Request<B>) -> Self {
        let mut record = conn.record(req.method().as_str());
        // Placeholder form: the path and query as the sandbox sent them.
        record.path = req.uri().path().to_string();
        record.query = req.uri().query().map(str::to_string);
        Self {
            state,
            conn,
            log: Exchange::new(state, record),
            slot_wanted: None,
        }
    }

    /// The task.
    pub fn task(&self) -> &Task {
        &self.conn.task
    }

    /// 407 once the task has expired or been revoked. Asked when the request
    /// arrives, and again before anything of it goes out: a kept-alive
    /// connection, a tunnel or a held request must not outlive its task.
    pub fn ensure_current(&self) -> Result<(), Refusal> {
        Ok(self.state.tasks.ensure_current(&self.conn.task)?)
    }

    /// The task's policy as loaded now: a reload reaches open tunnels and
    /// kept-alive connections at their next request.
    pub fn current_policy(&self) -> Result<Arc<Policy>, Refusal> {
        self.state
            .policies
            .current()
            .get(&self.conn.task.policy)
            .ok_or_else(|| {
                Refusal::new(
                    Reason::NoRule,
                    format!("policy {} is no longer loaded", self.conn.task.policy),
                )
            })
    }

    /// Takes one of the task's `max_concurrent` places for the rest of the
    /// exchange (429 when none is free; 503 when the cluster cannot count).
    /// In cluster mode a cap the policy set is counted across replicas, and
    /// its place is taken later, in the same round trip as the rate limits
    /// ([`super::throttle::check`]), so a request costs one.
    pub async fn take_slot(&mut self, policy: &Policy) -> Result<(), Refusal> {
        if self.state.leases.is_some() && policy.max_concurrent_set {
            self.slot_wanted = Some(policy.max_concurrent);
            return Ok(());
        }
        let slot = super::slots::take_for_request(self.state, &self.conn.task.id, policy).await?;
        self.log.hold(slot);
        Ok(())
    }

    /// The one place a request is marked let through, just before it goes
    /// upstream: should the client hang up mid-exchange, the record says so.
    pub fn let_through(&mut self) {
        let record = &mut self.log.record;
        record.decision = if record.approval.is_some() {
            Decision::Approved
        } else {
            Decision::Allow
        };
        record.reason = None;
    }

    /// Answers the client: the upstream's response, or the refusal (written to
    /// the audit trail before it is sent).
    pub async fn respond(
        self,
        outcome: Result<Response<ProxyBody>, Refusal>,
    ) -> Response<ProxyBody> {
        match outcome {
            Ok(response) => self.log.deliver(response, &self.state.tracker),
            Err(refusal) => {
                let refusal = refusal
                    .with_task(Some(&self.conn.task.id))
                    .with_rule(self.log.record.rule.as_deref());
                self.log.refuse(refusal).await
            }
        }
    }
}
