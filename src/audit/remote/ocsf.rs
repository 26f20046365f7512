//! Rendering a native audit record as an OCSF 1.3 event.
//!
//! Request records become **HTTP Activity** (`class_uid` 4002, category 4
//! "Network Activity"):
//!
//! | OCSF | from the record |
//! |---|---|
//! | `activity_id` / `activity_name` | `method`: CONNECT 1, DELETE 2, GET 3, HEAD 4, OPTIONS 5, POST 6, PUT 7, TRACE 8; anything else (PATCH included) 99 "Other" with `activity_name` the method |
//! | `type_uid` / `type_name` | `4002 * 100 + activity_id`, `"HTTP Activity: <activity_name>"` |
//! | `time` | `ts` as epoch milliseconds (now if `ts` is missing or malformed) |
//! | `severity_id` / `severity` | 1 "Informational" |
//! | `status_id` / `status` | 1 "Success" for `allow` and `approved`, else 2 "Failure" |
//! | `status_code` / `status_detail` | `decision` / `reason` |
//! | `action_id` / `action` | 1 "Allowed" (`allow`, `approved`), 2 "Denied" (`deny`, `approval_denied`, `rate_limited`), 99 with the decision otherwise (`error`) |
//! | `message` | `"<decision> <METHOD> <scheme>://<host>[:port]<path>"` |
//! | `http_request` | `http_method`, `url {scheme, hostname, port, path, query_string, url_string}` |
//! | `http_response` | `code` = `status` (the status sent to the client) |
//! | `src_endpoint` | `client` as `{ip, port}` |
//! | `dst_endpoint` | `{hostname: host, port}` |
//! | `actor` | `user {uid, name}` = the task id (the sandboxed workload acting); `authorizations [{decision, policy {uid, name}}]` = the decision under the task's policy |
//! | `firewall_rule` | `{name: rule}` when a rule matched (security_control profile) |
//! | `traffic` | `bytes_out` = `bytes_up`, `bytes_in` = `bytes_down`, `bytes` their sum |
//! | `duration` | `duration_ms` |
//! | `metadata` | `version` "1.3.0", `product {name, vendor_name: "tollgate", version}`, `uid` = `seq`, `sequence` = `seq`, `log_name` "audit", `original_time` = `ts`, `profiles` ["security_control"] |
//! | `unmapped.tollgate` | the native record, byte for byte (signature included), so a pipeline can verify it |
//!
//! Checkpoints (and any other record type) keep the same class so that the whole
//! chain lands in one place: `activity_id` 99 "Other" with `activity_name` the
//! record type capitalized (`"Checkpoint"`), `type_uid` 400299, `status` Success,
//! `message` `"audit checkpoint: <event>"`, no `http_request`.

use super::stamp;
use crate::audit::event::Decision;
use serde_json::{json, Map, Value};

/// OCSF HTTP Activity.
pub const CLASS_UID: u64 = 4002;
/// OCSF Network Activity.
pub const CATEGORY_UID: u64 = 4;
/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

fn activity(method: &str) -> (u64, String) {
    let known = match method {
        "CONNECT" => Some((1, "Connect")),
        "DELETE" => Some((2, "Delete")),
        "GET" => Some((3, "Get")),
        "HEAD" => Some((4, "Head")),
        "OPTIONS" => Some((5, "Options")),
        "POST" => Some((6, "Post")),
        "PUT" => Some((7, "Put")),
        "TRACE" => Some((8, "Trace")),
        _ => None,
    };
    match known {
        Some((id, name)) => (id, name.to_string()),
        None if method.is_empty() => (99, "Other".to_string()),
        None => (99, method.to_string()),
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Other".to_string(),
    }
}

/// Renders one native record line as an OCSF event (compact JSON, no newline).
/// `Err` when the line is not a JSON object.
pub fn render_ocsf(line: &[u8]) -> Result<Vec<u8>, String> {
    let record: Value =
        serde_json::from_slice(line).map_err(|e| format!("record is not JSON: {e}"))?;
    let Value::Object(rec) = &record else {
        return Err("record is not a JSON object".into());
    };
    let text = |k: &str| rec.get(k).and_then(Value::as_str);
    let number = |k: &str| rec.get(k).and_then(Value::as_u64);
    let ts = text("ts");
    let time = ts
        .and_then(crate::text::parse_rfc3339_ms)
        .unwrap_or_else(stamp::now_ms);
    let kind = text("type").unwrap_or("");

    let mut ev = Map::new();
    let mut put = |k: &str, v: Value| {
        ev.insert(k.to_string(), v);
    };
    put("class_uid", json!(CLASS_UID));
    put("class_name", json!("HTTP Activity"));
    put("category_uid", json!(CATEGORY_UID));
    put("category_name", json!("Network Activity"));
    put("time", json!(time));
    put("severity_id", json!(1));
    put("severity", json!("Informational"));

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": "tollgate", "vendor_name": "tollgate", "version": env!("CARGO_PKG_VERSION")}),
    );
    metadata.insert("log_name".into(), json!("audit"));
    if let Some(seq) = number("seq") {
        metadata.insert("uid".into(), json!(seq.to_string()));
        metadata.insert("sequence".into(), json!(seq));
    }
    if let Some(ts) = ts {
        metadata.insert("original_time".into(), json!(ts));
    }

    if kind == "request" {
        let method = text("method").unwrap_or("");
        let (activity_id, activity_name) = activity(method);
        let decision = text("decision").unwrap_or("");
        let known = Decision::parse(decision);
        let (status_id, status) = match known {
            Some(d) if d.let_through() => (1, "Success"),
            _ => (2, "Failure"),
        };
        let (action_id, action) = match known {
            Some(Decision::Allow | Decision::Approved) => (1, "Allowed"),
            Some(Decision::Deny | Decision::ApprovalDenied | Decision::RateLimited) => {
                (2, "Denied")
            }
            Some(Decision::Error) | None => (99, decision),
        };
        put("activity_id", json!(activity_id));
        put("type_uid", json!(CLASS_UID * 100 + activity_id));
        put(
            "type_name",
            json!(format!("HTTP Activity: {activity_name}")),
        );
        put("activity_name", json!(activity_name));
        put("status_id", json!(status_id));
        put("status", json!(status));
        put("status_code", json!(decision));
        if let Some(reason) = text("reason") {
            put("status_detail", json!(reason));
        }
        put("action_id", json!(action_id));
        put("action", json!(action));

        let scheme = text("scheme");
        let host = text("host");
        let port = number("port");
        let path = text("path");
        let query = text("query");
        let mut url = Map::new();
        if let Some(s) = scheme {
            url.insert("scheme".into(), json!(s));
        }
        if let Some(h) = host {
            url.insert("hostname".into(), json!(h));
        }
        if let Some(p) = port {
            url.insert("port".into(), json!(p));
        }
        if let Some(p) = path {
            url.insert("path".into(), json!(p));
        }
        if let Some(q) = query {
            url.insert("query_string".into(), json!(q));
        }
        let mut target = String::new();
        if let (Some(s), Some(h)) = (scheme, host) {
            let default_port = matches!((s, port), ("https", Some(443)) | ("http", Some(80)));
            target = match port {
                Some(p) if !default_port => format!("{s}://{h}:{p}"),
                _ => format!("{s}://{h}"),
            };
            target.push_str(path.unwrap_or(""));
            let mut url_string = target.clone();
            if let Some(q) = query.filter(|q| !q.is_empty()) {
                url_string.push('?');
                url_string.push_str(q);
            }
            url.insert("url_string".into(), json!(url_string));
        } else if let Some(h) = host {
            target = h.to_string();
        }
        let mut request = Map::new();
        if !method.is_empty() {
            request.insert("http_method".into(), json!(method));
        }
        if !url.is_empty() {
            request.insert("url".into(), Value::Object(url));
        }
        put("http_request", Value::Object(request));
        if let Some(code) = number("status") {
            put("http_response", json!({ "code": code }));
        }
        put(
            "message",
            json!(format!("{decision} {method} {target}").trim().to_string()),
        );

        if let Some(client) = text("client") {
            match client.parse::<std::net::SocketAddr>() {
                Ok(addr) => put(
                    "src_endpoint",
                    json!({"ip": addr.ip().to_string(), "port": addr.port()}),
                ),
                Err(_) => put("src_endpoint", json!({ "name": client })),
            }
        }
        let mut dst = Map::new();
        if let Some(h) = host {
            dst.insert("hostname".into(), json!(h));
        }
        if let Some(p) = port {
            dst.insert("port".into(), json!(p));
        }
        if !dst.is_empty() {
            put("dst_endpoint", Value::Object(dst));
        }

        let mut actor = Map::new();
        if let Some(task) = text("task") {
            actor.insert("user".into(), json!({"uid": task, "name": task}));
        }
        if let Some(policy) = text("policy") {
            actor.insert(
                "authorizations".into(),
                json!([{ "decision": decision, "policy": { "uid": policy, "name": policy } }]),
            );
        }
        if !actor.is_empty() {
            put("actor", Value::Object(actor));
        }
        if let Some(rule) = text("rule") {
            put("firewall_rule", json!({ "name": rule }));
        }
        let up = number("bytes_up");
        let down = number("bytes_down");
        if up.is_some() || down.is_some() {
            let (up, down) = (up.unwrap_or(0), down.unwrap_or(0));
            put(
                "traffic",
                json!({"bytes_out": up, "bytes_in": down, "bytes": up.saturating_add(down)}),
            );
        }
        if let Some(ms) = number("duration_ms") {
            put("duration", json!(ms));
        }
        metadata.insert("profiles".into(), json!(["security_control"]));
    } else {
        let activity_name = capitalized(kind);
        put("activity_id", json!(99));
        put("type_uid", json!(CLASS_UID * 100 + 99));
        put(
            "type_name",
            json!(format!("HTTP Activity: {activity_name}")),
        );
        put("activity_name", json!(activity_name));
        put("status_id", json!(1));
        put("status", json!("Success"));
        let event = rec.get("event").map(|e| match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let label = if kind.is_empty() { "record" } else { kind };
        put(
            "message",
            json!(match event {
                Some(ev) => format!("audit {label}: {ev}"),
                None => format!("audit {label}"),
            }),
        );
    }
    put("metadata", Value::Object(metadata));

    // The native record goes in verbatim (it was just checked to be a JSON
    // object), so its canonical bytes and signature survive untouched.
    let mut out = serde_json::to_vec(&Value::Object(ev)).map_err(|e| e.to_string())?;
    out.pop(); // the closing brace; the map is never empty
    out.extend_from_slice(b",\"unmapped\":{\"tollgate\":");
    out.extend_from_slice(line.trim_ascii());
    out.extend_from_slice(b"}}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"v":1,"type":"request","seq":42,"ts":"2026-11-23T05:00:00.123Z","task":"ci-42","policy":"github-reader","client":"10.200.0.2:51234","method":"GET","scheme":"https","host":"api.github.com","port":443,"path":"/repos/acme/x/pulls","query":"state=open","decision":"allow","rule":"read pulls","reason":null,"secrets":["GITHUB_TOKEN"],"status":200,"bytes_up":0,"bytes_down":5120,"duration_ms":12,"key_id":"3f9a","prev":"00","sig":"c2ln"}"#;

    fn render(line: &str) -> Value {
        let out = render_ocsf(line.as_bytes()).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn request_maps_to_http_activity() {
        let ev = render(REQUEST);
        assert_eq!(ev["class_uid"], 4002);
        assert_eq!(ev["category_uid"], 4);
        assert_eq!(ev["activity_id"], 3);
        assert_eq!(ev["activity_name"], "Get");
        assert_eq!(ev["type_uid"], 400_203);
        assert_eq!(ev["time"], 1_795_410_000_123i64);
        assert_eq!(ev["severity_id"], 1);
        assert_eq!(ev["status_id"], 1);
        assert_eq!(ev["status"], "Success");
        assert_eq!(ev["action_id"], 1);
        assert!(ev.get("status_detail").is_none());
        assert_eq!(ev["http_request"]["http_method"], "GET");
        let url = &ev["http_request"]["url"];
        assert_eq!(url["hostname"], "api.github.com");
        assert_eq!(url["port"], 443);
        assert_eq!(url["path"], "/repos/acme/x/pulls");
        assert_eq!(url["query_string"], "state=open");
        assert_eq!(url["scheme"], "https");
        assert_eq!(
            url["url_string"],
            "https://api.github.com/repos/acme/x/pulls?state=open"
        );
        assert_eq!(ev["http_response"]["code"], 200);
        assert_eq!(ev["src_endpoint"]["ip"], "10.200.0.2");
        assert_eq!(ev["src_endpoint"]["port"], 51234);
        assert_eq!(ev["dst_endpoint"]["hostname"], "api.github.com");
        assert_eq!(ev["actor"]["user"]["uid"], "ci-42");
        assert_eq!(
            ev["actor"]["authorizations"][0]["policy"]["name"],
            "github-reader"
        );
        assert_eq!(ev["firewall_rule"]["name"], "read pulls");
        assert_eq!(ev["traffic"]["bytes_in"], 5120);
        assert_eq!(ev["traffic"]["bytes_out"], 0);
        assert_eq!(ev["duration"], 12);
        assert_eq!(ev["metadata"]["version"], "1.3.0");
        assert_eq!(ev["metadata"]["product"]["name"], "tollgate");
        assert_eq!(ev["metadata"]["product"]["vendor_name"], "tollgate");
        assert_eq!(ev["metadata"]["sequence"], 42);
        assert_eq!(
            ev["message"],
            "allow GET https://api.github.com/repos/acme/x/pulls"
        );
        // The native record, signature included, is carried whole and verbatim.
        let native: Value = serde_json::from_str(REQUEST).unwrap();
        assert_eq!(ev["unmapped"]["tollgate"], native);
        let raw = String::from_utf8(render_ocsf(REQUEST.as_bytes()).unwrap()).unwrap();
        assert!(raw.ends_with(&format!(",\"unmapped\":{{\"tollgate\":{REQUEST}}}}}")));
    }

    #[test]
    fn methods_and_decisions() {
        for (method, id, name) in [
            ("CONNECT", 1, "Connect"),
            ("DELETE", 2, "Delete"),
            ("HEAD", 4, "Head"),
            ("OPTIONS", 5, "Options"),
            ("POST", 6, "Post"),
            ("PUT", 7, "Put"),
            ("TRACE", 8, "Trace"),
            ("PATCH", 99, "PATCH"),
            ("PROPFIND", 99, "PROPFIND"),
        ] {
            let line = REQUEST.replace("\"GET\"", &format!("\"{method}\""));
            let ev = render(&line);
            assert_eq!(ev["activity_id"], id, "{method}");
            assert_eq!(ev["activity_name"], name, "{method}");
            assert_eq!(ev["type_uid"], 400_200 + id, "{method}");
        }
        for (decision, status_id, action_id) in [
            ("approved", 1, 1),
            ("deny", 2, 2),
            ("rate_limited", 2, 2),
            ("approval_denied", 2, 2),
            ("error", 2, 99),
        ] {
            let line = REQUEST
                .replace("\"allow\"", &format!("\"{decision}\""))
                .replace("\"reason\":null", "\"reason\":\"no rule\"");
            let ev = render(&line);
            assert_eq!(ev["status_id"], status_id, "{decision}");
            assert_eq!(ev["action_id"], action_id, "{decision}");
            assert_eq!(ev["status_code"], decision);
            assert_eq!(ev["status_detail"], "no rule");
        }
        // A non-default port shows in url_string; a missing query does not.
        let line = REQUEST
            .replace("\"port\":443", "\"port\":8443")
            .replace("\"query\":\"state=open\"", "\"query\":null");
        let ev = render(&line);
        assert_eq!(
            ev["http_request"]["url"]["url_string"],
            "https://api.github.com:8443/repos/acme/x/pulls"
        );
        assert!(ev["http_request"]["url"].get("query_string").is_none());
    }

    #[test]
    fn checkpoint_is_activity_other() {
        let line = r#"{"event":"start","key_id":"3f9a","prev":"00","seq":7,"sig":"c2ln","ts":"2026-11-23T05:00:00.000Z","type":"checkpoint","v":1}"#;
        let ev = render(line);
        assert_eq!(ev["class_uid"], 4002);
        assert_eq!(ev["activity_id"], 99);
        assert_eq!(ev["activity_name"], "Checkpoint");
        assert_eq!(ev["type_uid"], 400_299);
        assert_eq!(ev["status_id"], 1);
        assert_eq!(ev["time"], 1_795_410_000_000i64);
        assert_eq!(ev["message"], "audit checkpoint: start");
        assert!(ev.get("http_request").is_none());
        assert_eq!(
            ev["unmapped"]["tollgate"],
            serde_json::from_str::<Value>(line).unwrap()
        );
    }

    #[test]
    fn not_a_record() {
        assert!(render_ocsf(b"not json").is_err());
        assert!(render_ocsf(b"[1,2]").is_err());
    }
}
