//! Deciding which rule, if any, governs a request. Default deny; first match wins.

use super::model::{PlaceholderName, Policy, Rule, Scheme};
use super::path::RequestPath;
use http::Method;

/// The facts about one request that rules are matched against.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Scheme the request leaves with.
    pub scheme: Scheme,
    /// Normalized host (see [`super::host::normalize_host`]).
    pub host: &'a str,
    /// Destination port.
    pub port: u16,
    /// Method.
    pub method: &'a Method,
    /// Parsed, unambiguous path.
    pub path: &'a RequestPath<'a>,
}

/// What to do with a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectDecision {
    /// Pass bytes through without interception (a `tunnel:` entry).
    Passthrough,
    /// Intercept TLS and match each request inside on its own.
    Intercept,
    /// No rule or tunnel names this host and port.
    NoRule,
}

impl Rule {
    /// Whether this rule's host, port, method and path all match.
    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        self.matches_destination(req.scheme, req.host, req.port)
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m == req.method))
            && self
                .paths
                .as_ref()
                .is_none_or(|paths| paths.iter().any(|p| p.matches(req.path)))
    }

    /// Whether this rule's host and port match a destination.
    pub fn matches_destination(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.port.unwrap_or(scheme.default_port()) == port && self.host.matches(host)
    }
}

impl Policy {
    /// The first rule that matches, or `None` (default deny).
    pub fn match_request(&self, req: &RequestFacts<'_>) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(req))
    }

    /// How to treat `CONNECT host:port`. A `tunnel:` entry wins over rules, because
    /// it is an explicit request not to intercept that destination, except over
    /// an `approve` rule or a content rule: a gate is never passed through
    /// uninspected.
    pub fn decide_connect(&self, host: &str, port: u16) -> ConnectDecision {
        let gated = || {
            self.rules.iter().any(|r| {
                (r.action == super::model::Action::Approve || r.content.is_some())
                    && r.matches_destination(Scheme::Https, host, port)
            })
        };
        if self
            .tunnels
            .iter()
            .any(|t| t.port == port && t.host.matches(host))
            && !gated()
        {
            ConnectDecision::Passthrough
        } else if self
            .rules
            .iter()
            .any(|r| r.matches_destination(Scheme::Https, host, port))
        {
            ConnectDecision::Intercept
        } else {
            ConnectDecision::NoRule
        }
    }

    /// Secrets `rule` may inject into a request to `host`: listed in the rule's
    /// `inject` and with `host` among the secret's `hosts`.
    pub fn injectable_secrets<'p>(
        &'p self,
        rule: &'p Rule,
        host: &'p str,
    ) -> impl Iterator<Item = &'p PlaceholderName> + 'p {
        rule.inject.iter().filter(move |name| {
            self.secrets
                .get(*name)
                .is_some_and(|s| s.hosts.iter().any(|h| h.matches(host)))
        })
    }
}
