//! The webhook message of one held request: its structured fields (a
//! [`RequestSummary`] plus the hold's id, times and action URLs) and a
//! Slack-compatible one-line `text`, in which every value from the sandbox or a
//! policy is escaped and cut to a readable length.

use crate::approvals::api::RequestSummary;
use crate::approvals::text::is_unsafe_to_show;
use crate::text::rfc3339_millis;
use serde::Serialize;
use std::time::SystemTime;

/// Longest rendering of one interpolated value in `text`, in characters (the
/// structured fields always hold the full value).
pub(super) const MAX_TEXT_VALUE_CHARS: usize = 1000;
/// A URL in `text` longer than [`MAX_TEXT_VALUE_CHARS`] keeps this many leading
/// characters...
pub(super) const URL_HEAD_CHARS: usize = 600;
/// ...and this many trailing ones, with `…` between: the end of a long path or
/// query (often where the operation is) stays in sight.
pub(super) const URL_TAIL_CHARS: usize = 300;

/// What a notification says about one held request (never a secret value: the
/// path and query are in placeholder form as the sandbox sent them).
#[derive(Debug, Clone)]
pub struct Notice {
    /// The hold id, e.g. `a-1f2e3d4c5b6a7980`.
    pub id: String,
    /// The held request.
    pub summary: RequestSummary,
    /// When the request was held.
    pub since: SystemTime,
    /// When the hold times out (and the request is denied).
    pub expires_at: SystemTime,
}

/// The JSON body POSTed to each webhook.
#[derive(Serialize)]
struct Message<'a> {
    text: String,
    id: &'a str,
    #[serde(flatten)]
    summary: &'a RequestSummary,
    since: String,
    expires_at: String,
    approve_url: Option<String>,
    deny_url: Option<String>,
}

/// The JSON message for `notice`; `admin_base` (e.g. `http://127.0.0.1:3129`)
/// gives the action URLs.
pub(super) fn render_body(notice: &Notice, admin_base: Option<&str>) -> Vec<u8> {
    let action_url = |action: &str| {
        admin_base.map(|base| {
            format!(
                "{base}/v1/approvals/{}/{action}",
                crate::text::percent_encode_path_segment(&notice.id)
            )
        })
    };
    let message = Message {
        text: render_text(notice),
        id: &notice.id,
        summary: &notice.summary,
        since: rfc3339_millis(notice.since),
        expires_at: rfc3339_millis(notice.expires_at),
        approve_url: action_url("approve"),
        deny_url: action_url("deny"),
    };
    // Through a `Value`, whose keys are sorted, as they always were; serializing
    // strings and numbers does not fail.
    serde_json::to_value(&message)
        .and_then(|value| serde_json::to_vec(&value))
        .unwrap_or_default()
}

/// The Slack-compatible one-line message. Every interpolated value is escaped
/// (see [`slack_escape`]): they come from the sandbox or a policy.
pub(super) fn render_text(notice: &Notice) -> String {
    let n = &notice.summary;
    let default_port = match n.scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let port = (default_port != Some(n.port)).then_some(n.port);
    let authority = crate::net::authority::url_authority(&n.host, port);
    let mut url = format!("{}://{authority}", n.scheme);
    url.push_str(&n.path);
    if let Some(query) = &n.query {
        url.push('?');
        url.push_str(query);
    }
    let id = slack_escape(&notice.id);
    format!(
        "tollgate: task {} wants {} {} (rule \"{}\", policy {}). Approve: tollgate approvals approve {id} \u{b7} Deny: tollgate approvals deny {id}",
        slack_escape(&n.task),
        slack_escape(&n.method),
        slack_escape_url(&url),
        slack_escape(&n.rule),
        slack_escape(&n.policy),
    )
}

/// Makes an untrusted value safe to put in Slack mrkdwn text: `&`, `<` and `>`
/// become `&amp;`, `&lt;` and `&gt;` (Slack's documented escaping, so no link,
/// mention or `<!channel>` can be forged); what [`is_unsafe_to_show`] names
/// (controls, bidi overrides, line separators, invisible characters) becomes
/// U+FFFD (no line breaks, no text reordered or hidden to mislead the reader);
/// values longer than [`MAX_TEXT_VALUE_CHARS`] are cut with `…`.
pub(super) fn slack_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    if value.chars().count() > MAX_TEXT_VALUE_CHARS {
        escape_into(&mut out, value.chars().take(MAX_TEXT_VALUE_CHARS));
        out.push('\u{2026}');
    } else {
        escape_into(&mut out, value.chars());
    }
    out
}

/// [`slack_escape`] for a URL: one longer than [`MAX_TEXT_VALUE_CHARS`] is cut
/// in the middle instead (first [`URL_HEAD_CHARS`], `…`, last
/// [`URL_TAIL_CHARS`]), so a long path cannot push the end of the path or the
/// query out of sight.
fn slack_escape_url(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let len = value.chars().count();
    if len > MAX_TEXT_VALUE_CHARS {
        // Cut before escaping, so no entity is split.
        escape_into(&mut out, value.chars().take(URL_HEAD_CHARS));
        out.push('\u{2026}');
        escape_into(&mut out, value.chars().skip(len - URL_TAIL_CHARS));
    } else {
        escape_into(&mut out, value.chars());
    }
    out
}

/// Appends `chars` to `out`, escaped as [`slack_escape`] describes.
fn escape_into(out: &mut String, chars: impl Iterator<Item = char>) {
    for c in chars {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if is_unsafe_to_show(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Duration;

    /// The notice the tests start from.
    pub(crate) fn notice() -> Notice {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        Notice {
            id: "a-1f2e3d4c5b6a7980".into(),
            summary: RequestSummary {
                task: "t-abc".into(),
                policy: "github-agent".into(),
                rule: "merge needs a person".into(),
                method: "PUT".into(),
                scheme: "https".into(),
                host: "api.github.com".into(),
                port: 443,
                path: "/repos/acme/x/pulls/7/merge".into(),
                query: None,
                body_bytes: 42,
                content_type: Some("application/json".into()),
                budget: None,
            },
            since,
            expires_at: since + Duration::from_secs(300),
        }
    }

    #[test]
    fn text_shows_the_real_scheme_port_and_query() {
        let mut n = notice();
        n.summary.scheme = "http".into();
        n.summary.port = 80;
        assert!(render_text(&n).contains("PUT http://api.github.com/repos/acme/x/pulls/7/merge "));
        n.summary.host = "host".into();
        n.summary.port = 8080;
        n.summary.path = "/path".into();
        n.summary.query = Some("x=1".into());
        assert!(render_text(&n).contains("PUT http://host:8080/path?x=1 "));
        // A default port of the other scheme is shown.
        n.summary.port = 443;
        assert!(render_text(&n).contains("PUT http://host:443/path?x=1 "));
        n.summary.scheme = "https".into();
        n.summary.port = 80;
        assert!(render_text(&n).contains("PUT https://host:80/path?x=1 "));
        n.summary.port = 443;
        n.summary.path = "/bucket".into();
        n.summary.query = Some("delete".into());
        assert!(render_text(&n).contains("PUT https://host/bucket?delete "));
        // An empty query (a bare `?`) is still shown.
        n.summary.query = Some(String::new());
        assert!(render_text(&n).contains("PUT https://host/bucket? "));
        n.summary.host = "::1".into();
        n.summary.port = 8443;
        n.summary.query = None;
        assert!(render_text(&n).contains("PUT https://[::1]:8443/bucket "));
    }

    #[test]
    fn long_values_are_cut_in_text() {
        let mut n = notice();
        n.summary.rule = "r".repeat(5000);
        let text = render_text(&n);
        assert!(text.len() < 2000, "{}", text.len());
        assert!(text.contains(&format!("rule \"{}\u{2026}\"", "r".repeat(1000))));
        assert_eq!(slack_escape(&"x".repeat(1000)), "x".repeat(1000));
        assert_eq!(slack_escape("<&>"), "&lt;&amp;&gt;");
        assert_eq!(
            slack_escape("a\u{0}b\u{7f}c\u{85}"),
            "a\u{fffd}b\u{fffd}c\u{fffd}"
        );
    }

    #[test]
    fn zero_width_and_line_separators_are_replaced_as_the_cli_escapes_them() {
        // These passed through before the Slack text and the CLI shared one list.
        for c in [
            '\u{200b}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{2028}',
            '\u{2029}',
            '\u{ad}',
            '\u{e0041}',
        ] {
            assert_eq!(slack_escape(&format!("a{c}b")), "a\u{fffd}b", "{c:?}");
        }
        let mut n = notice();
        n.summary.path = "/repos/acme/x\u{2028}\u{200b}/merge".into();
        n.summary.task = "t\u{2029}1".into();
        let text = render_text(&n);
        assert!(!text.chars().any(is_unsafe_to_show), "{text:?}");
        assert!(
            text.contains("task t\u{fffd}1 wants PUT https://api.github.com/repos/acme/x\u{fffd}\u{fffd}/merge "),
            "{text}"
        );
    }

    #[test]
    fn long_url_is_cut_in_the_middle() {
        let mut n = notice();
        n.summary.host = "h".into();
        n.summary.path = format!("/{}/pulls/7/merge", "a".repeat(5000));
        n.summary.query = Some("should_remove_source_branch=true&x=<y>".into());
        let text = render_text(&n);
        assert!(text.len() < 1500, "{}", text.len());
        let url = text
            .split(" wants PUT ")
            .nth(1)
            .unwrap()
            .split(" (rule")
            .next()
            .unwrap();
        let (head, tail) = url.split_once('\u{2026}').unwrap();
        assert_eq!(
            head,
            format!("https://h/{}", "a".repeat(URL_HEAD_CHARS - 10))
        );
        // The tail keeps the end of the path and the query, escaped after the
        // cut (300 raw characters; `<` and `>` grew into entities).
        assert!(
            tail.ends_with("aaaa/pulls/7/merge?should_remove_source_branch=true&amp;x=&lt;y&gt;"),
            "{tail}"
        );
        let raw_tail = tail
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        assert_eq!(raw_tail.chars().count(), URL_TAIL_CHARS);
        // Exactly at the limit: not cut.
        n.summary.path = "/".into();
        n.summary.query = Some("q".repeat(MAX_TEXT_VALUE_CHARS - "https://h/?".len()));
        assert!(!render_text(&n).contains('\u{2026}'));
        n.summary.query = Some("q".repeat(MAX_TEXT_VALUE_CHARS + 1 - "https://h/?".len()));
        assert!(render_text(&n).contains('\u{2026}'));
    }
}
