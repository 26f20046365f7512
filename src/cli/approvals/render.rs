//! What `tollgate approvals list` and `show` print: the pending holds as an
//! aligned table, and one hold in full.
//!
//! Everything shown comes from the sandbox (host, path, query, headers, body,
//! content type) or from a policy file (rule names), so it passes through
//! [`sanitize`] before it reaches the operator's terminal. Nothing that could
//! hide part of a request is cut from its end: long paths and hosts in the table
//! are cut in the middle, and `show` prints them whole.

use crate::approvals::{HoldDetail, HoldView, RequestSummary};
use crate::cli::terminal::sanitize;
use std::fmt::Write as _;

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
/// Widest method shown.
const METHOD_WIDTH: usize = 12;
/// Widest content type shown in the table.
const TYPE_WIDTH: usize = 40;

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

/// `host[:port]`, the port left out when it is the scheme's default (443 and 80
/// for a scheme other than `https` and `http`); an IPv6 host in brackets. Not
/// sanitized.
fn authority(host: &str, port: u16, scheme: &str) -> String {
    let default = match scheme {
        "https" => port == 443,
        "http" => port == 80,
        _ => matches!(port, 443 | 80),
    };
    crate::net::authority::url_authority(host, (!default).then_some(port))
}

/// The HOST column: `host`, with `:port` unless it is the scheme's default, and
/// `http://` in front for plain HTTP (HTTPS is the usual case). A long host is
/// cut in the middle.
fn format_host(host: &str, port: u16, scheme: &str) -> String {
    let shown = clip_middle(&sanitize(host), HOST_WIDTH, HOST_TAIL);
    let shown = authority(&shown, port, scheme);
    if scheme == "http" {
        format!("http://{shown}")
    } else {
        shown
    }
}

/// `path?query`, or the path alone when there is no query. Not sanitized.
fn path_and_query(request: &RequestSummary) -> String {
    match &request.query {
        Some(query) if !query.is_empty() => format!("{}?{query}", request.path),
        _ => request.path.clone(),
    }
}

/// The pending requests as an aligned table with a header line, and a note when
/// a path or host had to be cut.
pub fn table(items: &[HoldView]) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "ID", "TASK", "METHOD", "HOST", "PATH", "RULE", "WAITED", "BODY",
    ]
    .map(String::from)];
    let mut cut = false;
    for item in items {
        let r = &item.summary;
        let path = sanitize(&path_and_query(r));
        cut |= path.chars().count() > PATH_WIDTH || sanitize(&r.host).chars().count() > HOST_WIDTH;
        rows.push([
            sanitize(&item.id),
            clip(&sanitize(&r.task), TASK_WIDTH),
            clip(&sanitize(&r.method), METHOD_WIDTH),
            format_host(&r.host, r.port, &r.scheme),
            clip_middle(&path, PATH_WIDTH, PATH_TAIL),
            clip(&sanitize(&r.rule), RULE_WIDTH),
            format_waited(item.waited_ms),
            format_body(r.body_bytes, r.content_type.as_deref()),
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
pub fn detail(item: &HoldDetail) -> String {
    let view = &item.view;
    let r = &view.summary;
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let text = format!("{:<9}{value}", format!("{label}:"));
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line("id", &sanitize(&view.id));
    line("task", &sanitize(&r.task));
    line("policy", &sanitize(&r.policy));
    line("rule", &sanitize(&r.rule));
    let target = format!(
        "{} {}://{}{}",
        r.method,
        r.scheme,
        authority(&r.host, r.port, &r.scheme),
        path_and_query(r),
    );
    line("request", &sanitize(&target));
    line("waited", &format_waited(view.waited_ms));
    line("expires", &sanitize(&view.expires_at));
    if let Some(replica) = &view.replica {
        line("replica", &sanitize(replica));
    }
    if item.headers.is_empty() {
        line("headers", "none");
    } else {
        line("headers", "");
        for (name, value) in &item.headers {
            let _ = writeln!(out, "  {}: {}", sanitize(name), sanitize(value));
        }
    }
    let bytes = r.body_bytes;
    let mut body = if bytes == 0 {
        "none".to_string()
    } else {
        let noun = if bytes == 1 { "byte" } else { "bytes" };
        format!("{bytes} {noun}")
    };
    if let Some(t) = r.content_type.as_deref().filter(|t| !t.is_empty()) {
        let _ = write!(body, ", {}", sanitize(t));
    }
    if let Some(hash) = &item.body_sha256 {
        let _ = write!(body, ", sha256 {}", sanitize(hash));
    }
    let _ = writeln!(out, "body:    {body}");
    match item.body_preview.as_deref() {
        Some(preview) if !preview.is_empty() => {
            let preview = preview.strip_suffix('\n').unwrap_or(preview);
            for text in preview.split('\n') {
                let _ = writeln!(out, "  | {}", sanitize(text));
            }
            if item.body_preview_truncated {
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
mod tests;
