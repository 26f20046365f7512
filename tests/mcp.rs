//! `jsonrpc` rules end to end (issue 16) with real parts: an MCP server from the
//! official MCP Python SDK (tests/mcp/server.py: streamable HTTP over TLS, three
//! tools, a record of every tool that ran) and the SDK's own client
//! (tests/mcp/client.py) going through tollgate. The policy lets two tools out;
//! the third, hidden or not, must never reach the server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::python::PyServer;
use common::upstream::TestCa;
use common::{start_proxy, wait_record, ProxyProc, ProxySetup};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether python3 with the MCP SDK and uvicorn is here; skips loudly when not.
fn python_ready() -> bool {
    common::python::has_modules(
        "mcp.server.mcpserver, mcp.client.streamable_http, httpx2, uvicorn",
        "mcp and uvicorn for tests/mcp/*.py",
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
}

/// tests/mcp/server.py for `mcp.test`, killed on drop.
struct McpServer(PyServer);

impl std::ops::Deref for McpServer {
    type Target = PyServer;

    fn deref(&self) -> &PyServer {
        &self.0
    }
}

impl McpServer {
    /// Starts it; `json_response` picks JSON answers over SSE ones.
    fn start(ca: &TestCa, json_response: bool) -> McpServer {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf_pem(&["mcp.test"]);
        let config = json!({
            "cert": common::write_file(dir.path(), "cert.pem", &cert),
            "key": common::write_file(dir.path(), "key.pem", &key),
            "calls": dir.path().join("calls.jsonl"),
            "port": 0,
            "json_response": json_response,
        });
        McpServer(PyServer::start("tests/mcp/server.py", dir, &config))
    }

    /// The tools that ran, in order.
    fn ran(&self) -> Vec<String> {
        self.json_lines("calls.jsonl")
            .iter()
            .map(|c| c["tool"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// Two tools allowed; the session's GET stream and DELETE allowed by path.
fn policy(port: u16) -> String {
    format!(
        r#"name: mcp
rules:
  - name: mcp tools
    host: mcp.test
    port: {port}
    methods: [POST]
    paths: ["/mcp"]
    jsonrpc:
      methods: [initialize, "notifications/*", tools/list, tools/call, ping]
      tools: [add, echo]
  - name: mcp session
    host: mcp.test
    port: {port}
    methods: [GET, DELETE]
    paths: ["/mcp"]
"#
    )
}

/// The MCP server and tollgate in front of it.
struct Mcp {
    server: McpServer,
    proxy: ProxyProc,
    _ca: TestCa,
}

impl Mcp {
    /// `None` (after a loud skip) without the Python packages.
    fn start(json_response: bool) -> Option<Mcp> {
        if !python_ready() {
            return None;
        }
        let ca = TestCa::new("mcp test CA");
        let server = McpServer::start(&ca, json_response);
        let setup = ProxySetup::with_policy("mcp", &policy(server.port))
            .trust(&ca.cert_pem)
            .resolve("mcp.test", server.port);
        let proxy = start_proxy(&setup);
        Some(Mcp {
            server,
            proxy,
            _ca: ca,
        })
    }

    fn url(&self) -> String {
        format!("https://mcp.test:{}/mcp", self.server.port)
    }

    /// `client.py URL COMMAND ARGS` as the sandbox: tollgate as HTTPS_PROXY, its
    /// CA the only one trusted.
    async fn client(&self, command: &str, args: Value) -> Value {
        let mut cmd = Command::new("python3");
        cmd.arg(script("client.py"))
            .arg(self.url())
            .arg(command)
            .arg(args.to_string());
        for var in common::python::PROXY_VARS
            .into_iter()
            .chain(["SSL_CERT_FILE", "SSL_CERT_DIR"])
        {
            cmd.env_remove(var);
        }
        cmd.env("HTTPS_PROXY", self.proxy.url())
            .env("MCP_CA", &self.proxy.ca_pem);
        let command = command.to_string();
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "client.py {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "client.py {command}: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    async fn call(&self, tool: &str, arguments: Value) -> Value {
        self.client("call", json!({"name": tool, "arguments": arguments}))
            .await
    }
}

#[tokio::test]
async fn an_allowed_tool_runs_and_its_record_names_the_tool() {
    let Some(m) = Mcp::start(false) else { return };
    let out = m.call("add", json!({"a": 2, "b": 40})).await;
    assert_eq!(out["ok"], true, "{out}\n{}", m.server.log());
    assert_eq!(out["is_error"], false, "{out}");
    assert_eq!(out["content"], json!(["42"]), "{out}");
    let out = m.call("echo", json!({"text": "through tollgate"})).await;
    assert_eq!(out["content"], json!(["through tollgate"]), "{out}");
    assert_eq!(m.server.ran(), ["add", "echo"]);
    // The SDK's session GET stream and its DELETE at the end went through the
    // second rule.
    let http = out["http"].as_array().unwrap();
    assert!(http.contains(&json!(["GET", 200])), "{out}");
    assert!(http.contains(&json!(["DELETE", 200])), "{out}");

    let record = wait_record(&m.proxy, |r| r["rpc"]["tool"] == "add").await;
    assert_eq!(
        record["rpc"],
        json!({"method": "tools/call", "tool": "add"})
    );
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["rule"], "mcp tools", "{record}");
    assert_eq!(record["method"], "POST", "{record}");
    assert_eq!(record["path"], "/mcp", "{record}");
    assert_eq!(record["status"], 200, "{record}");
    // The handshake is recorded with its method and no tool.
    let init = wait_record(&m.proxy, |r| r["rpc"]["method"] == "initialize").await;
    assert_eq!(init["rpc"]["tool"], Value::Null, "{init}");
    assert_eq!(init["decision"], "allow", "{init}");
}

#[tokio::test]
async fn a_tool_outside_the_list_gets_403_and_never_runs() {
    let Some(m) = Mcp::start(false) else { return };
    let out = m.call("delete_everything", json!({})).await;
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(out["status"], 403, "{out}");
    assert!(
        out["http"]
            .as_array()
            .unwrap()
            .contains(&json!(["POST", 403])),
        "{out}"
    );
    assert!(m.server.ran().is_empty(), "{:?}", m.server.ran());
    let record = wait_record(&m.proxy, |r| r["decision"] == "deny" && r["path"] == "/mcp").await;
    assert_eq!(record["reason"], "no_rule", "{record}");
    assert_eq!(record["status"], 403, "{record}");
    // The same session shape with an allowed tool goes through: the refusal
    // was the tool's.
    let out = m.call("echo", json!({"text": "x"})).await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(m.server.ran(), ["echo"]);
}

/// `tools/list` through the rule lists only the allowed tools.
async fn tools_list_is_filtered(json_response: bool) {
    let Some(m) = Mcp::start(json_response) else {
        return;
    };
    let out = m.client("list", json!({})).await;
    assert_eq!(out["ok"], true, "{out}\n{}", m.server.log());
    let mut tools: Vec<String> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tools.sort();
    assert_eq!(tools, ["add", "echo"], "{out}");
    let record = wait_record(&m.proxy, |r| r["rpc"]["method"] == "tools/list").await;
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["status"], 200, "{record}");
}

#[tokio::test]
async fn tools_list_shows_only_the_allowed_tools_in_sse_answers() {
    tools_list_is_filtered(false).await;
}

#[tokio::test]
async fn tools_list_shows_only_the_allowed_tools_in_json_answers() {
    tools_list_is_filtered(true).await;
}

#[tokio::test]
async fn a_batch_that_hides_a_disallowed_call_is_refused_whole() {
    let Some(m) = Mcp::start(true) else { return };
    let hidden = m
        .client(
            "batch",
            json!({"calls": [
                {"name": "add", "arguments": {"a": 1, "b": 1}},
                {"name": "delete_everything"},
                {"name": "echo", "arguments": {"text": "cover"}},
            ]}),
        )
        .await;
    assert_eq!(hidden["status"], 403, "{hidden}");
    let error: Value = serde_json::from_str(hidden["body"].as_str().unwrap()).unwrap();
    assert_eq!(error["error"], "no_rule", "{hidden}");
    assert!(m.server.ran().is_empty(), "{:?}", m.server.ran());
    // A batch of allowed calls only is let through: the SDK's server answers it
    // itself (it does not take batches: 400 with a JSON-RPC error), not tollgate.
    let clean = m
        .client(
            "batch",
            json!({"calls": [
                {"name": "add", "arguments": {"a": 1, "b": 1}},
                {"name": "echo", "arguments": {"text": "cover"}},
            ]}),
        )
        .await;
    assert_ne!(clean["status"], 403, "{clean}");
    let answer: Value = serde_json::from_str(clean["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["jsonrpc"], "2.0", "not the server's answer: {clean}");
    assert!(!m.server.ran().contains(&"delete_everything".to_string()));
}

#[tokio::test]
async fn a_body_that_is_not_json_on_a_jsonrpc_rule_is_400_bad_request() {
    let Some(m) = Mcp::start(true) else { return };
    let out = m
        .client(
            "raw",
            json!({"body": "tools/call delete_everything", "content_type": "application/json"}),
        )
        .await;
    assert_eq!(out["status"], 400, "{out}");
    // tollgate's error, not the server's JSON-RPC parse error.
    let error: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(error["error"], "bad_request", "{out}");
    assert!(m.server.ran().is_empty());
    let record = wait_record(&m.proxy, |r| r["reason"] == "bad_request").await;
    assert_eq!(record["status"], 400, "{record}");
    assert_eq!(record["path"], "/mcp", "{record}");
}
