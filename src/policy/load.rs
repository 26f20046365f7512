//! Reading policy files from disk into validated [`Policy`] values.
//!
//! Errors name `file:line`; a file with an error contributes nothing.

use super::model::{
    Action, Policy, Rate, Rule, SecretSource, SecretSpec, TunnelEntry, DEFAULT_APPROVAL_TIMEOUT,
};
use super::wire::{ActionWire, PolicyWire, RateWire, SecretWire};
use crate::yaml::{locate_item, locate_key, parse_yaml, FileError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Policies by name.
#[derive(Debug, Default, Clone)]
pub struct PolicySet {
    by_name: HashMap<String, Arc<Policy>>,
}

impl PolicySet {
    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Policy>> {
        self.by_name.get(name).cloned()
    }

    /// Every policy.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.by_name.values()
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Builds a set from policies (used by tests and benches).
    pub fn from_policies(policies: impl IntoIterator<Item = Policy>) -> Self {
        Self {
            by_name: policies
                .into_iter()
                .map(|p| (p.name.clone(), Arc::new(p)))
                .collect(),
        }
    }
}

/// The outcome of loading a policy directory.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Valid policies.
    pub policies: PolicySet,
    /// The first error of each invalid file.
    pub errors: Vec<FileError>,
    /// Things that are allowed but probably wrong.
    pub warnings: Vec<FileError>,
    /// Files read.
    pub files: usize,
}

/// Loads every `*.yaml` / `*.yml` file in `dir`, in name order.
pub fn load_policy_dir(dir: &Path) -> LoadReport {
    let mut report = LoadReport::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            report.errors.push(FileError::at(
                dir,
                None,
                format!("cannot read policy directory: {err}"),
            ));
            return report;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    paths.sort();
    let mut policies = Vec::new();
    for path in paths {
        report.files += 1;
        match load_policy_file(&path) {
            Ok((policy, warnings)) => {
                report.warnings.extend(warnings);
                policies.push(policy);
            }
            Err(err) => report.errors.push(err),
        }
    }
    report.policies = PolicySet::from_policies(policies);
    report
}

/// Loads and validates one policy file. Returns the policy and its warnings.
pub fn load_policy_file(path: &Path) -> Result<(Policy, Vec<FileError>), FileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| FileError::at(path, None, format!("cannot read: {err}")))?;
    parse_policy(path, &text)
}

/// Validates policy text read from `path`.
pub fn parse_policy(path: &Path, text: &str) -> Result<(Policy, Vec<FileError>), FileError> {
    let wire: PolicyWire = parse_yaml(path, text)?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let name = wire.name.ok_or_else(|| {
        FileError::at(
            path,
            Some(1),
            "missing `name` (it must equal the file name without .yaml)",
        )
    })?;
    if name != stem {
        return Err(FileError::at(
            path,
            locate_key(text, "name"),
            format!("policy name `{name}` must equal the file name `{stem}`"),
        ));
    }
    let mut warnings = Vec::new();
    let dir = path.parent().unwrap_or(Path::new("."));

    let mut secrets = std::collections::BTreeMap::new();
    for (secret_name, secret) in wire.secrets {
        let line = locate_key_in_block(text, "secrets", secret_name.as_str());
        let spec = secret_spec(secret_name.clone(), secret, dir).map_err(|(key, msg)| {
            let at = key.and_then(|key| locate_under(text, line, key)).or(line);
            FileError::at(path, at, msg)
        })?;
        if let SecretSource::OAuth2(oauth) = &spec.source {
            if let super::model::OAuthGrant::RefreshToken(super::model::KeySource::Env { .. }) =
                oauth.grant
            {
                warnings.push(FileError::at(
                    path,
                    line,
                    format!("warning: secret `{secret_name}` reads its refresh token from the environment; a rotated one cannot be written back there"),
                ));
            }
        }
        secrets.insert(secret_name, spec);
    }

    let mut rules = Vec::with_capacity(wire.rules.len());
    for (index, rule) in wire.rules.into_iter().enumerate() {
        let line = locate_item(text, "rules", index, None);
        let name = rule.name.unwrap_or_else(|| format!("rule {}", index + 1));
        for secret in &rule.inject {
            if !secrets.contains_key(secret) {
                return Err(FileError::at(
                    path,
                    locate_item(text, "rules", index, Some("inject")),
                    format!(
                        "rule `{name}` injects `{secret}`, which is not declared under `secrets`"
                    ),
                ));
            }
        }
        let action = match rule.action.unwrap_or(ActionWire::Allow) {
            ActionWire::Allow => Action::Allow,
            ActionWire::Deny => Action::Deny,
            ActionWire::Approve => Action::Approve,
        };
        if action == Action::Deny && !rule.inject.is_empty() {
            warnings.push(FileError::at(
                path,
                line,
                format!("warning: rule `{name}` denies but lists secrets to inject"),
            ));
        }
        if rule.allow_plaintext && !rule.inject.is_empty() {
            warnings.push(FileError::at(
                path,
                locate_item(text, "rules", index, Some("allow_plaintext")),
                format!("warning: rule `{name}` may inject secrets into plain http:// requests"),
            ));
        }
        if rule.inject_body && rule.inject.is_empty() {
            warnings.push(FileError::at(
                path,
                line,
                format!("warning: rule `{name}` sets inject_body but injects no secret"),
            ));
        }
        if rule.port == Some(0) {
            return Err(FileError::at(
                path,
                line,
                format!("rule `{name}`: port 0 is not a port"),
            ));
        }
        let rate = rule.rate.map(rate_spec).transpose().map_err(|msg| {
            FileError::at(path, locate_item(text, "rules", index, Some("rate")), msg)
        })?;
        let content = content_rule(&name, rule.jsonrpc, rule.graphql).map_err(|(key, msg)| {
            FileError::at(
                path,
                locate_item(text, "rules", index, Some(key)).or(line),
                msg,
            )
        })?;
        if let Some(super::content::ContentRule::JsonRpc(rpc)) = &content {
            if rpc.methods.is_empty() {
                warnings.push(FileError::at(
                    path,
                    line,
                    format!("warning: rule `{name}` lists no jsonrpc method, so it never matches"),
                ));
            }
        }
        rules.push(Rule {
            name,
            line,
            host: rule.host,
            port: rule.port,
            methods: rule.methods.map(|ms| ms.into_iter().map(|m| m.0).collect()),
            paths: rule.paths,
            inject: rule.inject,
            inject_body: rule.inject_body,
            allow_plaintext: rule.allow_plaintext,
            rate,
            action,
            approval_timeout: rule.approval_timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
            content,
        });
    }

    let tunnels = wire
        .tunnel
        .into_iter()
        .map(|t| TunnelEntry {
            host: t.host,
            port: t.port.unwrap_or(443),
        })
        .collect::<Vec<_>>();
    for (index, tunnel) in tunnels.iter().enumerate() {
        let overlapping: Vec<&Rule> = rules
            .iter()
            .filter(|r| {
                r.matches_destination(
                    super::model::Scheme::Https,
                    &tunnel_probe(tunnel),
                    tunnel.port,
                )
            })
            .collect();
        // An approval gate that a tunnel bypasses is no gate: refuse the file.
        if let Some(gate) = overlapping.iter().find(|r| r.action == Action::Approve) {
            return Err(FileError::at(
                path,
                locate_item(text, "tunnel", index, None),
                format!(
                    "tunnel `{}:{}` would pass requests for rule `{}` (action: approve) through uninspected, so they would never wait for an operator",
                    tunnel.host, tunnel.port, gate.name
                ),
            ));
        }
        // Nor is a content rule whose requests are never read.
        if let Some(reader) = overlapping.iter().find(|r| r.content.is_some()) {
            return Err(FileError::at(
                path,
                locate_item(text, "tunnel", index, None),
                format!(
                    "tunnel `{}:{}` would pass requests for rule `{}` (jsonrpc/graphql) through uninspected, so their bodies would never be checked",
                    tunnel.host, tunnel.port, reader.name
                ),
            ));
        }
        if !overlapping.is_empty() {
            warnings.push(FileError::at(
                path,
                locate_item(text, "tunnel", index, None),
                format!(
                    "warning: tunnel `{}:{}` is passed through uninspected, so rules for it never apply",
                    tunnel.host, tunnel.port
                ),
            ));
        }
    }

    let rate = wire
        .rate
        .map(rate_spec)
        .transpose()
        .map_err(|msg| FileError::at(path, locate_key(text, "rate"), msg))?;
    let max_concurrent = match wire.max_concurrent {
        None => super::model::DEFAULT_MAX_CONCURRENT,
        Some(0) => {
            return Err(FileError::at(
                path,
                locate_key(text, "max_concurrent"),
                "max_concurrent must be at least 1",
            ))
        }
        Some(n) => n as usize,
    };
    let (budgets, llm_metering, on_exceed) = match wire.budgets {
        None => Default::default(),
        Some(b) => super::budgets::budget_spec(b).map_err(|(key, msg)| {
            let block = locate_key(text, "budgets");
            FileError::at(path, locate_under(text, block, key).or(block), msg)
        })?,
    };

    Ok((
        Policy {
            name,
            description: wire.description,
            secrets,
            rules,
            tunnels,
            rate,
            max_concurrent,
            max_concurrent_set: wire.max_concurrent.is_some(),
            budgets,
            llm_metering,
            on_exceed,
            digest: crate::text::hex(
                &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref()
                    [..16],
            ),
        },
        warnings,
    ))
}

/// A rule's `jsonrpc` or `graphql` block, checked; the error names the key at fault.
fn content_rule(
    name: &str,
    jsonrpc: Option<super::wire::JsonRpcWire>,
    graphql: Option<super::wire::GraphQlWire>,
) -> Result<Option<super::content::ContentRule>, (&'static str, String)> {
    use super::content::ContentRule;
    use super::wire::OperationWire;
    use crate::content::graphql::{GraphQlRule, OperationKind};
    use crate::content::jsonrpc::{JsonRpcRule, MethodPattern};
    match (jsonrpc, graphql) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err((
            "graphql",
            format!("rule `{name}` has both jsonrpc and graphql; a body is one or the other, so split the rule"),
        )),
        (Some(rpc), None) => {
            let methods = rpc
                .methods
                .iter()
                .map(|m| MethodPattern::parse(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("jsonrpc", format!("rule `{name}`: jsonrpc.methods: {e}")))?;
            if let Some(tools) = &rpc.tools {
                if tools.iter().any(String::is_empty) {
                    return Err(("jsonrpc", format!("rule `{name}`: jsonrpc.tools has an empty name")));
                }
                let calls = methods.iter().any(|m| match m {
                    MethodPattern::Exact(m) => m == "tools/call",
                    MethodPattern::Prefix(p) => p == "tools/",
                    MethodPattern::Responses => false,
                });
                if !calls {
                    return Err(("jsonrpc", format!("rule `{name}`: jsonrpc.tools is given but jsonrpc.methods does not allow tools/call")));
                }
            }
            Ok(Some(ContentRule::JsonRpc(JsonRpcRule {
                methods,
                tools: rpc.tools,
            })))
        }
        (None, Some(gql)) => {
            if gql.operations.is_empty() {
                return Err(("graphql", format!("rule `{name}`: graphql.operations is empty, so the rule would never match")));
            }
            if gql.names.as_ref().is_some_and(|n| n.iter().any(String::is_empty)) {
                return Err(("graphql", format!("rule `{name}`: graphql.names has an empty name")));
            }
            let operations = gql
                .operations
                .into_iter()
                .map(|op| match op {
                    OperationWire::Query => OperationKind::Query,
                    OperationWire::Mutation => OperationKind::Mutation,
                    OperationWire::Subscription => OperationKind::Subscription,
                })
                .collect();
            Ok(Some(ContentRule::GraphQl(GraphQlRule {
                operations,
                names: gql.names,
            })))
        }
    }
}

/// A host that a tunnel pattern matches, to test overlap with rules.
fn tunnel_probe(tunnel: &TunnelEntry) -> String {
    match &tunnel.host {
        super::model::HostPattern::Exact(h) => h.clone(),
        super::model::HostPattern::Subdomains(suffix) => format!("x{suffix}"),
    }
}

fn secret_spec(
    name: super::model::PlaceholderName,
    wire: SecretWire,
    dir: &Path,
) -> Result<SecretSpec, (Option<&'static str>, String)> {
    let given = [
        wire.vault.is_some(),
        wire.env.is_some(),
        wire.github_app.is_some(),
        wire.oauth2.is_some(),
        wire.aws.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err((
            None,
            format!(
            "secret `{name}` names more than one source; pick one of vault, env, github_app, oauth2, aws"
        ),
        ));
    }
    let source = if let Some(env) = wire.env {
        if env.is_empty() || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err((
                None,
                format!("secret `{name}`: env name `{env}` must be letters, digits and _"),
            ));
        }
        SecretSource::Env { name: env }
    } else if let Some(v) = wire.vault {
        let method = v.method.map(|m| m.to_ascii_uppercase());
        if let Some(m) = &method {
            if !matches!(m.as_str(), "GET" | "POST" | "PUT") {
                return Err((
                    None,
                    format!("secret `{name}`: vault method `{m}` must be GET, POST or PUT"),
                ));
            }
        }
        if v.path.is_empty() || v.field.is_empty() {
            return Err((
                None,
                format!("secret `{name}`: vault `path` and `field` must not be empty"),
            ));
        }
        let data = v.data.map(serde_json::to_value).transpose().map_err(|e| {
            (
                None,
                format!("secret `{name}`: vault `data` is not JSON-compatible: {e}"),
            )
        })?;
        SecretSource::Vault {
            mount: v
                .mount
                .or_else(|| method.is_none().then(|| "secret".to_string())),
            path: v.path,
            field: v.field,
            method,
            data,
        }
    } else if let Some(app) = wire.github_app {
        SecretSource::GithubApp(Box::new(
            minted::github_app(&name, app, dir).map_err(|(k, m)| (Some(k), m))?,
        ))
    } else if let Some(oauth) = wire.oauth2 {
        SecretSource::OAuth2(Box::new(
            minted::oauth2(&name, oauth, dir).map_err(|(k, m)| (Some(k), m))?,
        ))
    } else if let Some(aws) = wire.aws {
        SecretSource::Aws(Box::new(
            minted::aws(&name, aws, dir).map_err(|(k, m)| (Some(k), m))?,
        ))
    } else {
        return Err((
            None,
            format!("secret `{name}` needs a source: vault, env, github_app, oauth2 or aws"),
        ));
    };
    if wire.hosts.is_empty() {
        return Err((
            None,
            format!("secret `{name}` has no `hosts`: list the only hosts it may ever be sent to"),
        ));
    }
    if wire.ttl.is_some_and(|t| t.is_zero()) {
        return Err((None, format!("secret `{name}`: ttl must be more than zero")));
    }
    Ok(SecretSpec {
        name,
        source,
        hosts: wire.hosts,
        ttl: wire.ttl,
    })
}

fn rate_spec(wire: RateWire) -> Result<Rate, String> {
    if wire.requests == 0 {
        return Err("rate: `requests` must be at least 1".into());
    }
    if wire.per.is_zero() {
        return Err("rate: `per` must be more than zero".into());
    }
    let burst = wire.burst.unwrap_or(wire.requests);
    if burst == 0 {
        return Err("rate: `burst` must be at least 1".into());
    }
    Ok(Rate {
        requests: wire.requests,
        per: wire.per,
        burst,
    })
}

/// Line of the first `key:` nested under the mapping that starts at line
/// `start` (1-based), if there is one.
fn locate_under(text: &str, start: Option<usize>, key: &str) -> Option<usize> {
    let start = start?;
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines.get(start.checked_sub(1)?)?);
    let needle = format!("{key}:");
    lines
        .iter()
        .enumerate()
        .skip(start)
        .take_while(|(_, l)| {
            l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > base
        })
        .find(|(_, l)| l.trim_start().starts_with(&needle))
        .map(|(i, _)| i + 1)
}

/// Line of `  NAME:` inside the top-level block `block:`.
fn locate_key_in_block(text: &str, block: &str, key: &str) -> Option<usize> {
    let start = locate_key(text, block)?;
    let needle = format!("{key}:");
    text.lines()
        .enumerate()
        .skip(start)
        .take_while(|(_, l)| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .find(|(_, l)| l.trim_start().starts_with(&needle))
        .map(|(i, _)| i + 1)
        .or(Some(start))
}

mod minted;
#[cfg(test)]
mod props;
