//! `tollgate approvals`: list, approve and deny held requests over the admin API.
//!
//! The admin API is `--admin URL` or, without it, the config's `admin.listen`.
//! The token is `--admin-token-file FILE`, else `$TOLLGATE_ADMIN_TOKEN`, else
//! (without `--admin` only, so a token is never sent to a proxy it does not
//! belong to) the config's `admin.token_file` when it is readable.
//!
//! Everything shown comes from the sandbox (host, path, content type) or from a
//! policy file (rule names), so it passes through [`sanitize`] before it reaches
//! the operator's terminal.

use crate::admin::client::{admin_token, AdminClient, AdminError};
use crate::cli::{ApprovalsArgs, ApprovalsCommand};
use crate::config::Config;
use anyhow::{anyhow, Context};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Widest task id shown before it is cut with `…`.
const TASK_WIDTH: usize = 24;
/// Widest host shown.
const HOST_WIDTH: usize = 40;
/// Widest path shown.
const PATH_WIDTH: usize = 60;
/// Widest rule name shown.
const RULE_WIDTH: usize = 32;
/// Widest content type shown.
const TYPE_WIDTH: usize = 40;

/// Runs `tollgate approvals ...`; the error is one line for `tollgate: ...`.
pub fn run(config: Option<&Path>, args: &ApprovalsArgs) -> anyhow::Result<()> {
    // What can be checked here is, before anything goes over the network.
    match &args.command {
        ApprovalsCommand::Approve { id, for_, .. } => {
            check_id(id)?;
            if let Some(dur) = for_ {
                crate::duration::parse_duration(dur).map_err(|e| anyhow!("--for: {e}"))?;
            }
        }
        ApprovalsCommand::Deny { id, .. } => check_id(id)?,
        ApprovalsCommand::List { .. } => {}
    }
    let client = client(config, args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = runtime.block_on(execute(&client, &args.command))?;
    println!("{out}");
    Ok(())
}

fn check_id(id: &str) -> anyhow::Result<()> {
    if id.trim().is_empty() {
        anyhow::bail!("the approval ID is empty (see `tollgate approvals list`)");
    }
    Ok(())
}

/// The client for `--admin`, or for the config's admin API.
fn client(config: Option<&Path>, args: &ApprovalsArgs) -> anyhow::Result<AdminClient> {
    const NEED_TOKEN: &str =
        "approvals needs the admin token: --admin-token-file FILE or $TOLLGATE_ADMIN_TOKEN";
    let given = admin_token(args.admin_token_file.as_deref());
    let (url, token) = match &args.admin {
        Some(url) => match given {
            Ok(token) => (url.clone(), token),
            Err(AdminError::NoToken) => anyhow::bail!("{NEED_TOKEN}"),
            Err(err) => return Err(err.into()),
        },
        None => {
            let config = Config::load_settings(config)?;
            let url = config_admin_url(&config.admin_listen)?;
            let token = match given {
                Ok(token) => token,
                Err(AdminError::NoToken) => std::fs::read_to_string(&config.admin_token_file)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| {
                        anyhow!(
                            "{NEED_TOKEN} (the config's token file {} is not readable: {e})",
                            config.admin_token_file.display()
                        )
                    })?,
                Err(err) => return Err(err.into()),
            };
            (url, token)
        }
    };
    Ok(AdminClient::new(&url, token)?)
}

/// The URL to reach an admin API that listens on `listen` (`ip:port` or
/// `unix:/path`); a wildcard address is reached on loopback.
fn config_admin_url(listen: &str) -> anyhow::Result<String> {
    if listen.starts_with("unix:") {
        return Ok(listen.to_string());
    }
    let mut addr: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow!("the config's admin listen address `{listen}` is not ip:port"))?;
    if addr.port() == 0 {
        anyhow::bail!(
            "the config's admin listen address `{listen}` has no fixed port; give --admin URL"
        );
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{addr}"))
}

/// Does the command; returns what to print on stdout.
async fn execute(client: &AdminClient, command: &ApprovalsCommand) -> anyhow::Result<String> {
    match command {
        ApprovalsCommand::List { json } => {
            let (status, answer) = client.call(Method::GET, "/v1/approvals", None).await?;
            if !status.is_success() {
                return Err(refusal(client.url(), status, &answer, None));
            }
            let Some(items) = answer.as_array() else {
                anyhow::bail!(
                    "{} answered GET /v1/approvals with something other than a JSON array",
                    client.url()
                );
            };
            if *json {
                let text = serde_json::to_string_pretty(&answer)?;
                Ok(sanitize_json(&text))
            } else if items.is_empty() {
                Ok("no requests are waiting for approval".to_string())
            } else {
                Ok(table(items))
            }
        }
        ApprovalsCommand::Approve {
            id,
            for_,
            reason,
            by,
        } => {
            let mut body = json!({ "by": by.clone().unwrap_or_else(env_by) });
            if let Some(reason) = reason {
                body["reason"] = json!(reason);
            }
            if let Some(dur) = for_ {
                body["for"] = json!(dur);
            }
            let answer = decide(client, id, "approve", body).await?;
            let mut line = format!("approved {}", answered_id(&answer, id));
            if let Some(grant) = answer.get("grant").filter(|g| g.is_object()) {
                let _ = write!(
                    line,
                    " (grant {} until {})",
                    sanitize(grant["id"].as_str().unwrap_or("?")),
                    sanitize(grant["until"].as_str().unwrap_or("?"))
                );
            }
            Ok(line)
        }
        ApprovalsCommand::Deny { id, reason, by } => {
            let mut body = json!({ "by": by.clone().unwrap_or_else(env_by) });
            if let Some(reason) = reason {
                body["reason"] = json!(reason);
            }
            let answer = decide(client, id, "deny", body).await?;
            Ok(format!("denied {}", answered_id(&answer, id)))
        }
    }
}

/// `POST /v1/approvals/{id}/{verb}`; the answer on success.
async fn decide(client: &AdminClient, id: &str, verb: &str, body: Value) -> anyhow::Result<Value> {
    let path = format!("/v1/approvals/{}/{verb}", encode_segment(id));
    let (status, answer) = client.call(Method::POST, &path, Some(body)).await?;
    if status.is_success() {
        Ok(answer)
    } else {
        Err(refusal(client.url(), status, &answer, Some(id)))
    }
}

fn answered_id(answer: &Value, asked: &str) -> String {
    sanitize(answer["id"].as_str().unwrap_or(asked))
}

/// The one-line error for a non-success answer.
fn refusal(url: &str, status: StatusCode, answer: &Value, id: Option<&str>) -> anyhow::Error {
    match (status, id) {
        (StatusCode::UNAUTHORIZED, _) => anyhow!(
            "the admin API refused the token (give it with --admin-token-file or $TOLLGATE_ADMIN_TOKEN)"
        ),
        (StatusCode::NOT_FOUND, Some(id)) => anyhow!(
            "no pending approval {} (already answered, timed out or withdrawn)",
            sanitize(id)
        ),
        _ => match answer["message"].as_str() {
            Some(message) => anyhow!("{url} answered {status}: {}", sanitize(message)),
            None => anyhow!("{url} answered {status}"),
        },
    }
}

/// Percent-encodes everything but unreserved characters, so an ID stays one
/// path segment.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `--by` when not given: `$SUDO_USER`, else `$USER`, else `cli`.
fn env_by() -> String {
    default_by(|name| std::env::var(name).ok())
}

/// `--by` when not given, from the environment `var` reads.
pub fn default_by(var: impl Fn(&str) -> Option<String>) -> String {
    ["SUDO_USER", "USER"]
        .iter()
        .find_map(|name| var(name).filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "cli".to_string())
}

/// Whether `c` could move the cursor, recolour or reorder what a terminal shows:
/// C0/C1 controls, DEL, bidi embeddings, overrides, isolates and marks, line and
/// paragraph separators, zero-width and other invisible format characters.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

/// `text` fit for a terminal: every control or bidi character written as `\u{..}`.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Serialized JSON fit for a terminal: the characters serde_json leaves as they
/// are (DEL, C1, bidi, ...) become `\uXXXX` escapes, which keeps it the same JSON.
/// Newlines are left: serde_json escapes those inside strings, so any left are
/// the pretty-printer's.
fn sanitize_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && is_unsafe(c) {
            // All such characters are in the Basic Multilingual Plane.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How long a request has waited: `42s`, `3m10s`, `1h2m`.
pub fn format_waited(ms: u64) -> String {
    let secs = ms / 1000;
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m", secs / 3600, secs % 3600 / 60)
    }
}

/// A byte count: `512 B`, `1.2 KiB`, `3.0 MiB`.
pub fn format_size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = "KiB";
    for next in ["MiB", "GiB", "TiB"] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// The BODY column: size and content type, or `-` for no body.
pub fn format_body(bytes: u64, content_type: Option<&str>) -> String {
    let content_type = content_type.filter(|t| !t.is_empty());
    match content_type {
        None if bytes == 0 => "-".to_string(),
        None => format_size(bytes),
        Some(t) => format!("{} {}", format_size(bytes), clip(&sanitize(t), TYPE_WIDTH)),
    }
}

/// The HOST column: `host`, with `:port` unless the port is 443 or 80.
fn format_host(host: &str, port: Option<u64>) -> String {
    let shown = clip(&sanitize(host), HOST_WIDTH);
    match port {
        Some(port) if port != 443 && port != 80 => {
            if host.contains(':') {
                format!("[{shown}]:{port}")
            } else {
                format!("{shown}:{port}")
            }
        }
        _ => shown,
    }
}

/// The pending requests as an aligned table with a header line.
pub fn table(items: &[Value]) -> String {
    let text = |item: &Value, key: &str| item[key].as_str().unwrap_or("").to_string();
    let mut rows: Vec<[String; 8]> = vec![[
        "ID", "TASK", "METHOD", "HOST", "PATH", "RULE", "WAITED", "BODY",
    ]
    .map(String::from)];
    for item in items {
        rows.push([
            sanitize(&text(item, "id")),
            clip(&sanitize(&text(item, "task")), TASK_WIDTH),
            clip(&sanitize(&text(item, "method")), 12),
            format_host(&text(item, "host"), item["port"].as_u64()),
            clip(&sanitize(&text(item, "path")), PATH_WIDTH),
            clip(&sanitize(&text(item, "rule")), RULE_WIDTH),
            format_waited(item["waited_ms"].as_u64().unwrap_or(0)),
            format_body(
                item["body_bytes"].as_u64().unwrap_or(0),
                item["content_type"].as_str(),
            ),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i] - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, path: &str, port: u64, waited: u64, bytes: u64, ct: Value) -> Value {
        json!({
            "id": id, "task": "t-1", "policy": "p", "rule": "merge needs a person",
            "method": "PUT", "host": "api.github.com", "port": port, "path": path,
            "since": "2026-11-23T05:00:00.123Z", "waited_ms": waited,
            "expires_at": "2026-11-23T05:05:00.123Z", "body_bytes": bytes,
            "content_type": ct,
        })
    }

    #[test]
    fn table_columns_line_up() {
        let items = [
            item(
                "a-1f2e",
                "/repos/acme/x/pulls/7/merge",
                443,
                1234,
                1234,
                json!("application/json"),
            ),
            item("a-2", "/", 8443, 190_000, 0, Value::Null),
        ];
        let out = table(&items);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(
            lines[0],
            "ID      TASK  METHOD  HOST                 PATH                         RULE                  WAITED  BODY"
        );
        assert_eq!(
            lines[1],
            "a-1f2e  t-1   PUT     api.github.com       /repos/acme/x/pulls/7/merge  merge needs a person  1s      1.2 KiB application/json"
        );
        assert_eq!(
            lines[2],
            "a-2     t-1   PUT     api.github.com:8443  /                            merge needs a person  3m10s   -"
        );
        // Every column starts at the same offset on every line.
        for header in ["TASK", "HOST", "PATH", "WAITED", "BODY"] {
            let at = lines[0].find(header).unwrap_or(usize::MAX);
            assert!(
                lines[1..]
                    .iter()
                    .all(|l| l.len() > at && &l[at - 2..at] == "  "),
                "{header}"
            );
        }
    }

    #[test]
    fn long_paths_are_cut_but_ids_are_not() {
        let id = format!("a-{}", "f".repeat(64));
        let path = format!("/{}", "x".repeat(200));
        let out = table(&[item(&id, &path, 443, 0, 0, Value::Null)]);
        assert!(out.contains(&id), "{out}");
        assert!(out.contains('…'), "{out}");
        assert!(!out.contains(&path), "{out}");
        let cut = format!("/{}…", "x".repeat(PATH_WIDTH - 2));
        assert!(out.contains(&cut), "{out}");
    }

    #[test]
    fn waited_reads_like_a_clock() {
        assert_eq!(format_waited(0), "0s");
        assert_eq!(format_waited(999), "0s");
        assert_eq!(format_waited(42_000), "42s");
        assert_eq!(format_waited(59_999), "59s");
        assert_eq!(format_waited(60_000), "1m0s");
        assert_eq!(format_waited(190_000), "3m10s");
        assert_eq!(format_waited(3_599_000), "59m59s");
        assert_eq!(format_waited(3_720_000), "1h2m");
        assert_eq!(format_waited(90_000_000), "25h0m");
    }

    #[test]
    fn body_shows_size_and_type() {
        assert_eq!(format_body(0, None), "-");
        assert_eq!(format_body(0, Some("")), "-");
        assert_eq!(format_body(0, Some("text/plain")), "0 B text/plain");
        assert_eq!(format_body(512, None), "512 B");
        assert_eq!(
            format_body(1234, Some("application/json")),
            "1.2 KiB application/json"
        );
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(format_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(
            format_body(10, Some("text/\u{1b}[2Jplain")),
            "10 B text/\\u{1b}[2Jplain"
        );
    }

    #[test]
    fn hosts_show_unusual_ports() {
        assert_eq!(format_host("api.test", Some(443)), "api.test");
        assert_eq!(format_host("api.test", Some(80)), "api.test");
        assert_eq!(format_host("api.test", None), "api.test");
        assert_eq!(format_host("api.test", Some(8080)), "api.test:8080");
        assert_eq!(format_host("::1", Some(8080)), "[::1]:8080");
    }

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(sanitize("/plain/path?q=1"), "/plain/path?q=1");
        assert_eq!(sanitize("/a\u{1b}[2J\rb"), "/a\\u{1b}[2J\\u{d}b");
        assert_eq!(sanitize("x\ny\tz\u{7f}"), "x\\u{a}y\\u{9}z\\u{7f}");
        assert_eq!(sanitize("\u{9b}31m"), "\\u{9b}31m");
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            let out = sanitize(&format!("a{c}b"));
            assert_eq!(out, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        assert_eq!(sanitize("é中文"), "é中文");
        // In the table, nothing raw gets through.
        let hostile = item(
            "a-1",
            "/x\u{1b}]0;pwned\u{7}\u{202e}gpj.exe",
            443,
            0,
            0,
            Value::Null,
        );
        let out = table(&[hostile]);
        assert!(!out.chars().any(|c| c != '\n' && is_unsafe(c)), "{out:?}");
        assert!(
            out.contains("\\u{1b}]0;pwned\\u{7}\\u{202e}gpj.exe"),
            "{out}"
        );
    }

    #[test]
    fn json_output_stays_json_and_safe() {
        let value = json!([{"path": "/a\u{202e}b\u{9b}c\u{1b}d"}]);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        let safe = sanitize_json(&text);
        assert!(!safe.chars().any(|c| c != '\n' && is_unsafe(c)), "{safe:?}");
        let back: Value = serde_json::from_str(&safe).unwrap_or(Value::Null);
        assert_eq!(back, value);
    }

    #[test]
    fn by_defaults_to_the_invoking_user() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_by(env(&[("SUDO_USER", "alice"), ("USER", "root")])),
            "alice"
        );
        assert_eq!(default_by(env(&[("USER", "bob")])), "bob");
        assert_eq!(
            default_by(env(&[("SUDO_USER", ""), ("USER", "bob")])),
            "bob"
        );
        assert_eq!(default_by(env(&[])), "cli");
    }

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(encode_segment("a-1f2e"), "a-1f2e");
        assert_eq!(encode_segment("../tasks?x=1"), "%2E%2E%2Ftasks%3Fx%3D1");
    }

    #[test]
    fn config_admin_addresses() {
        let url = |s: &str| config_admin_url(s).map_err(|e| e.to_string());
        assert_eq!(url("127.0.0.1:3129"), Ok("http://127.0.0.1:3129".into()));
        assert_eq!(url("0.0.0.0:3129"), Ok("http://127.0.0.1:3129".into()));
        assert_eq!(url("[::]:3129"), Ok("http://[::1]:3129".into()));
        assert_eq!(url("unix:/run/t.sock"), Ok("unix:/run/t.sock".into()));
        assert!(url("127.0.0.1:0").is_err_and(|e| e.contains("--admin")));
    }
}
