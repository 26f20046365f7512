//! Config parsing and validation.

use super::*;

fn parse(text: &str) -> Result<Config, FileError> {
    Config::from_text(
        Path::new("/etc/tollgate/tollgate.yaml"),
        text,
        Path::new("/etc/tollgate"),
        None,
    )
}

#[test]
fn defaults_work_with_no_file() {
    let c = parse("").unwrap();
    assert_eq!(c.listen, vec!["127.0.0.1:3128".parse().unwrap()]);
    assert_eq!(c.admin_listen, "127.0.0.1:3129");
    assert_eq!(c.ca_key, Path::new("/etc/tollgate/.tollgate/ca.key"));
    assert_eq!(c.policies_dir, Path::new("/etc/tollgate/policies"));
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(10));
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = parse("listen: 127.0.0.1:1\nupstream:\n  resolv: {}\n").unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.message.contains("resolv"), "{err}");
    assert!(
        err.to_string()
            .starts_with("/etc/tollgate/tollgate.yaml:3:"),
        "{err}"
    );
}

#[test]
fn full_design_example_parses() {
    std::env::set_var("CFGTEST_TOKEN", "t0ken");
    let text = r#"
listen: [127.0.0.1:3128, "127.0.0.1:3130"]
admin: { listen: "unix:/run/tollgate/admin.sock", token_file: .tollgate/admin.token }
state_dir: .tollgate
ca: { cert: .tollgate/ca.pem, key: .tollgate/ca.key }
policies: policies
upstream:
  extra_roots: [roots.pem]
  resolve: { api.test: "127.0.0.1:8443" }
  allow_private: [127.0.0.0/8, "::1"]
  connect_timeout: 2s
secrets:
  vault:
    address: http://127.0.0.1:8200
    auth: { method: token, token_file: /run/secrets/vault-token }
  env: { prefix: TG_ }
audit:
  key: .tollgate/audit.key
  sign: checkpoint
  checkpoint_every: 1s
  sinks:
    - file: { path: audit/audit.jsonl, rotate_bytes: 104857600 }
    - stdout: {}
    - syslog: { address: 127.0.0.1:6514, transport: tcp }
    - http: { url: http://127.0.0.1:8088/services/collector, headers: {Authorization: "Splunk x"} }
approvals:
  notify: [http://127.0.0.1:9000/hooks/tollgate]
  max_pending_per_task: 8
tasks:
  - id: ci-42
    policy: github-reader
    token_env: CFGTEST_TOKEN
    source: 172.30.0.5
  - id: builder
    policy: npm-only
    source: 172.30.0.6
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.listen.len(), 2);
    assert_eq!(
        c.upstream.resolve["api.test"],
        "127.0.0.1:8443".parse().unwrap()
    );
    assert_eq!(
        c.upstream.extra_roots,
        vec![PathBuf::from("/etc/tollgate/roots.pem")]
    );
    assert_eq!(c.tasks[0].token.as_deref(), Some("t0ken"));
    assert_eq!(c.audit.sinks.len(), 4);
    assert_eq!(c.env_prefix, "TG_");
}

#[test]
fn task_without_token_or_source_is_an_error() {
    let err = parse("tasks:\n  - id: a\n    policy: p\n").unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
}

#[test]
fn bad_values_are_errors() {
    for bad in [
        "listen: nope",
        "upstream: { connect_timeout: 10 }",
        "upstream: { allow_private: [banana] }",
        "audit: { sinks: [ { kafka: {} } ] }",
        "secrets: { vault: { address: x, auth: { method: token, token_file: f } } }",
        "tasks: [ { id: a, policy: p, token_env: CFGTEST_DEFINITELY_UNSET } ]",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_kubernetes_config_loads_as_a_cluster_replica() {
    let text = include_str!("../../docker/kubernetes/base/tollgate.yaml");
    let c = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let cluster = c.cluster.unwrap_or_else(|| panic!("cluster: is set"));
    assert_eq!(cluster.redis, "redis://tollgate-redis:6379/0");
    assert_eq!(
        cluster.password_file.as_deref(),
        Some(std::path::Path::new("/etc/tollgate/keys/redis-password"))
    );
    assert!(!cluster.replica_id.is_empty(), "defaults to the host name");
    assert_eq!(c.task_key, PathBuf::from("/etc/tollgate/keys/task.key"));
}

#[test]
fn task_key_defaults_to_the_state_dir() {
    let c = parse("state_dir: /s\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.task_key, PathBuf::from("/s/task.key"));
    assert!(c.cluster.is_none());
    let err = parse("cluster: { redis: \"redis://:pw@r:6379\" }\n").unwrap_err();
    assert_eq!(err.line, Some(1), "{err}");
}
