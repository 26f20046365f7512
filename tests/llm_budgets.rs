//! LLM budgets end to end (DESIGN.md "Budgets"): the official `openai` and
//! `anthropic` Python clients (tests/llm/client.py) call a local double of
//! the providers' APIs (tests/llm/server.py, the real wire formats in JSON and
//! SSE, 11 input and 7 output tokens per call) through tollgate. The budget
//! stops the N+1-th call with 429 `budget_exceeded` before it reaches the
//! upstream, streaming and non-streaming calls charge alike, `on_exceed:
//! approve` holds the call until a person answers, and an upload that crosses
//! `bytes_up` is cut.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "the helpers panic on a failed setup, which fails the test"
)]

mod common;

use common::python::PyServer;
use common::upstream::TestCa;
use common::{
    admin_call, audit_records, curl, start_proxy, wait_record, CurlOut, ProxyProc, ProxySetup,
};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const OPENAI: &str = "api.openai.test";
const ANTHROPIC: &str = "api.anthropic.test";
const OPENAI_SECRET: &str = "sk-proj-test-0123456789abcdefOPENAI";
const ANTHROPIC_SECRET: &str = "sk-ant-api03-test-0123456789ANTHROPIC";
/// Tokens the double reports per call: 11 input + 7 output.
const PER_CALL: u64 = 18;

/// Whether python3 with the official clients is here; skips loudly when not.
fn python_ready() -> bool {
    common::python::has_modules(
        "openai, anthropic",
        "openai and anthropic for tests/llm/client.py",
    )
}

/// tests/llm/server.py with a certificate for both API hosts, killed on drop.
struct LlmDouble(PyServer);

impl std::ops::Deref for LlmDouble {
    type Target = PyServer;

    fn deref(&self) -> &PyServer {
        &self.0
    }
}

impl LlmDouble {
    /// Starts the double; `config` adds to its cert, key and API keys
    /// (e.g. `models`).
    fn start(ca: &TestCa, mut config: Value) -> LlmDouble {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf_pem(&[OPENAI, ANTHROPIC]);
        config["cert"] = json!(common::write_file(dir.path(), "cert.pem", &cert));
        config["key"] = json!(common::write_file(dir.path(), "key.pem", &key));
        config["port"] = json!(0);
        config["api_keys"] = json!({"openai": OPENAI_SECRET, "anthropic": ANTHROPIC_SECRET});
        common::write_file(dir.path(), "ca.pem", &ca.cert_pem);
        LlmDouble(PyServer::start("tests/llm/server.py", dir, &config))
    }

    /// Every request the double got, in order (straight to it, not through
    /// tollgate).
    async fn hits(&self) -> Vec<Value> {
        let ca = self.dir.path().join("ca.pem");
        let resolve = format!("{OPENAI}:{}:127.0.0.1", self.port);
        let url = format!("https://{OPENAI}:{}/_hits", self.port);
        let out = common::curl_raw(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ])
        .await;
        assert_eq!(out.status, 200, "{out:?}");
        out.json().as_array().cloned().unwrap()
    }

    /// How many requests reached `path`.
    async fn hits_on(&self, path: &str) -> usize {
        self.hits()
            .await
            .iter()
            .filter(|h| h["path"] == path)
            .count()
    }
}

/// A policy for both APIs (and `/upload` on the OpenAI host), with `budgets`
/// (YAML lines under `budgets:`, indented by two).
fn policy(port: u16, budgets: &str) -> String {
    format!(
        r#"name: llm
secrets:
  OPENAI_KEY: {{ env: OPENAI_KEY, hosts: [{OPENAI}] }}
  ANTHROPIC_KEY: {{ env: ANTHROPIC_KEY, hosts: [{ANTHROPIC}] }}
budgets:
{budgets}
rules:
  - name: openai
    host: {OPENAI}
    port: {port}
    methods: [POST]
    paths: ["/v1/chat/completions", "/v1/responses"]
    inject: [OPENAI_KEY]
  - name: anthropic
    host: {ANTHROPIC}
    port: {port}
    methods: [POST]
    paths: ["/v1/messages"]
    inject: [ANTHROPIC_KEY]
  - name: upload
    host: {OPENAI}
    port: {port}
    methods: [POST]
    paths: ["/upload"]
"#
    )
}

/// The double and tollgate in front of it.
struct Fixture {
    llm: LlmDouble,
    proxy: ProxyProc,
}

/// `None` (skipped) when the Python clients are missing.
fn fixture(budgets: &str, double_config: Value) -> Option<Fixture> {
    if !python_ready() {
        return None;
    }
    let ca = TestCa::new("llm test CA");
    let llm = LlmDouble::start(&ca, double_config);
    let mut setup = ProxySetup::with_policy("llm", &policy(llm.port, budgets))
        .trust(&ca.cert_pem)
        .resolve(OPENAI, llm.port)
        .resolve(ANTHROPIC, llm.port);
    setup.env = vec![
        ("TOLLGATE_SECRET_OPENAI_KEY".into(), OPENAI_SECRET.into()),
        (
            "TOLLGATE_SECRET_ANTHROPIC_KEY".into(),
            ANTHROPIC_SECRET.into(),
        ),
    ];
    let proxy = start_proxy(&setup);
    Some(Fixture { llm, proxy })
}

/// The `tests/llm/client.py` command for `call` (e.g. `openai chat json`)
/// made `n` times through the proxy.
fn client_command(f: &Fixture, call: &str, n: u32) -> tokio::process::Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/llm/client.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .args(["--port", &f.llm.port.to_string()])
        .args(["--proxy", &f.proxy.url()])
        .arg("--ca")
        .arg(&f.proxy.ca_pem)
        .args(["--timeout", "60"])
        .args(call.split_whitespace())
        .arg(n.to_string());
    for var in common::python::PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Parses the client's JSON lines; panics with its stderr when it failed.
fn call_results(out: std::process::Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stdout}\n{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect()
}

/// Makes `call` `n` times in a row through tollgate; one result per call.
async fn calls(f: &Fixture, call: &str, n: u32) -> Vec<Value> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        client_command(f, call, n).output(),
    )
    .await
    .expect("the client finished")
    .unwrap();
    let results = call_results(out);
    assert_eq!(results.len(), n as usize, "{results:?}");
    results
}

/// Starts `call` once in the background (a call that will be held).
fn spawn_call(f: &Fixture, call: &str) -> tokio::task::JoinHandle<Vec<Value>> {
    let child = client_command(f, call, 1).spawn().unwrap();
    tokio::spawn(async move { call_results(child.wait_with_output().await.unwrap()) })
}

/// Waits (up to 60 s) for a background call and returns its one result.
async fn finished(call: tokio::task::JoinHandle<Vec<Value>>) -> Value {
    let results = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the held call was answered")
        .unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    results[0].clone()
}

/// `ok` for a call that succeeded with the double's usage, else its status.
fn outcome(result: &Value) -> String {
    if result["ok"] == true {
        assert_eq!(result["input_tokens"], 11, "{result}");
        assert_eq!(result["output_tokens"], 7, "{result}");
        "ok".into()
    } else {
        result["status"].to_string()
    }
}

fn outcomes(results: &[Value]) -> Vec<String> {
    results.iter().map(outcome).collect()
}

/// A refusal as DESIGN.md has it: 429 `budget_exceeded`, the reason header,
/// no Retry-After (waiting does not help).
fn assert_budget_refusal(result: &Value, budget: &str) {
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["status"], 429, "{result}");
    assert_eq!(result["body"]["error"], "budget_exceeded", "{result}");
    assert!(
        result["body"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(budget)),
        "the message names the {budget} budget: {result}"
    );
    assert_eq!(
        result["headers"]["x-tollgate-reason"], "budget_exceeded",
        "{result}"
    );
    assert_eq!(result["headers"]["retry-after"], Value::Null, "{result}");
}

/// The audit records of requests to `path` that went upstream, in order,
/// once there are `at_least` of them (an allowed exchange is recorded when
/// its body ends, which may be just after the client has it) or 5 s passed.
fn forwarded_records(proxy: &ProxyProc, path: &str, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records: Vec<Value> = audit_records(proxy)
            .into_iter()
            .filter(|r| r["path"] == path && r["status"] != 429 && r["llm"].is_object())
            .collect();
        if records.len() >= at_least || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /v1/tasks/agent` → its `budgets`.
async fn task_budgets(proxy: &ProxyProc) -> Value {
    let shown = admin_call(proxy, "GET", &format!("/v1/tasks/{}", common::TASK), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    shown.json()["budgets"].clone()
}

/// Checks the usage every forwarded call to `path` was audited with, and that
/// exactly the `crossing`-th (1-based) says it crossed `budget`.
fn assert_usage_audited(proxy: &ProxyProc, path: &str, model: &str, crossing: usize, budget: &str) {
    let records = forwarded_records(proxy, path, crossing);
    assert!(records.len() >= crossing, "{records:?}");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            record["llm"],
            json!({"model": model, "input_tokens": 11, "output_tokens": 7}),
            "{record}"
        );
        if i + 1 == crossing {
            assert_eq!(
                record["budget"], budget,
                "the crossing request says so: {record}"
            );
        } else {
            assert_eq!(record["budget"], Value::Null, "{record}");
        }
    }
}

#[tokio::test]
async fn the_official_clients_see_a_used_up_requests_budget_as_429_budget_exceeded() {
    let Some(f) = fixture("  requests: 3\n  on_exceed: deny", json!({})) else {
        return;
    };
    let results = calls(&f, "openai chat stream", 4).await;
    assert_eq!(outcomes(&results), ["ok", "ok", "ok", "429"], "{results:?}");
    assert_budget_refusal(&results[3], "requests");
    let anthropic = calls(&f, "anthropic messages json", 1).await;
    assert_budget_refusal(&anthropic[0], "requests");
    let hits = f.llm.hits().await;
    assert_eq!(hits.len(), 3, "refused calls never reach the API: {hits:?}");
    assert!(
        hits.iter().all(|h| h["unauthorized"].is_null()),
        "tollgate swapped the key placeholder: {hits:?}"
    );
}

const TOKENS_50: &str =
    "  llm:\n    hosts: [api.openai.test, api.anthropic.test]\n    tokens: 50\n  on_exceed: deny";

#[tokio::test]
async fn openai_chat_json_and_stream_charge_alike_and_the_fourth_call_gets_429() {
    let Some(f) = fixture(TOKENS_50, json!({})) else {
        return;
    };
    // 18 tokens a call: use 0 and 18 before the JSON calls, 36 before the
    // first streamed one (which crosses 50), 54 before the fourth.
    let json_calls = calls(&f, "openai chat json", 2).await;
    assert_eq!(outcomes(&json_calls), ["ok", "ok"], "{json_calls:?}");
    let streamed = calls(&f, "openai chat stream", 2).await;
    assert_eq!(outcomes(&streamed), ["ok", "429"], "{streamed:?}");
    assert_budget_refusal(&streamed[1], "llm_tokens");

    assert_eq!(
        f.llm.hits_on("/v1/chat/completions").await,
        3,
        "the refused call never reached the API"
    );
    let hits = f.llm.hits().await;
    assert!(
        hits.iter().all(|h| h["unauthorized"].is_null()),
        "tollgate swapped the key placeholder: {hits:?}"
    );
    assert_eq!(hits[2]["stream"], true);
    assert_eq!(hits[2]["include_usage"], true);

    assert_usage_audited(&f.proxy, "/v1/chat/completions", "gpt-4.1", 3, "llm_tokens");
    let refused = wait_record(&f.proxy, |r| {
        r["path"] == "/v1/chat/completions" && r["status"] == 429
    })
    .await;
    assert_eq!(refused["reason"], "budget_exceeded", "{refused}");
    assert_eq!(
        task_budgets(&f.proxy).await["llm_tokens"],
        json!({"used": 3 * PER_CALL, "limit": 50}),
        "JSON and streamed calls are charged 18 tokens each"
    );
}

#[tokio::test]
async fn openai_responses_json_and_stream_both_charge() {
    let Some(f) = fixture(TOKENS_50, json!({})) else {
        return;
    };
    let streamed = calls(&f, "openai responses stream", 2).await;
    assert_eq!(outcomes(&streamed), ["ok", "ok"], "{streamed:?}");
    let json_calls = calls(&f, "openai responses json", 2).await;
    assert_eq!(outcomes(&json_calls), ["ok", "429"], "{json_calls:?}");
    assert_budget_refusal(&json_calls[1], "llm_tokens");
    assert_eq!(f.llm.hits_on("/v1/responses").await, 3);
    assert_usage_audited(&f.proxy, "/v1/responses", "gpt-4.1", 3, "llm_tokens");
    assert_eq!(
        task_budgets(&f.proxy).await["llm_tokens"],
        json!({"used": 3 * PER_CALL, "limit": 50})
    );
}

#[tokio::test]
async fn anthropic_messages_json_and_stream_both_charge() {
    let Some(f) = fixture(TOKENS_50, json!({})) else {
        return;
    };
    // The stream's message_start says 1 output token and message_delta the
    // cumulative 7: a call is 18 tokens, not 19.
    let streamed = calls(&f, "anthropic messages stream", 2).await;
    assert_eq!(outcomes(&streamed), ["ok", "ok"], "{streamed:?}");
    let json_calls = calls(&f, "anthropic messages json", 2).await;
    assert_eq!(outcomes(&json_calls), ["ok", "429"], "{json_calls:?}");
    assert_budget_refusal(&json_calls[1], "llm_tokens");
    assert_eq!(f.llm.hits_on("/v1/messages").await, 3);
    let hits = f.llm.hits().await;
    assert!(hits.iter().all(|h| h["unauthorized"].is_null()), "{hits:?}");
    assert_usage_audited(
        &f.proxy,
        "/v1/messages",
        "claude-sonnet-4-5",
        3,
        "llm_tokens",
    );
    assert_eq!(
        task_budgets(&f.proxy).await["llm_tokens"],
        json!({"used": 3 * PER_CALL, "limit": 50})
    );

    // The budget is the task's, across providers: OpenAI is refused too.
    let openai = calls(&f, "openai chat json", 1).await;
    assert_budget_refusal(&openai[0], "llm_tokens");
    assert_eq!(f.llm.hits_on("/v1/chat/completions").await, 0);
}

#[tokio::test]
async fn a_usd_budget_prices_the_dated_model_and_stops_the_fourth_call() {
    // gpt-4.1 at 2 and 8 USD per million tokens: 11 * 2 + 7 * 8 = 78 µUSD a
    // call, so 0.0002 USD lets three calls out (use 0, 78, 156 < 200). The
    // API names the dated snapshot, which the `gpt-4.1` price covers.
    let budgets = "  llm:\n    hosts: [api.openai.test]\n    usd: 0.0002\n    prices: { \"gpt-4.1\": { input: 2.0, output: 8.0 } }\n  on_exceed: deny";
    let Some(f) = fixture(
        budgets,
        json!({"models": {"gpt-4.1": "gpt-4.1-2025-04-14"}}),
    ) else {
        return;
    };
    let results = calls(&f, "openai chat stream", 4).await;
    assert_eq!(outcomes(&results), ["ok", "ok", "ok", "429"], "{results:?}");
    assert_eq!(results[0]["model"], "gpt-4.1-2025-04-14");
    assert_budget_refusal(&results[3], "llm_usd");
    assert_eq!(f.llm.hits_on("/v1/chat/completions").await, 3);
    let records = forwarded_records(&f.proxy, "/v1/chat/completions", 3);
    assert_eq!(records.len(), 3, "{records:?}");
    for record in &records {
        assert_eq!(record["llm"]["model"], "gpt-4.1-2025-04-14", "{record}");
        assert_eq!(record["llm"]["input_tokens"], 11, "{record}");
        assert_eq!(record["llm"]["output_tokens"], 7, "{record}");
    }
    assert_eq!(records[2]["budget"], "llm_usd", "{:?}", records[2]);
    let budgets = task_budgets(&f.proxy).await;
    assert!(budgets["llm_usd"].is_object(), "{budgets}");
    assert!(
        budgets["llm_tokens"].is_null(),
        "no token budget set: {budgets}"
    );
}

#[tokio::test]
async fn a_stream_without_usage_is_let_through_and_audited_as_missing() {
    let Some(f) = fixture(TOKENS_50, json!({})) else {
        return;
    };
    let results = calls(&f, "openai chat stream-no-usage", 2).await;
    assert!(results.iter().all(|r| r["ok"] == true), "{results:?}");
    assert_eq!(
        results[0]["input_tokens"],
        Value::Null,
        "the API sent no usage"
    );
    assert_eq!(f.llm.hits_on("/v1/chat/completions").await, 2);
    let hits = f.llm.hits().await;
    assert_eq!(hits[0]["include_usage"], false, "{hits:?}");
    let records = forwarded_records(&f.proxy, "/v1/chat/completions", 2);
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["llm"]["usage"], "missing", "{record}");
    }
}

const TOKENS_50_APPROVE: &str =
    "  llm:\n    hosts: [api.openai.test, api.anthropic.test]\n    tokens: 50\n  on_exceed: approve";

/// Calls the admin API with a JSON body.
async fn admin(proxy: &ProxyProc, method: &str, path: &str, body: Option<Value>) -> CurlOut {
    let body = body.map(|b| b.to_string());
    admin_call(proxy, method, path, body.as_deref()).await
}

/// Waits (up to 20 s) for exactly one pending hold and returns it.
async fn only_hold(proxy: &ProxyProc) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = admin(proxy, "GET", "/v1/approvals", None).await;
        assert_eq!(out.status, 200, "{out:?}");
        let holds = out.json().as_array().cloned().unwrap_or_default();
        if holds.len() == 1 {
            return holds[0].clone();
        }
        assert!(holds.len() < 2, "{holds:?}");
        assert!(Instant::now() < deadline, "no call was held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_on_exceed_approve_the_fourth_call_waits_for_a_person() {
    let Some(f) = fixture(TOKENS_50_APPROVE, json!({})) else {
        return;
    };
    let first = calls(&f, "openai chat json", 3).await;
    assert_eq!(outcomes(&first), ["ok", "ok", "ok"], "{first:?}");

    let fourth = spawn_call(&f, "openai chat stream");
    let hold = only_hold(&f.proxy).await;
    assert_eq!(hold["host"], OPENAI, "{hold}");
    assert_eq!(hold["path"], "/v1/chat/completions", "{hold}");
    assert_eq!(hold["task"], common::TASK, "{hold}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        f.llm.hits_on("/v1/chat/completions").await,
        3,
        "a held call has not gone out"
    );
    let id = hold["id"].as_str().unwrap().to_string();
    let answer = admin(
        &f.proxy,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"by": "carol", "reason": "one more"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(outcome(&finished(fourth).await), "ok");
    assert_eq!(f.llm.hits_on("/v1/chat/completions").await, 4);
    let record = wait_record(&f.proxy, |r| {
        r["path"] == "/v1/chat/completions" && r["approval"]["id"] == id.as_str()
    })
    .await;
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(record["approval"]["by"], "carol", "{record}");

    // That approval covered one call: the next is held again, and a denial
    // answers 403 without it going out.
    let fifth = spawn_call(&f, "openai chat json");
    let hold = only_hold(&f.proxy).await;
    let id = hold["id"].as_str().unwrap();
    let answer = admin(&f.proxy, "POST", &format!("/v1/approvals/{id}/deny"), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let denied = finished(fifth).await;
    assert_eq!(denied["status"], 403, "{denied}");
    assert_eq!(denied["body"]["error"], "approval_denied", "{denied}");
    assert_eq!(f.llm.hits_on("/v1/chat/completions").await, 4);
}

#[tokio::test]
async fn an_approval_for_a_minute_lifts_the_budget_for_later_calls_too() {
    let Some(f) = fixture(TOKENS_50_APPROVE, json!({})) else {
        return;
    };
    let first = calls(&f, "anthropic messages json", 3).await;
    assert_eq!(outcomes(&first), ["ok", "ok", "ok"], "{first:?}");

    let fourth = spawn_call(&f, "anthropic messages stream");
    let id = only_hold(&f.proxy).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = admin(
        &f.proxy,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"by": "carol", "for": "1m"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let grant = answer.json()["grant"]["id"].as_str().unwrap().to_string();
    assert_eq!(outcome(&finished(fourth).await), "ok");

    // Inside the window the calls go out without waiting.
    let later = calls(&f, "anthropic messages json", 2).await;
    assert_eq!(outcomes(&later), ["ok", "ok"], "{later:?}");
    assert_eq!(f.llm.hits_on("/v1/messages").await, 6);
    let records = forwarded_records(&f.proxy, "/v1/messages", 6);
    assert_eq!(records.len(), 6, "{records:?}");
    for record in &records[4..] {
        assert_eq!(
            record["approval"]["grant"],
            grant.as_str(),
            "the audit says so: {record}"
        );
    }
    assert_eq!(
        task_budgets(&f.proxy).await["llm_tokens"],
        json!({"used": 6 * PER_CALL, "limit": 50}),
        "calls under the grant are still charged"
    );
}

#[tokio::test]
async fn an_upload_that_crosses_bytes_up_is_cut_and_the_next_request_is_refused() {
    let Some(f) = fixture("  bytes_up: 64KiB\n  on_exceed: deny", json!({})) else {
        return;
    };
    let file = common::write_file_bytes(f.llm.dir.path(), "upload.bin", &vec![b'x'; 1 << 20]);
    let data = format!("@{}", file.display());
    let url = format!("https://{OPENAI}:{}/upload", f.llm.port);
    let upload = curl(&f.proxy, &["-H", "Expect:", "--data-binary", &data, &url]).await;
    assert!(
        upload.status != 200 || upload.exit != 0,
        "the 1 MiB upload does not complete: {upload:?}"
    );
    // The upstream got nothing (cut before hyper wrote the head) or a part of
    // the body, never more than the budget.
    let hits = f.llm.hits().await;
    assert!(hits.len() <= 1, "{hits:?}");
    for hit in &hits {
        assert_eq!(
            hit["complete"], false,
            "the upstream never got the whole body: {hits:?}"
        );
        let received = hit["body_bytes"].as_u64().unwrap();
        assert!(received <= 64 * 1024, "the upstream got {received} bytes");
    }
    let before = hits.len();

    let next = curl(&f.proxy, &["--data-binary", "small", &url]).await;
    assert_eq!(next.status, 429, "{next:?}");
    assert_eq!(next.json()["error"], "budget_exceeded", "{next:?}");
    assert!(
        next.json()["message"]
            .as_str()
            .unwrap()
            .contains("bytes_up budget is used up"),
        "{next:?}"
    );
    assert_eq!(next.header("retry-after"), None);
    assert_eq!(
        f.llm.hits().await.len(),
        before,
        "the refused request never arrived"
    );
}
