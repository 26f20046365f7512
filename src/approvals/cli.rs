//! `tollgate approvals`: list, show, approve and deny held requests over the
//! admin API.
//!
//! Where the admin API is and which token it takes:
//!
//! - `--admin URL`: that API, with the token from `--admin-token-file FILE` or
//!   `$TOLLGATE_ADMIN_TOKEN`, never from a config (so a token is never sent to a
//!   proxy it does not belong to).
//! - `--config FILE` (explicit) without `--admin`: the config's `admin.listen`;
//!   the token from `--admin-token-file`, else `$TOLLGATE_ADMIN_TOKEN`, else the
//!   config's `admin.token_file`, read only if it is a regular file (not a
//!   symlink) that grants nothing to group or others.
//! - neither: `127.0.0.1:3129`, the built-in default, with the token from
//!   `--admin-token-file` or `$TOLLGATE_ADMIN_TOKEN`.
//!
//! Unlike the other commands, `approvals` never reads `./tollgate.yaml` on its
//! own: the sandbox may share the operator's filesystem and user, so it could
//! plant one there pointing `admin.listen` at a listener of its own and
//! `admin.token_file` at any file the operator can read, and have it sent as a
//! Bearer token.
//!
//! Everything shown comes from the sandbox (host, path, query, headers, body,
//! content type) or from a policy file (rule names), so it passes through
//! [`sanitize`] before it reaches the operator's terminal. Nothing that could
//! hide part of a request is cut from its end: long paths and hosts in the table
//! are cut in the middle, and `show` prints them whole.

use crate::admin::client::{admin_token, AdminClient, AdminError};
use crate::cli::{ApprovalsArgs, ApprovalsCommand};
use crate::config::{Config, DEFAULT_ADMIN_LISTEN};
use anyhow::{anyhow, Context};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Widest task id shown before it is cut with `…`.
const TASK_WIDTH: usize = 24;
/// Widest host shown (cut in the middle, keeping [`HOST_TAIL`]).
const HOST_WIDTH: usize = 48;
/// Characters kept from the end of a cut host (where its domain is).
const HOST_TAIL: usize = 32;
/// Widest `path?query` shown (cut in the middle, keeping [`PATH_TAIL`]).
const PATH_WIDTH: usize = 100;
/// Characters kept from the end of a cut path.
const PATH_TAIL: usize = 60;
/// Widest rule name shown.
const RULE_WIDTH: usize = 32;
/// Widest content type shown in the table.
const TYPE_WIDTH: usize = 40;
/// Largest config token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Runs `tollgate approvals ...`; the error is one line for `tollgate: ...`.
///
/// `config` is the `--config` given on the command line, if any; no config is
/// looked for otherwise.
pub fn run(config: Option<&Path>, args: &ApprovalsArgs) -> anyhow::Result<()> {
    // What can be checked here is, before anything goes over the network.
    match &args.command {
        ApprovalsCommand::Approve { id, for_, .. } => {
            check_id(id)?;
            if let Some(dur) = for_ {
                crate::duration::parse_duration(dur).map_err(|e| anyhow!("--for: {e}"))?;
            }
        }
        ApprovalsCommand::Deny { id, .. } | ApprovalsCommand::Show { id, .. } => check_id(id)?,
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

/// The client for `--admin`, for an explicit `--config`'s admin API, or for the
/// built-in default address (see the module docs).
fn client(config: Option<&Path>, args: &ApprovalsArgs) -> anyhow::Result<AdminClient> {
    const NEED_TOKEN: &str =
        "approvals needs the admin token: --admin-token-file FILE or $TOLLGATE_ADMIN_TOKEN";
    let given = match admin_token(args.admin_token_file.as_deref()) {
        Ok(token) => Some(token),
        Err(AdminError::NoToken) => None,
        Err(err) => return Err(err.into()),
    };
    let (url, token) = match (&args.admin, config) {
        (Some(url), _) => (url.clone(), given.ok_or_else(|| anyhow!("{NEED_TOKEN}"))?),
        (None, None) => {
            let token = given.ok_or_else(|| {
                anyhow!(
                    "{NEED_TOKEN} (or --config FILE to use that config's admin.listen and \
                     admin.token_file; ./tollgate.yaml is not read implicitly)"
                )
            })?;
            (config_admin_url(DEFAULT_ADMIN_LISTEN)?, token)
        }
        (None, Some(path)) => {
            let config = Config::load_settings(Some(path))?;
            let url = config_admin_url(&config.admin_listen)?;
            let token = match given {
                Some(token) => token,
                None => read_config_token(&config.admin_token_file)
                    .map_err(|why| anyhow!("{NEED_TOKEN} ({why})"))?,
            };
            (url, token)
        }
    };
    Ok(AdminClient::new(&url, token)?)
}

/// Reads the config's `admin.token_file`, trimmed, if it is a regular file (not
/// a symlink) with no permission bits for group or others; the error says why
/// not, naming the file.
pub fn read_config_token(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let what = format!("the config's admin token file {}", path.display());
    let meta = std::fs::symlink_metadata(path).map_err(|e| anyhow!("{what}: {e}"))?;
    if meta.file_type().is_symlink() {
        anyhow::bail!("{what} is a symlink; not read");
    }
    if !meta.is_file() {
        anyhow::bail!("{what} is not a regular file; not read");
    }
    let private = |meta: &std::fs::Metadata| {
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 == 0 {
            Ok(())
        } else {
            Err(anyhow!(
                "{what} is open to group or others (mode {mode:04o}); not read (chmod 600 it)"
            ))
        }
    };
    private(&meta)?;
    // Opened without following a symlink or blocking on a FIFO, and checked to be
    // the file just looked at, in case it was swapped in between.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| anyhow!("{what}: {e}"))?;
    let opened = file.metadata().map_err(|e| anyhow!("{what}: {e}"))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) || !opened.is_file() {
        anyhow::bail!("{what} changed while it was being opened; not read");
    }
    private(&opened)?;
    let mut text = String::new();
    (&mut file)
        .take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .map_err(|e| anyhow!("{what}: {e}"))?;
    Ok(text.trim().to_string())
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
        ApprovalsCommand::Show { id, json } => {
            let path = format!(
                "/v1/approvals/{}",
                crate::text::percent_encode_path_segment(id)
            );
            let (status, answer) = client.call(Method::GET, &path, None).await?;
            if !status.is_success() {
                return Err(refusal(client.url(), status, &answer, Some(id)));
            }
            if !answer.is_object() {
                anyhow::bail!(
                    "{} answered GET /v1/approvals/{{id}} with something other than a JSON object",
                    client.url()
                );
            }
            if *json {
                let text = serde_json::to_string_pretty(&answer)?;
                Ok(sanitize_json(&text))
            } else {
                Ok(detail(&answer))
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
    let path = format!(
        "/v1/approvals/{}/{verb}",
        crate::text::percent_encode_path_segment(id)
    );
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
    // Controls, bidi overrides, and the invisible characters (Unicode format
    // characters, variation selectors, tags, fillers) with which two different
    // requests could be made to look alike.
    c.is_control()
        || matches!(c,
            '\u{00ad}'
            | '\u{034f}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061c}'
            | '\u{06dd}'
            | '\u{070f}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}')
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

/// `text` cut to at most `max` characters, ending in `…` when cut. Only for
/// what the operator does not need whole (task ids, rule names, content types).
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` cut to at most `max` characters by replacing its middle with `…`,
/// keeping its last `tail` characters: the end of a path or host is where a
/// sandbox would put what it wants unseen.
fn clip_middle(text: &str, max: usize, tail: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let tail = tail.min(max.saturating_sub(1));
    let head = max.saturating_sub(tail + 1);
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(count - tail));
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

/// A string field of an admin API item, or `""`.
fn field<'a>(item: &'a Value, key: &str) -> &'a str {
    item[key].as_str().unwrap_or("")
}

/// `host[:port]`, the port left out when it is the scheme's default (443 and 80
/// when the scheme is not known); an IPv6 host in brackets. Not sanitized.
fn authority(host: &str, port: Option<u64>, scheme: Option<&str>) -> String {
    let default = match scheme {
        Some("https") => port == Some(443),
        Some("http") => port == Some(80),
        _ => matches!(port, Some(443 | 80)),
    };
    crate::net::authority::url_authority(host, port.filter(|_| !default))
}

/// The HOST column: `host`, with `:port` unless it is the scheme's default, and
/// `http://` in front for plain HTTP (HTTPS is the usual case). A long host is
/// cut in the middle.
fn format_host(host: &str, port: Option<u64>, scheme: Option<&str>) -> String {
    let shown = clip_middle(&sanitize(host), HOST_WIDTH, HOST_TAIL);
    let shown = authority(&shown, port, scheme);
    if scheme == Some("http") {
        format!("http://{shown}")
    } else {
        shown
    }
}

/// `path?query`, or the path alone when there is no query. Not sanitized.
fn path_and_query(item: &Value) -> String {
    let path = field(item, "path");
    match item["query"].as_str() {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_string(),
    }
}

/// The pending requests as an aligned table with a header line, and a note when
/// a path or host had to be cut.
pub fn table(items: &[Value]) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "ID", "TASK", "METHOD", "HOST", "PATH", "RULE", "WAITED", "BODY",
    ]
    .map(String::from)];
    let mut cut = false;
    for item in items {
        let host = field(item, "host");
        let path = sanitize(&path_and_query(item));
        cut |= path.chars().count() > PATH_WIDTH || sanitize(host).chars().count() > HOST_WIDTH;
        rows.push([
            sanitize(field(item, "id")),
            clip(&sanitize(field(item, "task")), TASK_WIDTH),
            clip(&sanitize(field(item, "method")), 12),
            format_host(host, item["port"].as_u64(), item["scheme"].as_str()),
            clip_middle(&path, PATH_WIDTH, PATH_TAIL),
            clip(&sanitize(field(item, "rule")), RULE_WIDTH),
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
    if cut {
        out.push_str(
            "\n(… marks where a long path or host is cut; `tollgate approvals show ID` prints it whole)",
        );
    }
    out
}

/// One held request in full (`GET /v1/approvals/{id}`), for `approvals show`.
/// The body preview's lines are each behind `  | `, so nothing in the body can
/// pass for a line of this output.
pub fn detail(item: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let text = format!("{:<9}{value}", format!("{label}:"));
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line("id", &sanitize(field(item, "id")));
    line("task", &sanitize(field(item, "task")));
    line("policy", &sanitize(field(item, "policy")));
    line("rule", &sanitize(field(item, "rule")));
    let scheme = item["scheme"].as_str().unwrap_or("https");
    let target = format!(
        "{} {scheme}://{}{}",
        field(item, "method"),
        authority(field(item, "host"), item["port"].as_u64(), Some(scheme)),
        path_and_query(item),
    );
    line("request", &sanitize(&target));
    line(
        "waited",
        &format_waited(item["waited_ms"].as_u64().unwrap_or(0)),
    );
    line("expires", &sanitize(field(item, "expires_at")));
    let headers = item["headers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if headers.is_empty() {
        line("headers", "none");
    } else {
        line("headers", "");
        for header in headers {
            let part = |n: usize| match &header[n] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let _ = writeln!(out, "  {}: {}", sanitize(&part(0)), sanitize(&part(1)));
        }
    }
    let bytes = item["body_bytes"].as_u64().unwrap_or(0);
    let mut body = if bytes == 0 {
        "none".to_string()
    } else {
        let noun = if bytes == 1 { "byte" } else { "bytes" };
        format!("{bytes} {noun}")
    };
    if let Some(t) = item["content_type"].as_str().filter(|t| !t.is_empty()) {
        let _ = write!(body, ", {}", sanitize(t));
    }
    if let Some(hash) = item["body_sha256"].as_str() {
        let _ = write!(body, ", sha256 {}", sanitize(hash));
    }
    let _ = writeln!(out, "body:    {body}");
    match item["body_preview"].as_str() {
        Some(preview) if !preview.is_empty() => {
            let preview = preview.strip_suffix('\n').unwrap_or(preview);
            for text in preview.split('\n') {
                let _ = writeln!(out, "  | {}", sanitize(text));
            }
            if item["body_preview_truncated"].as_bool() == Some(true) {
                out.push_str("  (preview truncated)\n");
            }
        }
        _ if bytes > 0 => out.push_str("  (no preview)\n"),
        _ => {}
    }
    if out.ends_with('\n') {
        out.pop();
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
    fn long_paths_are_cut_in_the_middle_keeping_their_end() {
        let id = format!("a-{}", "f".repeat(64));
        let path = format!(
            "/repos/acme/x/{}/then/the/part/that/matters",
            "x".repeat(200)
        );
        let out = table(&[item(&id, &path, 443, 0, 0, Value::Null)]);
        assert!(out.contains(&id), "{out}");
        assert!(!out.contains(&path), "{out}");
        let tail: String = path
            .chars()
            .skip(path.chars().count() - PATH_TAIL)
            .collect();
        let head: String = path.chars().take(PATH_WIDTH - PATH_TAIL - 1).collect();
        assert!(out.contains(&format!("{head}…{tail}")), "{out}");
        assert!(tail.ends_with("/then/the/part/that/matters"));
        assert!(
            out.lines()
                .last()
                .is_some_and(|l| l.contains("approvals show")),
            "{out}"
        );
        // Nothing is cut, and there is no note, when it fits.
        let fits = format!("/{}", "y".repeat(PATH_WIDTH - 1));
        let out = table(&[item(&id, &fits, 443, 0, 0, Value::Null)]);
        assert!(out.contains(&fits), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
    }

    #[test]
    fn the_query_is_shown_with_the_path() {
        let mut with_query = item("a-1", "/search", 443, 0, 0, Value::Null);
        with_query["query"] = json!("q=1&delete=all");
        with_query["scheme"] = json!("https");
        let mut without = item("a-2", "/plain", 443, 0, 0, Value::Null);
        without["query"] = Value::Null;
        let out = table(&[with_query, without]);
        assert!(out.contains("/search?q=1&delete=all "), "{out}");
        assert!(out.contains("/plain "), "{out}");
        assert!(!out.contains("/plain?"), "{out}");
        // The query counts towards the cut, which keeps its end.
        let mut long = item("a-3", "/p", 443, 0, 0, Value::Null);
        long["query"] = json!(format!("{}force=true", "a=b&".repeat(60)));
        let out = table(&[long]);
        assert!(out.contains("…"), "{out}");
        assert!(out.contains("a=b&force=true  "), "{out}");
    }

    #[test]
    fn clip_middle_keeps_both_ends() {
        assert_eq!(clip_middle("abcdef", 6, 3), "abcdef");
        assert_eq!(clip_middle("abcdefgh", 6, 3), "ab…fgh");
        assert_eq!(clip_middle("abcdefgh", 4, 9), "…fgh");
        assert_eq!(clip_middle("ééééé中文", 4, 2), "é…中文");
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
    fn hosts_show_unusual_ports_and_plain_http() {
        let https = Some("https");
        let http = Some("http");
        assert_eq!(format_host("api.test", Some(443), https), "api.test");
        assert_eq!(format_host("api.test", Some(80), https), "api.test:80");
        assert_eq!(format_host("api.test", Some(8443), https), "api.test:8443");
        assert_eq!(format_host("api.test", Some(80), http), "http://api.test");
        assert_eq!(
            format_host("api.test", Some(443), http),
            "http://api.test:443"
        );
        assert_eq!(
            format_host("api.test", Some(8080), http),
            "http://api.test:8080"
        );
        // An older proxy that does not say the scheme.
        assert_eq!(format_host("api.test", Some(443), None), "api.test");
        assert_eq!(format_host("api.test", Some(80), None), "api.test");
        assert_eq!(format_host("api.test", None, None), "api.test");
        assert_eq!(format_host("api.test", Some(8080), None), "api.test:8080");
        assert_eq!(format_host("::1", Some(8080), https), "[::1]:8080");
        assert_eq!(format_host("::1", Some(80), http), "http://[::1]");
        // A long host keeps its end, where its domain is.
        let host = format!("api.github.com.{}.attacker.example", "a".repeat(80));
        let shown = format_host(&host, Some(443), https);
        assert_eq!(shown.chars().count(), HOST_WIDTH, "{shown}");
        assert!(shown.starts_with("api.github.c"), "{shown}");
        assert!(shown.ends_with("aaaa.attacker.example"), "{shown}");
        assert!(shown.contains('…'), "{shown}");
    }

    #[test]
    fn the_table_marks_plain_http() {
        let mut plain = item("a-1", "/x", 8080, 0, 0, Value::Null);
        plain["scheme"] = json!("http");
        plain["host"] = json!("api.test");
        let out = table(&[plain]);
        assert!(out.contains(" http://api.test:8080 "), "{out}");
    }

    fn full_item() -> Value {
        let mut item = item(
            "a-1f2e",
            "/repos/acme/x/pulls/7/merge",
            443,
            190_000,
            41,
            json!("application/json"),
        );
        item["scheme"] = json!("https");
        item["query"] = json!("force=1");
        item["headers"] = json!([
            ["accept", "*/*"],
            ["authorization", "Bearer __GITHUB_TOKEN__"],
            ["content-type", "application/json"],
        ]);
        item["body_sha256"] =
            json!("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        item["body_preview"] = json!("{\"commit_title\":\"x\",\n \"sha\":\"abc\"}\n");
        item["body_preview_truncated"] = json!(false);
        item
    }

    #[test]
    fn show_prints_the_whole_request() {
        let out = detail(&full_item());
        assert_eq!(
            out,
            "id:      a-1f2e\n\
             task:    t-1\n\
             policy:  p\n\
             rule:    merge needs a person\n\
             request: PUT https://api.github.com/repos/acme/x/pulls/7/merge?force=1\n\
             waited:  3m10s\n\
             expires: 2026-11-23T05:05:00.123Z\n\
             headers:\n\
             \x20 accept: */*\n\
             \x20 authorization: Bearer __GITHUB_TOKEN__\n\
             \x20 content-type: application/json\n\
             body:    41 bytes, application/json, sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n\
             \x20 | {\"commit_title\":\"x\",\n\
             \x20 |  \"sha\":\"abc\"}"
        );
    }

    #[test]
    fn show_handles_plain_http_no_body_and_truncation() {
        let mut item = full_item();
        item["scheme"] = json!("http");
        item["port"] = json!(8080);
        item["query"] = Value::Null;
        item["headers"] = json!([]);
        item["body_bytes"] = json!(0);
        item["content_type"] = Value::Null;
        item["body_sha256"] = Value::Null;
        item["body_preview"] = Value::Null;
        let out = detail(&item);
        assert!(
            out.contains("\nrequest: PUT http://api.github.com:8080/repos/acme/x/pulls/7/merge\n"),
            "{out}"
        );
        assert!(out.contains("\nheaders: none\n"), "{out}");
        assert!(out.ends_with("\nbody:    none"), "{out}");

        let mut item = full_item();
        item["body_bytes"] = json!(5000);
        item["body_preview"] = json!("x".repeat(2048));
        item["body_preview_truncated"] = json!(true);
        let out = detail(&item);
        assert!(
            out.contains("body:    5000 bytes, application/json, sha256 9f86"),
            "{out}"
        );
        assert!(
            out.ends_with(&format!("  | {}\n  (preview truncated)", "x".repeat(2048))),
            "{out}"
        );
    }

    #[test]
    fn show_escapes_everything_from_the_sandbox() {
        let mut item = full_item();
        item["path"] = json!("/a\u{202e}b");
        item["query"] = json!("q=\u{1b}[2J");
        item["host"] = json!("api.test\u{7}");
        item["content_type"] = json!("text/\u{9b}31m");
        item["headers"] = json!([
            ["x-\u{1b}]0;t\u{7}", "v\r\nbody: 0 bytes"],
            ["x-b", "\u{2066}rtl"]
        ]);
        item["body_preview"] = json!("line1\n\u{1b}[1A\u{1b}[2Kbody:    none\r\n(preview truncated)\u{202e}\u{200b}\t\u{7f}\n\u{fffd}");
        let out = detail(&item);
        assert!(!out.chars().any(|c| c != '\n' && is_unsafe(c)), "{out:?}");
        assert!(out.contains("/a\\u{202e}b?q=\\u{1b}[2J"), "{out}");
        assert!(
            out.contains("  x-\\u{1b}]0;t\\u{7}: v\\u{d}\\u{a}body: 0 bytes\n"),
            "{out}"
        );
        // Every preview line is behind the gutter, so none passes for output.
        let preview: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("body:"))
            .skip(1)
            .collect();
        assert_eq!(preview.len(), 4, "{out}");
        assert!(preview.iter().all(|l| l.starts_with("  | ")), "{out}");
        assert!(
            preview[1].contains("\\u{1b}[1A\\u{1b}[2Kbody:    none\\u{d}"),
            "{out}"
        );
        assert!(!out.contains("\n  (preview truncated)"), "{out}");
        assert_eq!(out.matches("body:").count(), 3, "{out}");
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
        // Invisible characters that make two requests look alike.
        for c in ['\u{ad}', '\u{180e}', '\u{fe0f}', '\u{e0041}', '\u{3164}'] {
            assert_eq!(
                sanitize(&format!("a{c}b")),
                format!("a\\u{{{:x}}}b", u32::from(c))
            );
        }
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
        assert_eq!(crate::text::percent_encode_path_segment("a-1f2e"), "a-1f2e");
        assert_eq!(
            crate::text::percent_encode_path_segment("../tasks?x=1"),
            "%2E%2E%2Ftasks%3Fx%3D1"
        );
    }

    fn args(admin: Option<&str>, token_file: Option<&Path>) -> ApprovalsArgs {
        ApprovalsArgs {
            admin: admin.map(String::from),
            admin_token_file: token_file.map(Path::to_path_buf),
            command: ApprovalsCommand::List { json: false },
        }
    }

    fn private_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn without_config_the_default_address_and_an_explicit_token() {
        let dir = tempfile::tempdir().unwrap();
        let token = private_file(dir.path(), "token", "tok\n", 0o644);
        let found = client(None, &args(None, Some(&token))).map_err(|e| e.to_string());
        assert_eq!(
            found.as_ref().map(AdminClient::url),
            Ok("http://127.0.0.1:3129")
        );
        // A token file given on the command line is the operator's choice.
        let found = client(
            Some(&dir.path().join("none.yaml")),
            &args(Some("unix:/x.sock"), Some(&token)),
        );
        assert_eq!(
            found.map(|c| c.url().to_string()).ok().as_deref(),
            Some("unix:/x.sock")
        );
    }

    #[test]
    fn the_config_token_file_must_be_private_and_regular() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let read = |p: &Path| read_config_token(p).map_err(|e| e.to_string());

        let good = private_file(dir.path(), "good", " the-token \n", 0o600);
        assert_eq!(read(&good), Ok("the-token".to_string()));
        let owner_only = private_file(dir.path(), "ro", "t", 0o400);
        assert_eq!(read(&owner_only), Ok("t".to_string()));

        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o601] {
            let open = private_file(dir.path(), &format!("open{mode:o}"), "t", mode);
            let err = read(&open).unwrap_err();
            assert!(err.contains(&open.display().to_string()), "{err}");
            assert!(err.contains("group or others"), "{err}");
            assert!(err.contains(&format!("mode 0{mode:o}")), "{err}");
        }

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let err = read(&link).unwrap_err();
        assert!(
            err.contains("link") && err.contains("is a symlink"),
            "{err}"
        );

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = read(&sub).unwrap_err();
        assert!(err.contains("is not a regular file"), "{err}");

        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `name` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = read(&fifo).unwrap_err();
        assert!(err.contains("is not a regular file"), "{err}");

        let err = read(&dir.path().join("missing")).unwrap_err();
        assert!(err.contains("missing"), "{err}");
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
