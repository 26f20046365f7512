//! Fuzz target `config`: policy files ([`parse_policy`]) and `tollgate.yaml`
//! ([`Config::from_text`]), the two files people edit by hand.
//!
//! The first byte picks the parser; the rest is the file's text (invalid UTF-8
//! replaced, as `read_to_string` would refuse it before any parser saw it):
//! - even: a policy file. With bit 1 clear the file is named after the text's
//!   `name:` line, so the checks behind the name check are reached; with bit 1 set
//!   it is `policies/fuzz.yaml`. Seeds use `p` (0x70);
//! - odd: `/etc/tollgate/tollgate.yaml`. Seeds use `c` (0x63).
//!
//! Invariants: never a panic; every error and warning names this file and a line
//! that exists in it; an accepted file re-checks consistently (every pattern,
//! name, address and bound the loader promised holds on the value it returned).

use crate::config::{AuditSink, Config, VaultAuth};
use crate::policy::model::{HostPattern, PathPattern, PlaceholderName, SecretSource};
use crate::policy::{normalize_host, parse_policy, Action, Policy, Scheme};
use crate::yaml::FileError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The config file name the target uses; relative paths resolve against its folder.
pub const CONFIG_FILE: &str = "/etc/tollgate/tollgate.yaml";

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // Refusals are fine; the checks inside assert the invariants.
    let _ = if selector & 1 == 1 {
        check_config_text(&text).map(drop)
    } else if selector & 2 == 0 {
        check_policy_text(declared_name(&text).unwrap_or("fuzz"), &text).map(drop)
    } else {
        check_policy_text("fuzz", &text).map(drop)
    };
}

/// Loads `text` as `policies/<stem>.yaml` and checks the outcome.
pub(crate) fn check_policy_text(stem: &str, text: &str) -> Result<Policy, FileError> {
    let path = PathBuf::from(format!("policies/{stem}.yaml"));
    match parse_policy(&path, text) {
        Ok((policy, warnings)) => {
            for warning in &warnings {
                assert_located(warning, &path, text);
            }
            assert_policy_consistent(&policy, stem, text);
            Ok(policy)
        }
        Err(err) => {
            assert_located(&err, &path, text);
            Err(err)
        }
    }
}

/// Loads `text` as [`CONFIG_FILE`] and checks the outcome.
pub(crate) fn check_config_text(text: &str) -> Result<Config, FileError> {
    let file = Path::new(CONFIG_FILE);
    let base = file.parent().unwrap_or(Path::new("/"));
    match Config::from_text(file, text, base, None) {
        Ok(config) => {
            assert_config_consistent(&config);
            Ok(config)
        }
        Err(err) => {
            assert_located(&err, file, text);
            Err(err)
        }
    }
}

/// The number of lines of `text` as YAML counts them: line breaks are `\n`,
/// `\r\n`, `\r`, NEL, LS and PS; text after the last break is a line, and an
/// empty file has one (empty) line. Written apart from `crate::yaml` on purpose.
pub(crate) fn yaml_line_count(text: &str) -> usize {
    let mut breaks = 0;
    let mut after_last_break = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                if c == '\r' {
                    chars.next_if_eq(&'\n');
                }
                breaks += 1;
                after_last_break = 0;
            }
            _ => after_last_break += 1,
        }
    }
    if after_last_break > 0 || breaks == 0 {
        breaks + 1
    } else {
        breaks
    }
}

/// An error or warning names `file` and a line that exists in `text`.
pub(crate) fn assert_located(err: &FileError, file: &Path, text: &str) {
    assert_eq!(err.file, file, "{err} names another file");
    assert!(!err.message.is_empty(), "{err} says nothing");
    let lines = yaml_line_count(text);
    assert!(err.line.is_some(), "{err} names no line (text: {text:?})");
    if let Some(line) = err.line {
        assert!(
            (1..=lines).contains(&line),
            "{err} names line {line} of a {lines}-line file"
        );
    }
}

/// The stem a policy text declares with a plain top-level `name:` line, if any.
fn declared_name(text: &str) -> Option<&str> {
    let line = text.lines().find(|l| l.starts_with("name:"))?;
    let value = line["name:".len()..].split('#').next()?.trim();
    let value = value.trim_matches(|c| c == '"' || c == '\'');
    let plain = !value.is_empty()
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    plain.then_some(value)
}

fn assert_host_pattern(host: &HostPattern) {
    let again = HostPattern::try_from(host.to_string());
    assert_eq!(
        again.as_ref(),
        Ok(host),
        "host pattern {host} does not re-check"
    );
}

fn assert_path_pattern(path: &PathPattern) {
    let again = PathPattern::try_from(path.to_string());
    assert_eq!(
        again.as_ref(),
        Ok(path),
        "path pattern {path} does not re-check"
    );
}

/// What a loaded policy promises.
fn assert_policy_consistent(policy: &Policy, stem: &str, text: &str) {
    assert_eq!(policy.name, stem, "a policy is named after its file");
    assert!(policy.max_concurrent >= 1, "max_concurrent of 0 accepted");
    assert_eq!(policy.digest.len(), 32, "digest {}", policy.digest);
    if let Some(rate) = &policy.rate {
        assert!(rate.requests >= 1 && rate.burst >= 1 && !rate.per.is_zero());
    }
    for (name, spec) in &policy.secrets {
        assert_eq!(&spec.name, name);
        let reparsed = PlaceholderName::try_from(name.as_str().to_string());
        assert_eq!(reparsed.as_ref(), Ok(name), "secret name {name}");
        assert!(!spec.hosts.is_empty(), "secret {name} without hosts");
        spec.hosts.iter().for_each(assert_host_pattern);
        assert!(spec.ttl.is_none_or(|t| !t.is_zero()), "secret {name} ttl 0");
        match &spec.source {
            SecretSource::Env { name: env } => assert!(
                !env.is_empty() && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "env name {env:?}"
            ),
            SecretSource::Vault {
                path,
                field,
                method,
                ..
            } => {
                assert!(!path.is_empty() && !field.is_empty());
                assert!(method
                    .as_deref()
                    .is_none_or(|m| matches!(m, "GET" | "POST" | "PUT")));
            }
            SecretSource::GithubApp(app) => {
                assert!(app.api.starts_with("https://") && !app.api.ends_with('/'));
                assert!(app
                    .permissions
                    .values()
                    .all(|l| matches!(l.as_str(), "read" | "write" | "admin")));
            }
            SecretSource::OAuth2(oauth) => {
                assert!(oauth.token_url.starts_with("https://"));
                assert!(oauth
                    .scopes
                    .iter()
                    .all(|s| !s.is_empty() && !s.contains(' ')));
            }
            SecretSource::Aws(aws) => {
                for item in aws.regions.iter().chain(&aws.services) {
                    assert!(!item.is_empty() && !item.contains(['/', ' ', '*']));
                }
                if let crate::policy::model::AwsCredentials::Vault { mount, role } =
                    &aws.credentials
                {
                    assert!(!mount.contains('/') && !role.contains('/'));
                }
            }
        }
    }
    let lines = yaml_line_count(text);
    for rule in &policy.rules {
        assert_host_pattern(&rule.host);
        rule.paths.iter().flatten().for_each(assert_path_pattern);
        assert_ne!(rule.port, Some(0), "rule {} on port 0", rule.name);
        assert!(rule.line.is_none_or(|l| (1..=lines).contains(&l)));
        for secret in &rule.inject {
            assert!(
                policy.secrets.contains_key(secret),
                "rule {} injects undeclared {secret}",
                rule.name
            );
        }
        if let Some(rate) = &rule.rate {
            assert!(rate.requests >= 1 && rate.burst >= 1 && !rate.per.is_zero());
        }
    }
    for tunnel in &policy.tunnels {
        assert_host_pattern(&tunnel.host);
        let probe = match &tunnel.host {
            HostPattern::Exact(host) => host.clone(),
            HostPattern::Subdomains(suffix) => format!("x{suffix}"),
        };
        let gated = policy.rules.iter().any(|r| {
            r.action == Action::Approve && r.matches_destination(Scheme::Https, &probe, tunnel.port)
        });
        assert!(!gated, "tunnel {} bypasses an approval rule", tunnel.host);
    }
}

/// What a loaded `tollgate.yaml` promises.
fn assert_config_consistent(config: &Config) {
    assert!(!config.listen.is_empty(), "no listener");
    assert!(
        config.admin_listen.starts_with("unix:")
            || config.admin_listen.parse::<SocketAddr>().is_ok(),
        "admin listen {}",
        config.admin_listen
    );
    let mut paths = vec![
        &config.admin_token_file,
        &config.state_dir,
        &config.ca_cert,
        &config.ca_key,
        &config.policies_dir,
        &config.audit.key,
    ];
    paths.extend(&config.upstream.extra_roots);
    if let Some(vault) = &config.vault {
        assert!(is_http_url(&vault.address), "vault {}", vault.address);
        match &vault.auth {
            VaultAuth::Token { token_file } => paths.push(token_file),
            VaultAuth::AppRole { secret_id_file, .. } => paths.push(secret_id_file),
        }
    }
    let mut file_sinks = 0;
    for sink in &config.audit.sinks {
        match sink {
            AuditSink::File(f) => {
                file_sinks += 1;
                assert_ne!(f.rotate_bytes, Some(0), "rotate_bytes 0 accepted");
                paths.push(&f.path);
            }
            AuditSink::Syslog(s) => assert!(s.address.parse::<SocketAddr>().is_ok()),
            AuditSink::Http(h) => assert!(is_http_url(&h.url), "http sink {}", h.url),
            AuditSink::Stdout(_) => {}
        }
    }
    assert!(file_sinks <= 1, "{file_sinks} file sinks accepted");
    for path in paths {
        assert!(path.is_absolute(), "{} was not resolved", path.display());
    }
    for host in config.upstream.resolve.keys() {
        assert_eq!(normalize_host(host).as_ref(), Some(host), "resolve {host}");
    }
    assert!(!config.upstream.connect_timeout.is_zero());
    assert!(!config.audit.checkpoint_every.is_zero());
    assert!(config.approvals.max_pending_per_task >= 1);
    assert!(config.approvals.notify.iter().all(|u| is_http_url(u)));
    let mut ids = std::collections::HashSet::new();
    for task in &config.tasks {
        assert!(ids.insert(&task.id), "task {} twice", task.id);
        assert!(
            !task.id.is_empty() && !task.id.contains(':') && !task.id.contains(char::is_control),
            "task id {:?}",
            task.id
        );
        assert!(
            task.token.is_some() || task.source.is_some(),
            "task {}",
            task.id
        );
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Rendered YAML lines for the property tests of both files, and what a mutation
/// may do with each.
#[cfg(test)]
pub(crate) mod lines {
    /// One rendered line.
    #[derive(Debug, Clone)]
    pub(crate) struct Line {
        pub(crate) text: String,
        /// For a complete `key: value` line: the column of the key, and the key.
        pub(crate) field: Option<(usize, &'static str)>,
        /// Values of the wrong type (or out of range) for this line's key.
        pub(crate) wrong: &'static [&'static str],
        /// Index of the first line of the mapping this line belongs to: where
        /// serde places errors it raises after reading a key (a repeated key, a
        /// value its `TryFrom` refuses).
        pub(crate) owner: usize,
    }

    impl Line {
        /// A line mutations leave alone.
        pub(crate) fn plain(text: String) -> Self {
            Self {
                text,
                field: None,
                wrong: &[],
                owner: 0,
            }
        }

        /// A `key: value` line with its key at `column`.
        pub(crate) fn field(
            column: usize,
            key: &'static str,
            text: String,
            wrong: &'static [&'static str],
        ) -> Self {
            Self {
                text,
                field: Some((column, key)),
                wrong,
                owner: 0,
            }
        }

        /// The same line, in the mapping that starts at line index `owner`.
        pub(crate) fn of(self, owner: usize) -> Self {
            Self { owner, ..self }
        }
    }

    /// The file's text.
    pub(crate) fn join(lines: &[Line]) -> String {
        lines.iter().map(|l| format!("{}\n", l.text)).collect()
    }

    /// Numbered lines, for failure messages.
    pub(crate) fn numbered(text: &str) -> String {
        text.lines()
            .enumerate()
            .map(|(i, l)| format!("{:3} {l}\n", i + 1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_as_yaml_counts_them() {
        assert_eq!(yaml_line_count(""), 1);
        assert_eq!(yaml_line_count("a: b"), 1);
        assert_eq!(yaml_line_count("a: b\n"), 1);
        assert_eq!(yaml_line_count("a: b\n\n"), 2);
        assert_eq!(yaml_line_count("\n"), 1);
        assert_eq!(yaml_line_count("a\r\nb\rc\u{2028}d"), 4);
    }

    #[test]
    fn the_repo_policies_and_configs_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["policies", "docker/policies"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                let stem = path.file_stem().unwrap().to_str().unwrap();
                let policy = check_policy_text(stem, &text);
                assert!(policy.is_ok(), "{}: {policy:?}", path.display());
            }
        }
        let text = std::fs::read_to_string(root.join("docker/tollgate.yaml")).unwrap();
        std::env::set_var("TOLLGATE_TASK_TOKEN", "fuzz");
        assert!(check_config_text(&text).is_ok());
    }

    #[test]
    fn an_error_without_a_line_is_a_crash() {
        let err = FileError::at(Path::new(CONFIG_FILE), None, "something");
        let outcome =
            std::panic::catch_unwind(|| assert_located(&err, Path::new(CONFIG_FILE), "a: b\n"));
        assert!(outcome.is_err());
        let far = FileError::at(Path::new(CONFIG_FILE), Some(2), "something");
        let outcome =
            std::panic::catch_unwind(|| assert_located(&far, Path::new(CONFIG_FILE), "a: b\n"));
        assert!(outcome.is_err(), "line 2 of a 1-line file");
    }

    #[test]
    fn the_name_line_picks_the_file_name() {
        assert_eq!(
            declared_name("# x\nname: github-reader # c\n"),
            Some("github-reader")
        );
        assert_eq!(declared_name("name: \"a.b\"\n"), Some("a.b"));
        assert_eq!(declared_name("name: ../x\n"), None);
        assert_eq!(declared_name("  name: x\n"), None);
    }
}
