//! The Kubernetes deployment in `docker/kubernetes/`: every overlay renders with
//! `kubectl kustomize`, the result passes `kubernetes-validate` (offline schemas,
//! strict), and the properties an operator relies on hold in what is rendered:
//! replica counts per size, probes on `/readyz` and `/healthz`, a non-root pod
//! with a read-only root, a grace period longer than the drain, a PDB, sandboxes
//! confined to the proxy port, the admin port closed to them, the config's key
//! paths served by the Secrets, and no real key in the committed Secrets.
//!
//! `$KUBECTL` names the kubectl to use (default: `kubectl` on `PATH`); CI also
//! runs Debian's kubectl 1.20, whose kustomize is v2.0.3.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on an unexpected value"
)]

#[path = "common/skip.rs"]
#[allow(dead_code, reason = "this crate uses only `skipped`")]
mod skip;

use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Kubernetes version whose schemas the rendered objects are checked
/// against; `kubernetes-validate` 1.34.1 (pinned in `.ci/run`) ships 1.25 to 1.34.
const KUBERNETES_VERSION: &str = "1.30.0";
/// The proxy port: `listen` in the config, the container's `proxy` port.
const PROXY_PORT: u64 = 3128;
/// The admin port: `admin.listen`, the probes' port.
const ADMIN_PORT: u64 = 3129;
/// tollgate drains for up to this many seconds on SIGTERM.
const DRAIN_SECONDS: u64 = 10;
/// The label that marks a sandbox pod.
const SANDBOX_LABEL: &str = "tollgate.dev/sandbox";
/// The pod label of the tollgate replicas.
const TOLLGATE_POD: (&str, &str) = ("app.kubernetes.io/name", "tollgate");
/// The word every committed Secret value carries.
const PLACEHOLDER: &str = "PLACEHOLDER";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `name` as found on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The kubectl and kubernetes-validate to use, or `None` after a loud skip.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let kubectl = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .or_else(|| on_path("kubectl"));
    let validate = on_path("kubernetes-validate");
    let mut missing = Vec::new();
    if kubectl.is_none() {
        missing.push("kubectl (apt-get install kubernetes-client)");
    }
    if validate.is_none() {
        missing.push("kubernetes-validate (pip install 'kubernetes-validate==1.34.1')");
    }
    if !missing.is_empty() {
        skip::skipped(&format!(
            "needs {} to render and check docker/kubernetes",
            missing.join(" and ")
        ));
        return None;
    }
    Some((kubectl?, validate?))
}

/// `kubectl kustomize DIR` (relative to docker/kubernetes), checked by
/// `kubernetes-validate`; returns the rendered objects.
fn render_and_validate(kubectl: &Path, validate: &Path, dir: &str) -> Vec<Value> {
    let path = root().join("docker/kubernetes").join(dir);
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} kustomize {dir} failed: {}",
        kubectl.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();

    let mut child = Command::new(validate)
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let checked = child.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "kubernetes-validate rejected {dir}:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect();
    assert!(
        docs.len() > 10,
        "{dir} rendered only {} objects",
        docs.len()
    );
    docs
}

fn all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = all(docs, kind)
        .into_iter()
        .filter(|d| d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name}");
    found[0]
}

/// The one ConfigMap whose name is `prefix` or `prefix-<hash>`.
fn config_map<'a>(docs: &'a [Value], prefix: &str) -> &'a Value {
    let found: Vec<&Value> = all(docs, "ConfigMap")
        .into_iter()
        .filter(|d| {
            let name = d["metadata"]["name"].as_str().unwrap_or("");
            name == prefix
                || name
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|hash| hash.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .collect();
    assert_eq!(found.len(), 1, "expected one ConfigMap {prefix}");
    found[0]
}

fn str_list(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The config every replica runs, parsed from the `tollgate-config` ConfigMap.
fn tollgate_config(docs: &[Value]) -> Value {
    let text = config_map(docs, "tollgate-config")["data"]["tollgate.yaml"]
        .as_str()
        .expect("tollgate-config has tollgate.yaml");
    serde_yaml_ng::from_str(text).unwrap()
}

/// Whether a label selector (`matchLabels` only) selects a pod with `labels`.
fn selects(selector: &Value, labels: &[(&str, &str)]) -> bool {
    if selector.get("matchExpressions").is_some() {
        panic!("the test reads matchLabels only: {selector}");
    }
    match selector.get("matchLabels").and_then(Value::as_object) {
        None => true,
        Some(wanted) => wanted
            .iter()
            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && v == lv)),
    }
}

/// What one overlay must render; `replicas` and `min_available` are its size.
fn check_rendered(docs: &[Value], replicas: u64, min_available: u64) {
    let deployment = one(docs, "Deployment", "tollgate");
    assert_eq!(deployment["metadata"]["namespace"], "tollgate");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(replicas));
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Ports: the names the probes and Services use, and the numbers the config
    // listens on.
    let port = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
    };
    assert_eq!(port("proxy"), Some(PROXY_PORT));
    assert_eq!(port("admin"), Some(ADMIN_PORT));
    let config = tollgate_config(docs);
    assert_eq!(config["listen"], format!("0.0.0.0:{PROXY_PORT}"));
    assert!(
        config["admin"]["listen"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!(":{ADMIN_PORT}")) && !l.starts_with("127.")),
        "the kubelet's probes need the admin API on the pod address: {}",
        config["admin"]["listen"]
    );

    // Probes.
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");

    // Hardening.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(str_list(&sc["capabilities"]["drop"]), ["ALL"]);
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].is_string(),
                "tollgate has no {kind}.{resource}"
            );
        }
    }
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > DRAIN_SECONDS,
        "grace period {grace} s is not longer than the drain"
    );

    // PDB over the same pods.
    let pdb = one(docs, "PodDisruptionBudget", "tollgate");
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(min_available));
    assert!(
        min_available < replicas,
        "a PDB of all replicas blocks every drain"
    );
    assert!(selects(&pdb["spec"]["selector"], &[TOLLGATE_POD]));

    // The Service sends the proxy port to the pods' proxy port.
    let service = one(docs, "Service", "tollgate");
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(
        ports.len(),
        1,
        "the proxy Service exposes the proxy port only"
    );
    assert_eq!(ports[0]["targetPort"], "proxy");

    check_secret_paths(docs, pod, c, &config);
    check_sandbox_egress(docs);
    check_tollgate_ingress(docs);
    check_redis(docs);
}

/// Every key file the config names under the keys mount is one item of the
/// projected Secret volume, and the audit key's public half is beside it (the
/// mount is read-only, so tollgate could not write it).
fn check_secret_paths(docs: &[Value], pod: &Value, c: &Value, config: &Value) {
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "keys")
        .expect("a keys mount");
    assert_eq!(mount["readOnly"], true);
    let dir = mount["mountPath"].as_str().unwrap();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "keys")
        .unwrap();
    let mut files = Vec::new();
    for source in volume["projected"]["sources"].as_array().unwrap() {
        let name = source["secret"]["name"].as_str().unwrap();
        let secret = one(docs, "Secret", name);
        match source["secret"]["items"].as_array() {
            Some(items) => {
                for item in items {
                    let key = item["key"].as_str().unwrap();
                    assert!(secret["data"].get(key).is_some(), "{name} has no {key}");
                    files.push(format!("{dir}/{}", item["path"].as_str().unwrap()));
                }
            }
            None => files.extend(
                secret["data"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|k| format!("{dir}/{k}")),
            ),
        }
    }
    let audit_key = config["audit"]["key"].as_str().unwrap().to_string();
    let wanted = [
        config["task_key"].as_str().unwrap().to_string(),
        config["ca"]["cert"].as_str().unwrap().to_string(),
        config["ca"]["key"].as_str().unwrap().to_string(),
        config["admin"]["token_file"].as_str().unwrap().to_string(),
        config["cluster"]["redis_password_file"]
            .as_str()
            .unwrap()
            .to_string(),
        format!("{audit_key}.pub"),
        audit_key,
    ];
    for path in &wanted {
        assert!(files.contains(path), "{path} is in no Secret: {files:?}");
    }
    assert!(
        config["cluster"].get("replica_id").is_none(),
        "replica_id must default to the host name (the pod name), not be one fixed value"
    );
}

/// Every NetworkPolicy that applies to a sandbox pod (in namespace
/// `sandboxes`, labelled as a sandbox) allows egress to the tollgate pods'
/// proxy port and nowhere else, and at least one such policy exists.
fn check_sandbox_egress(docs: &[Value]) {
    let sandbox = [(SANDBOX_LABEL, "true")];
    let policies: Vec<&Value> = all(docs, "NetworkPolicy")
        .into_iter()
        .filter(|p| {
            p["metadata"]["namespace"] == "sandboxes"
                && selects(&p["spec"]["podSelector"], &sandbox)
        })
        .collect();
    assert!(
        policies
            .iter()
            .any(|p| str_list(&p["spec"]["policyTypes"]).contains(&"Egress")),
        "no NetworkPolicy restricts the sandboxes' egress"
    );
    let mut allowed = 0;
    for policy in &policies {
        let name = &policy["metadata"]["name"];
        for rule in policy["spec"]["egress"].as_array().into_iter().flatten() {
            let peers = rule["to"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(
                !peers.is_empty(),
                "{name}: an egress rule without `to` allows every destination"
            );
            for peer in peers {
                assert!(
                    peer.get("ipBlock").is_none(),
                    "{name}: sandbox egress to an ipBlock"
                );
                assert_eq!(
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    "tollgate",
                    "{name}: sandbox egress to another namespace than tollgate's"
                );
                assert!(
                    peer["podSelector"]["matchLabels"][TOLLGATE_POD.0] == TOLLGATE_POD.1,
                    "{name}: sandbox egress to pods other than tollgate's"
                );
            }
            let ports = rule["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(
                !ports.is_empty(),
                "{name}: an egress rule without `ports` allows every port"
            );
            for port in ports {
                assert_eq!(port["port"].as_u64(), Some(PROXY_PORT), "{name}: {port}");
                assert_eq!(port["protocol"], "TCP");
                assert!(port.get("endPort").is_none());
            }
            allowed += 1;
        }
    }
    assert!(
        allowed > 0,
        "sandboxes may reach nothing, not even the proxy"
    );
    // A pod in the sandboxes namespace without the label gets nothing at all.
    let deny = all(docs, "NetworkPolicy").into_iter().any(|p| {
        p["metadata"]["namespace"] == "sandboxes"
            && p["spec"]["podSelector"]
                .as_object()
                .is_some_and(serde_json::Map::is_empty)
            && p["spec"].get("egress").is_none()
            && str_list(&p["spec"]["policyTypes"]).contains(&"Egress")
    });
    assert!(deny, "no default-deny policy in the sandboxes namespace");
}

/// The ingress policies of the tollgate pods never let a sandbox reach the
/// admin port, and do let sandboxes reach the proxy port.
fn check_tollgate_ingress(docs: &[Value]) {
    let sandbox_peer = |peer: &Value| {
        // A peer without namespaceSelector is in tollgate's own namespace.
        let ns = &peer["namespaceSelector"];
        let in_sandboxes =
            !ns.is_null() && selects(ns, &[("kubernetes.io/metadata.name", "sandboxes")]);
        peer.get("ipBlock").is_some() || in_sandboxes
    };
    let mut proxy_from_sandboxes = false;
    for policy in all(docs, "NetworkPolicy") {
        if policy["metadata"]["namespace"] != "tollgate"
            || !selects(&policy["spec"]["podSelector"], &[TOLLGATE_POD])
        {
            continue;
        }
        let name = &policy["metadata"]["name"];
        for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
            let peers = rule["from"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let ports: Vec<u64> = rule["ports"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["port"].as_u64()).collect())
                .unwrap_or_default();
            let admin_open = ports.is_empty() || ports.contains(&ADMIN_PORT);
            assert!(
                !(admin_open && (peers.is_empty() || peers.iter().any(sandbox_peer))),
                "{name}: the admin port is open to sandboxes: {rule}"
            );
            if ports == [PROXY_PORT] && peers.iter().any(sandbox_peer) {
                proxy_from_sandboxes = true;
            }
        }
    }
    assert!(
        proxy_from_sandboxes,
        "no policy admits sandboxes to the proxy port"
    );
}

/// Redis: only tollgate pods may connect, and it is not root.
fn check_redis(docs: &[Value]) {
    let redis = one(docs, "StatefulSet", "tollgate-redis");
    let pod = &redis["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    let labels: Vec<(String, String)> = redis["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let policies: Vec<&Value> = all(docs, "NetworkPolicy")
        .into_iter()
        .filter(|p| {
            p["metadata"]["namespace"] == "tollgate"
                && selects(&p["spec"]["podSelector"], &labels)
                && str_list(&p["spec"]["policyTypes"]).contains(&"Ingress")
        })
        .collect();
    assert!(!policies.is_empty(), "no NetworkPolicy guards Redis");
    for policy in policies {
        for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
            let peers = rule["from"].as_array().unwrap();
            for peer in peers {
                assert!(peer.get("namespaceSelector").is_none() && peer.get("ipBlock").is_none());
                assert!(
                    peer["podSelector"]["matchLabels"][TOLLGATE_POD.0] == TOLLGATE_POD.1,
                    "Redis is open to pods other than tollgate: {peer}"
                );
            }
        }
    }
}

#[test]
fn small_overlay_renders_validates_and_keeps_its_promises() {
    let Some((kubectl, validate)) = tools() else {
        return;
    };
    let docs = render_and_validate(&kubectl, &validate, "overlays/small");
    check_rendered(&docs, 2, 1);
}

#[test]
fn large_overlay_renders_validates_and_keeps_its_promises() {
    let Some((kubectl, validate)) = tools() else {
        return;
    };
    let docs = render_and_validate(&kubectl, &validate, "overlays/large");
    check_rendered(&docs, 8, 6);
    let small = render_and_validate(&kubectl, &validate, "overlays/small");
    let memory = |docs: &[Value]| {
        one(docs, "StatefulSet", "tollgate-redis")["spec"]["template"]["spec"]["containers"][0]
            ["resources"]["limits"]["memory"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(
        memory(&docs),
        memory(&small),
        "large gives Redis more memory"
    );
}

#[test]
fn base_renders_validates_and_runs_three_replicas() {
    let Some((kubectl, validate)) = tools() else {
        return;
    };
    let docs = render_and_validate(&kubectl, &validate, "base");
    check_rendered(&docs, 3, 2);
}

/// Whether a Secret value looks like key material: a PEM block, or a long run
/// of base64 or hex with no spaces.
fn looks_like_key(text: &str) -> bool {
    let trimmed = text.trim();
    trimmed.contains("-----BEGIN")
        || (trimmed.len() >= 24
            && trimmed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=_-".contains(c)))
}

#[test]
fn committed_secrets_are_placeholders() {
    // The detector itself: a real-looking key is caught, a placeholder is not.
    assert!(looks_like_key(
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n"
    ));
    assert!(looks_like_key(
        "3q2-7_vK1mYlZ0cF8wQpH4sT9uN6xR2eA5bJ7dL0gC8\n"
    ));
    assert!(looks_like_key(
        "662c1c14beff62ef2a88a4b00d34872ff5e57f2018918cb7c7e6dbee94552328"
    ));
    assert!(!looks_like_key(
        "PLACEHOLDER, not a key: replace this file with a real one.\n"
    ));

    // Every file in base/secrets, used by a generator or not.
    let dir = root().join("docker/kubernetes/base/secrets");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "README.md") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(
            text.contains(PLACEHOLDER) && !looks_like_key(&text),
            "{} is not a marked placeholder: never commit a real key",
            path.display()
        );
        files += 1;
    }
    assert!(files >= 7, "base/secrets has its placeholders");

    let Some((kubectl, validate)) = tools() else {
        return;
    };
    let docs = render_and_validate(&kubectl, &validate, "base");
    let secrets = all(&docs, "Secret");
    assert!(secrets.len() >= 5, "the base has its Secrets");
    for secret in secrets {
        let name = &secret["metadata"]["name"];
        for (key, value) in secret["data"].as_object().unwrap() {
            // Long values come folded over several lines.
            let encoded: String = value
                .as_str()
                .unwrap()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                text.contains(PLACEHOLDER),
                "Secret {name} key {key} is not marked {PLACEHOLDER}"
            );
            assert!(
                !looks_like_key(&text),
                "Secret {name} key {key} looks like a real key: never commit one"
            );
        }
    }
}

#[test]
fn example_policy_passes_policy_check() {
    let Some((kubectl, validate)) = tools() else {
        return;
    };
    let docs = render_and_validate(&kubectl, &validate, "base");
    let policies = config_map(&docs, "tollgate-policies")["data"]
        .as_object()
        .unwrap();
    assert!(!policies.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in policies {
        assert!(file.ends_with(".yaml"), "{file}");
        std::fs::write(dir.path().join(file), text.as_str().unwrap()).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["policy", "check"])
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tollgate policy check refused the example policy: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
