//! What `approvals list` and `show` print, for plain requests and for ones a
//! hostile sandbox shaped: columns line up, long paths and hosts are cut in the
//! middle, and nothing from the sandbox reaches the terminal raw.

use super::*;
use crate::approvals::text::is_unsafe_to_show;

fn item(id: &str, path: &str, port: u16, waited: u64, bytes: u64, ct: Option<&str>) -> HoldView {
    HoldView {
        id: id.into(),
        summary: RequestSummary {
            task: "t-1".into(),
            policy: "p".into(),
            rule: "merge needs a person".into(),
            method: "PUT".into(),
            scheme: "https".into(),
            host: "api.github.com".into(),
            port,
            path: path.into(),
            query: None,
            body_bytes: bytes,
            content_type: ct.map(String::from),
            budget: None,
        },
        since: "2026-11-23T05:00:00.123Z".into(),
        waited_ms: waited,
        expires_at: "2026-11-23T05:05:00.123Z".into(),
        replica: None,
    }
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
            Some("application/json"),
        ),
        item("a-2", "/", 8443, 190_000, 0, None),
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
    let out = table(&[item(&id, &path, 443, 0, 0, None)]);
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
    let out = table(&[item(&id, &fits, 443, 0, 0, None)]);
    assert!(out.contains(&fits), "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn the_query_is_shown_with_the_path() {
    let mut with_query = item("a-1", "/search", 443, 0, 0, None);
    with_query.summary.query = Some("q=1&delete=all".into());
    with_query.summary.scheme = "https".into();
    let mut without = item("a-2", "/plain", 443, 0, 0, None);
    without.summary.query = None;
    let out = table(&[with_query, without]);
    assert!(out.contains("/search?q=1&delete=all "), "{out}");
    assert!(out.contains("/plain "), "{out}");
    assert!(!out.contains("/plain?"), "{out}");
    // The query counts towards the cut, which keeps its end.
    let mut long = item("a-3", "/p", 443, 0, 0, None);
    long.summary.query = Some(format!("{}force=true", "a=b&".repeat(60)));
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
    let https = "https";
    let http = "http";
    assert_eq!(format_host("api.test", 443, https), "api.test");
    assert_eq!(format_host("api.test", 80, https), "api.test:80");
    assert_eq!(format_host("api.test", 8443, https), "api.test:8443");
    assert_eq!(format_host("api.test", 80, http), "http://api.test");
    assert_eq!(format_host("api.test", 443, http), "http://api.test:443");
    assert_eq!(format_host("api.test", 8080, http), "http://api.test:8080");
    // A scheme it does not know: both usual ports are left out.
    assert_eq!(format_host("api.test", 443, ""), "api.test");
    assert_eq!(format_host("api.test", 80, ""), "api.test");
    assert_eq!(format_host("api.test", 8080, ""), "api.test:8080");
    assert_eq!(format_host("::1", 8080, https), "[::1]:8080");
    assert_eq!(format_host("::1", 80, http), "http://[::1]");
    // A long host keeps its end, where its domain is.
    let host = format!("api.github.com.{}.attacker.example", "a".repeat(80));
    let shown = format_host(&host, 443, https);
    assert_eq!(shown.chars().count(), HOST_WIDTH, "{shown}");
    assert!(shown.starts_with("api.github.c"), "{shown}");
    assert!(shown.ends_with("aaaa.attacker.example"), "{shown}");
    assert!(shown.contains('…'), "{shown}");
}

#[test]
fn the_table_marks_plain_http() {
    let mut plain = item("a-1", "/x", 8080, 0, 0, None);
    plain.summary.scheme = "http".into();
    plain.summary.host = "api.test".into();
    let out = table(&[plain]);
    assert!(out.contains(" http://api.test:8080 "), "{out}");
}

fn full_item() -> HoldDetail {
    let mut item = item(
        "a-1f2e",
        "/repos/acme/x/pulls/7/merge",
        443,
        190_000,
        41,
        Some("application/json"),
    );
    item.summary.query = Some("force=1".into());
    HoldDetail {
        view: item,
        headers: headers(&[
            ("accept", "*/*"),
            ("authorization", "Bearer __GITHUB_TOKEN__"),
            ("content-type", "application/json"),
        ]),
        body_sha256: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        body_preview: Some("{\"commit_title\":\"x\",\n \"sha\":\"abc\"}\n".into()),
        body_preview_truncated: false,
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
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
    let r = &mut item.view.summary;
    r.scheme = "http".into();
    r.port = 8080;
    r.query = None;
    r.body_bytes = 0;
    r.content_type = None;
    item.headers.clear();
    item.body_sha256 = None;
    item.body_preview = None;
    let out = detail(&item);
    assert!(
        out.contains("\nrequest: PUT http://api.github.com:8080/repos/acme/x/pulls/7/merge\n"),
        "{out}"
    );
    assert!(out.contains("\nheaders: none\n"), "{out}");
    assert!(out.ends_with("\nbody:    none"), "{out}");

    let mut item = full_item();
    item.view.summary.body_bytes = 5000;
    item.body_preview = Some("x".repeat(2048));
    item.body_preview_truncated = true;
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
    let r = &mut item.view.summary;
    r.path = "/a\u{202e}b".into();
    r.query = Some("q=\u{1b}[2J".into());
    r.host = "api.test\u{7}".into();
    r.content_type = Some("text/\u{9b}31m".into());
    item.headers = headers(&[
        ("x-\u{1b}]0;t\u{7}", "v\r\nbody: 0 bytes"),
        ("x-b", "\u{2066}rtl"),
    ]);
    item.body_preview = Some("line1\n\u{1b}[1A\u{1b}[2Kbody:    none\r\n(preview truncated)\u{202e}\u{200b}\t\u{7f}\n\u{fffd}".into());
    let out = detail(&item);
    assert!(
        !out.chars().any(|c| c != '\n' && is_unsafe_to_show(c)),
        "{out:?}"
    );
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
fn nothing_raw_gets_through_the_table() {
    let hostile = item(
        "a-1",
        "/x\u{1b}]0;pwned\u{7}\u{202e}gpj.exe",
        443,
        0,
        0,
        None,
    );
    let out = table(&[hostile]);
    assert!(
        !out.chars().any(|c| c != '\n' && is_unsafe_to_show(c)),
        "{out:?}"
    );
    assert!(
        out.contains("\\u{1b}]0;pwned\\u{7}\\u{202e}gpj.exe"),
        "{out}"
    );
}
