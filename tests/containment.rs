//! Secret containment against a hostile upstream, a crash and malformed input
//! (issue 12), end to end: the real `tollgate` binary, real clients (curl,
//! tungstenite, python requests, node), and an upstream that misbehaves on
//! purpose (`common::hostile`): it reflects the credential in its status line,
//! hides it under transfer codings, hands it back in pieces or by `Range`, and
//! splits it across WebSocket fragments.
//!
//! The secret value never appears in a passing run's output: failure messages
//! show it redacted as `<VALUE[a..b]>`.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::hostile::{
    chunk, chunked, find, gunzip, gzip, head, unzlib, websocket_handshake, ws_frame, zlib, After,
    Hostile, Reply, Seen, LAST_CHUNK, OP_CONTINUATION, OP_PING, OP_TEXT,
};
use common::upstream::{start_upstream, TestCa, Upstream};
use common::{
    audit_records, connect_tunnel, curl, tls_via_proxy, tollgate_bin, wait_record, ProxyProc,
    ProxySetup, TASK, TOKEN,
};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The secret: 40 bytes, none of them `/`, `+` or `%`, so half is 20 bytes.
const VALUE: &str = "ghs_Q7mZ2xK9pL4vN8wR3tY6uB1cD5eF0gH2jK4m";
/// Its placeholder.
const PLACEHOLDER: &str = "__GH_TOKEN__";
/// A secret that cannot be a header value.
const CRLF_VALUE: &str = "abc\r\nX-Injected: 1";
/// The shortest run of the value no response may carry: half of it, at least 12.
const HALF: usize = 20;
/// Where the whole value was echoed, not even this much of it may come back.
const PIECE: usize = 12;

#[test]
fn the_test_secret_has_the_shape_the_tests_assume() {
    assert_eq!(VALUE.len(), 40);
    assert!(!VALUE.contains(['/', '+', '%']));
    assert_eq!(HALF, VALUE.len().div_ceil(2).max(12));
    // The coded echoes hide the value from a scrubber that reads raw bytes.
    let echo = echo_text(&format!("Bearer {VALUE}"));
    assert!(value_run(&gzip(echo.as_bytes()), 6).is_none());
    assert!(value_run(&zlib(echo.as_bytes()), 6).is_none());
    assert_eq!(gunzip(&gzip(echo.as_bytes())).unwrap(), echo.as_bytes());
    assert_eq!(unzlib(&zlib(echo.as_bytes())).unwrap(), echo.as_bytes());
}

// ---------------------------------------------------------------------------
// Checking for pieces of the value, and saying where they are without them.

/// The first `len`-byte run of VALUE found in `hay`: its range in VALUE.
fn value_run(hay: &[u8], len: usize) -> Option<(usize, usize)> {
    let value = VALUE.as_bytes();
    (0..=value.len() - len)
        .find(|&start| find(hay, &value[start..start + len]).is_some())
        .map(|start| (start, start + len))
}

/// `hay` as text with every run of 6+ bytes of VALUE shown as `<VALUE[a..b]>`.
fn redact(hay: &[u8]) -> String {
    let value = VALUE.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < hay.len() {
        let best = (0..value.len())
            .map(|start| {
                let len = hay[i..]
                    .iter()
                    .zip(&value[start..])
                    .take_while(|(a, b)| a == b)
                    .count();
                (start, len)
            })
            .max_by_key(|&(_, len)| len)
            .unwrap_or((0, 0));
        if best.1 >= 6 {
            out.extend_from_slice(format!("<VALUE[{}..{}]>", best.0, best.0 + best.1).as_bytes());
            i += best.1;
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Fails if `hay` carries a run of `len` bytes of VALUE.
fn assert_no_run(what: &str, hay: &[u8], len: usize) {
    if let Some((a, b)) = value_run(hay, len) {
        panic!(
            "{what} carries VALUE[{a}..{b}], a {len}-byte run of the secret: {}",
            redact(hay)
        );
    }
}

// ---------------------------------------------------------------------------
// Fixtures.

/// A hostile upstream for api.test and a proxy whose policy injects GH_TOKEN
/// (and, with `crlf`, the CRLF secret) into any request to it.
struct Hf {
    _ca: TestCa,
    up: Hostile,
    proxy: ProxyProc,
}

async fn hostile_fixture(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Hf {
    fixture_with(handler, false, "", &[]).await
}

async fn fixture_with(
    handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    crlf: bool,
    extra_rules: &str,
    resolve: &[(&str, u16)],
) -> Hf {
    let ca = TestCa::new("hostile upstream CA");
    let up = Hostile::start(&ca, &["api.test"], handler).await;
    let (crlf_secret, crlf_inject) = if crlf {
        ("  CRLF:\n    env: CRLF\n    hosts: [api.test]\n", ", CRLF")
    } else {
        ("", "")
    };
    let yaml = format!(
        r#"name: main
secrets:
  GH_TOKEN:
    env: GH
    hosts: [api.test]
{crlf_secret}rules:
  - name: api
    host: api.test
    port: {port}
    inject: [GH_TOKEN{crlf_inject}]
{extra_rules}"#,
        port = up.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", up.port);
    for (host, port) in resolve {
        setup = setup.resolve(host, *port);
    }
    setup.env = vec![("TOLLGATE_SECRET_GH".into(), VALUE.into())];
    if crlf {
        setup
            .env
            .push(("TOLLGATE_SECRET_CRLF".into(), CRLF_VALUE.into()));
    }
    let proxy = common::start_proxy(&setup);
    Hf { _ca: ca, up, proxy }
}

fn api_url(f: &Hf, path: &str) -> String {
    format!("https://api.test:{}{path}", f.up.port)
}

const AUTH: &str = "Authorization: Bearer __GH_TOKEN__";

/// A plain `200 OK` with `body`, then close.
fn ok(body: &str) -> Reply {
    let len = body.len().to_string();
    let mut bytes = head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "text/plain"),
            ("Content-Length", &len),
            ("Connection", "close"),
        ],
    );
    bytes.extend_from_slice(body.as_bytes());
    Reply::close(bytes)
}

/// Asserts the upstream received the real value (so the test is meaningful),
/// without printing it.
fn assert_upstream_got_the_secret(seen: Option<&Seen>) {
    let Some(seen) = seen else {
        panic!("the upstream saw no request");
    };
    assert!(
        seen.bearer() == VALUE,
        "the upstream did not receive the injected secret: {}",
        redact(seen.header("authorization").unwrap_or("<none>").as_bytes())
    );
}

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client inside an intercepted tunnel: it shows the exact bytes
// the sandbox gets, binary bodies included.

struct Raw {
    status_line: String,
    headers: Vec<(String, String)>,
    /// The head as received.
    head: Vec<u8>,
    /// The body, de-chunked when the response says chunked.
    body: Vec<u8>,
}

impl Raw {
    fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }
}

/// Reads until EOF (an error counts as EOF), at most 4 MiB, at most 10 s.
async fn read_all<R: AsyncRead + Unpin>(io: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < 4 * 1024 * 1024 {
            match io.read(&mut buf).await {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    })
    .await;
    out
}

fn parse_response(bytes: &[u8]) -> Raw {
    let Some(end) = find(bytes, b"\r\n\r\n") else {
        return Raw {
            status_line: String::new(),
            headers: Vec::new(),
            head: bytes.to_vec(),
            body: Vec::new(),
        };
    };
    let head_text = String::from_utf8_lossy(&bytes[..end]).to_string();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &bytes[end + 4..];
    let is_chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if is_chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Raw {
        status_line,
        headers,
        head: bytes[..end + 4].to_vec(),
        body,
    }
}

/// The data of a chunked body, as far as it is well formed.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(rest, b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(rest.len());
        out.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
    out
}

/// Sends `request` (its own bytes, `Connection: close`) through an intercepted
/// tunnel to api.test and reads the whole response.
async fn raw_exchange(f: &Hf, request: &str) -> Raw {
    let target = format!("api.test:{}", f.up.port);
    let tcp = connect_tunnel(&f.proxy, &target).await;
    let mut tls = tls_via_proxy(&f.proxy, "api.test", tcp).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    parse_response(&read_all(&mut tls).await)
}

/// A GET for `path` to api.test with `extra` header lines.
fn get(f: &Hf, path: &str, extra: &[&str]) -> String {
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: api.test:{}\r\n", f.up.port);
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

fn assert_refusal(out: &common::CurlOut, status: u16, reason: &str) {
    assert_eq!(
        out.status,
        status,
        "status {} (curl exit {}: {}), headers: {}",
        out.status,
        out.exit,
        out.stderr.trim(),
        redact(out.headers.as_bytes())
    );
    assert_eq!(
        out.header("x-tollgate-reason").as_deref(),
        Some(reason),
        "{}",
        redact(out.headers.as_bytes())
    );
    assert_eq!(
        out.json()["error"],
        reason,
        "{}",
        redact(out.body.as_bytes())
    );
}

// ---------------------------------------------------------------------------
// 1. Status line.

#[tokio::test]
async fn reason_phrase_echoing_the_secret_is_replaced_by_the_canonical_one() {
    let f = hostile_fixture(|s| {
        let status = format!(
            "HTTP/1.1 401 Bad credentials {}",
            s.header("authorization").unwrap_or("")
        );
        Reply::close(head(
            &status,
            &[("Content-Length", "0"), ("Connection", "close")],
        ))
    })
    .await;
    let out = curl(&f.proxy, &["--http1.1", "-H", AUTH, &api_url(&f, "/login")]).await;
    assert_upstream_got_the_secret(f.up.seen().first());
    assert_eq!(out.status, 401, "{}", redact(out.headers.as_bytes()));
    assert_no_run(
        "the status line and headers (curl)",
        out.headers.as_bytes(),
        PIECE,
    );
    // curl -D also shows the CONNECT's `200`: the last status line is the answer.
    assert_eq!(
        out.headers
            .lines()
            .rfind(|l| l.starts_with("HTTP/"))
            .map(str::trim_end),
        Some("HTTP/1.1 401 Unauthorized")
    );

    // The same seen by a raw TLS client.
    let raw = raw_exchange(&f, &get(&f, "/login", &[AUTH])).await;
    assert_eq!(raw.status(), 401, "{}", redact(&raw.head));
    assert_no_run("the status line and headers (raw)", &raw.head, PIECE);
    assert_eq!(raw.status_line, "HTTP/1.1 401 Unauthorized");
}

// ---------------------------------------------------------------------------
// 2. Transfer codings.

/// Answers `/gzip`, `/deflate`, `/compress`, `/x-custom`, `/plain-gzip` with a
/// text echoing the Authorization received, under that transfer coding.
fn coding_handler(s: &Seen) -> Reply {
    let text = echo_text(s.header("authorization").unwrap_or("no credentials"));
    let (coding, body) = match s.path() {
        "/gzip" | "/plain-gzip" => ("gzip, chunked", gzip(text.as_bytes())),
        "/deflate" => ("deflate, chunked", zlib(text.as_bytes())),
        "/compress" => ("compress, chunked", text.into_bytes()),
        "/x-custom" => ("x-custom, chunked", text.into_bytes()),
        _ => return ok("unknown path"),
    };
    let mut bytes = head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "text/plain"),
            ("Transfer-Encoding", coding),
            ("Connection", "close"),
        ],
    );
    bytes.extend_from_slice(&chunked(&body));
    Reply::close(bytes)
}

/// A text echoing `credential`, long and repetitive enough that its gzip and
/// zlib forms are Huffman-coded: the value never appears in them as plain bytes
/// (a short text is stored as is, and scrubbing the raw bytes would hide the leak).
fn echo_text(credential: &str) -> String {
    format!("you sent: {credential}\n").repeat(8)
}

/// The client got a plain (decoded, scrubbed) body for a coded response.
fn assert_decoded_and_scrubbed(raw: &Raw, coding: &str, decode: fn(&[u8]) -> Option<Vec<u8>>) {
    assert_eq!(raw.status(), 200, "{}", redact(&raw.head));
    if let Some(inner) = decode(&raw.body) {
        assert_no_run(
            &format!("the body, once the client undoes {coding}"),
            &inner,
            PIECE,
        );
        panic!(
            "the client got a {coding} body (the transfer coding was passed through undecoded): {}",
            redact(&inner)
        );
    }
    assert!(
        !raw.body.starts_with(&[0x1f, 0x8b]),
        "the body still looks like gzip"
    );
    assert_no_run("the body", &raw.body, PIECE);
    assert_no_run("the head", &raw.head, PIECE);
    for te in raw.all("transfer-encoding") {
        assert!(
            !te.to_ascii_lowercase().contains(coding),
            "Transfer-Encoding: {te} reached the client"
        );
    }
    let body = String::from_utf8_lossy(&raw.body);
    assert!(
        body.contains(PLACEHOLDER),
        "the echo should read the placeholder: {}",
        redact(&raw.body)
    );
}

#[tokio::test]
async fn gzip_transfer_coding_is_decoded_and_scrubbed() {
    let f = hostile_fixture(coding_handler).await;
    let raw = raw_exchange(&f, &get(&f, "/gzip", &[AUTH])).await;
    assert_upstream_got_the_secret(f.up.seen().first());
    assert_decoded_and_scrubbed(&raw, "gzip", gunzip);
}

#[tokio::test]
async fn deflate_transfer_coding_is_decoded_and_scrubbed() {
    let f = hostile_fixture(coding_handler).await;
    let raw = raw_exchange(&f, &get(&f, "/deflate", &[AUTH])).await;
    assert_upstream_got_the_secret(f.up.seen().first());
    assert_decoded_and_scrubbed(&raw, "deflate", unzlib);
}

#[tokio::test]
async fn unknown_transfer_coding_is_502() {
    let f = hostile_fixture(coding_handler).await;
    for path in ["/compress", "/x-custom"] {
        let out = curl(&f.proxy, &["--http1.1", "-H", AUTH, &api_url(&f, path)]).await;
        assert_no_run(&format!("{path}: the body"), out.body.as_bytes(), PIECE);
        assert_refusal(&out, 502, "upstream_error");
    }
}

#[tokio::test]
async fn transfer_coding_is_decoded_without_any_placeholder_too() {
    let f = hostile_fixture(coding_handler).await;
    let raw = raw_exchange(&f, &get(&f, "/plain-gzip", &[])).await;
    assert_eq!(raw.status(), 200, "{}", redact(&raw.head));
    assert_eq!(
        String::from_utf8_lossy(&raw.body),
        echo_text("no credentials"),
        "transfer codings are hop-by-hop: tollgate decodes them (got {} bytes, gzip: {})",
        raw.body.len(),
        gunzip(&raw.body).is_some()
    );
    assert!(raw
        .all("transfer-encoding")
        .iter()
        .all(|te| !te.to_ascii_lowercase().contains("gzip")));
}

// ---------------------------------------------------------------------------
// 3. Pieces.

#[tokio::test]
async fn range_and_if_range_are_dropped_from_requests_carrying_a_secret() {
    let f = hostile_fixture(|_| ok("ok")).await;
    let with_secret = curl(
        &f.proxy,
        &[
            "--http1.1",
            "-H",
            AUTH,
            "-H",
            "Range: bytes=0-19",
            "-H",
            "If-Range: \"etag\"",
            &api_url(&f, "/file"),
        ],
    )
    .await;
    assert_eq!(with_secret.status, 200, "{with_secret:?}");
    let without = curl(
        &f.proxy,
        &[
            "--http1.1",
            "-H",
            "Range: bytes=0-19",
            &api_url(&f, "/file"),
        ],
    )
    .await;
    assert_eq!(without.status, 200, "{without:?}");
    let seen = f.up.seen();
    assert_eq!(seen.len(), 2);
    assert_upstream_got_the_secret(seen.first());
    assert_eq!(
        seen[0].all("range"),
        Vec::<&str>::new(),
        "Range reached the upstream with a secret"
    );
    assert_eq!(
        seen[0].all("if-range"),
        Vec::<&str>::new(),
        "If-Range reached the upstream with a secret"
    );
    assert_eq!(
        seen[1].all("range"),
        vec!["bytes=0-19"],
        "a request without a secret keeps its Range"
    );
}

/// Echoes pieces of the Authorization value: `/half1`, `/half2` (halves of the
/// value), `/trunc` (the header value cut at 40 characters), each in the body
/// and in `X-Echo`; `/split` sends the first half across two chunks.
fn pieces_handler(s: &Seen) -> Reply {
    let value = s.bearer();
    let header = s.header("authorization").unwrap_or("").to_string();
    let piece = match s.path() {
        "/half1" => value.get(..20),
        "/half2" => value.get(20..),
        "/trunc" => header.get(..40),
        "/split" => {
            let (a, b) = (
                value.get(..10).unwrap_or(""),
                value.get(10..20).unwrap_or(""),
            );
            return Reply::parts(
                vec![
                    head(
                        "HTTP/1.1 200 OK",
                        &[
                            ("Content-Type", "text/plain"),
                            ("Transfer-Encoding", "chunked"),
                            ("Connection", "close"),
                        ],
                    ),
                    chunk(format!("token={a}").as_bytes()),
                    [chunk(format!("{b} end").as_bytes()), LAST_CHUNK.to_vec()].concat(),
                ],
                After::Close,
            );
        }
        _ => None,
    }
    .unwrap_or("")
    .to_string();
    let body = format!("error: {piece} (truncated)");
    let len = body.len().to_string();
    let mut bytes = head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "text/plain"),
            ("X-Echo", &piece),
            ("Content-Length", &len),
            ("Connection", "close"),
        ],
    );
    bytes.extend_from_slice(body.as_bytes());
    Reply::close(bytes)
}

#[tokio::test]
async fn halves_and_truncations_of_the_secret_are_scrubbed() {
    let f = hostile_fixture(pieces_handler).await;
    for path in ["/half1", "/half2", "/trunc", "/split"] {
        let out = curl(&f.proxy, &["--http1.1", "-H", AUTH, &api_url(&f, path)]).await;
        assert_eq!(out.status, 200, "{path}: {out:?}");
        assert_no_run(
            &format!("{path}: the headers"),
            out.headers.as_bytes(),
            HALF,
        );
        assert_no_run(&format!("{path}: the body"), out.body.as_bytes(), HALF);
        assert!(
            out.body.contains(PLACEHOLDER),
            "{path}: the piece should read as the placeholder: {}",
            redact(out.body.as_bytes())
        );
        if path != "/split" {
            let echo = out.header("x-echo").unwrap_or_default();
            assert!(
                echo.contains(PLACEHOLDER),
                "{path}: X-Echo should read as the placeholder: {}",
                redact(echo.as_bytes())
            );
        }
    }
    assert!(f.up.seen().iter().all(|s| s.bearer() == VALUE));
}

/// Serves `value` by `Range` (`bytes=A-B` or `bytes=A-`): 206 with the slice,
/// or 200 with all of it.
fn serve_by_range(s: &Seen, value: &str) -> Reply {
    let range = s
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let a: usize = a.parse().ok()?;
            let b: usize = if b.is_empty() {
                value.len().checked_sub(1)?
            } else {
                b.parse().ok()?
            };
            (a <= b && b < value.len()).then_some((a, b))
        });
    let Some((a, b)) = range else {
        return ok(value);
    };
    let slice = &value[a..=b];
    let content_range = format!("bytes {a}-{b}/{}", value.len());
    let len = slice.len().to_string();
    let mut bytes = head(
        "HTTP/1.1 206 Partial Content",
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &content_range),
            ("Content-Length", &len),
            ("Connection", "close"),
        ],
    );
    bytes.extend_from_slice(slice.as_bytes());
    Reply::close(bytes)
}

#[tokio::test]
async fn the_echoed_secret_cannot_be_fetched_in_two_ranges() {
    // A file store whose file is the credential it was sent.
    let f = hostile_fixture(|s| serve_by_range(s, &s.bearer())).await;
    let mut got = Vec::new();
    for range in ["0-19", "20-"] {
        let out = curl(
            &f.proxy,
            &["--http1.1", "-H", AUTH, "-r", range, &api_url(&f, "/file")],
        )
        .await;
        assert!(out.status == 200 || out.status == 206, "{range}: {out:?}");
        assert_no_run(&format!("bytes {range}"), out.body.as_bytes(), HALF);
        got.extend_from_slice(out.body.as_bytes());
    }
    assert_no_run("the two ranges put together", &got, HALF);
}

#[tokio::test]
async fn a_stored_secret_cannot_be_fetched_in_two_ranges_later() {
    // The store keeps the credential of `/store` and serves it at `/stored`.
    let stored = Arc::new(Mutex::new(String::new()));
    let keep = stored.clone();
    let f = hostile_fixture(move |s| match s.path() {
        "/store" => {
            *keep.lock().unwrap() = s.bearer();
            ok("stored")
        }
        _ => serve_by_range(s, &keep.lock().unwrap()),
    })
    .await;
    let put = curl(&f.proxy, &["--http1.1", "-H", AUTH, &api_url(&f, "/store")]).await;
    assert_eq!(put.status, 200, "{put:?}");
    assert!(
        *stored.lock().unwrap() == VALUE,
        "the store did not get the secret"
    );
    // These requests carry no placeholder, so their Range stays.
    let mut got = Vec::new();
    for range in ["0-19", "20-"] {
        let out = curl(
            &f.proxy,
            &["--http1.1", "-r", range, &api_url(&f, "/stored")],
        )
        .await;
        assert!(out.status == 200 || out.status == 206, "{range}: {out:?}");
        assert_no_run(&format!("bytes {range}"), out.body.as_bytes(), HALF);
        got.extend_from_slice(out.body.as_bytes());
    }
    assert_no_run("the two ranges put together", &got, HALF);
}

// ---------------------------------------------------------------------------
// 4. WebSocket fragments.

/// A correct handshake, then one text message in two fragments (a ping between
/// them on `/ws-ping`): `token: ` + the first 25 bytes of the value, then the
/// remaining 15 + ` end`.
fn fragments_handler(s: &Seen) -> Reply {
    let value = s.bearer();
    let (a, b) = (value.get(..25).unwrap_or(""), value.get(25..).unwrap_or(""));
    let mut writes = vec![
        websocket_handshake(s),
        ws_frame(false, OP_TEXT, format!("token: {a}").as_bytes()),
    ];
    if s.path() == "/ws-ping" {
        writes.push(ws_frame(true, OP_PING, b"between"));
    }
    writes.push(ws_frame(
        true,
        OP_CONTINUATION,
        format!("{b} end").as_bytes(),
    ));
    Reply::parts(writes, After::Hold)
}

async fn fragmented_message(path: &str) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let f = hostile_fixture(fragments_handler).await;
    let target = format!("api.test:{}", f.up.port);
    let tcp = connect_tunnel(&f.proxy, &target).await;
    let tls = tls_via_proxy(&f.proxy, "api.test", tcp).await;
    let mut request = format!("wss://{target}{path}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer __GH_TOKEN__".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_upstream_got_the_secret(f.up.seen().first());
    let text = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.as_str().to_string(),
                Some(Ok(Message::Binary(b))) => return String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                other => panic!("no message: {other:?}"),
            }
        }
    })
    .await
    .expect("no message within 5 s");
    assert_no_run("the reassembled message", text.as_bytes(), PIECE);
    assert!(
        text.contains(PLACEHOLDER),
        "the message should read as the placeholder: {}",
        redact(text.as_bytes())
    );
    let _ = ws.close(None).await;
}

#[tokio::test]
async fn a_secret_split_across_websocket_fragments_is_scrubbed() {
    fragmented_message("/ws").await;
}

#[tokio::test]
async fn a_secret_split_across_websocket_fragments_around_a_ping_is_scrubbed() {
    fragmented_message("/ws-ping").await;
}

// ---------------------------------------------------------------------------
// 5. Strict parsing.

#[tokio::test]
async fn two_host_headers_inside_a_tunnel_get_400() {
    let f = hostile_fixture(|_| ok("ok")).await;
    let host = format!("Host: api.test:{}", f.up.port);
    let request =
        format!("GET /x HTTP/1.1\r\n{host}\r\nHost: evil.test\r\nConnection: close\r\n\r\n");
    let raw = raw_exchange(&f, &request).await;
    assert_eq!(raw.status(), 400, "{}", redact(&raw.head));
    assert_eq!(raw.header("x-tollgate-reason"), Some("bad_request"));
    assert_eq!(f.up.hits(), 0, "the upstream saw the request");
}

#[tokio::test]
async fn two_host_headers_in_absolute_form_get_400() {
    let plain = start_upstream(None).await;
    let rule = format!(
        "  - name: plain\n    host: plain.test\n    port: {}\n",
        plain.port
    );
    let f = fixture_with(|_| ok("ok"), false, &rule, &[("plain.test", plain.port)]).await;
    let target = format!("plain.test:{}", plain.port);
    // The same request with one Host works: the rule is right.
    let good = raw_proxy_request(
        &f.proxy,
        &format!("GET http://{target}/echo HTTP/1.1\r\nHost: {target}\r\n"),
        true,
    )
    .await;
    assert_eq!(
        good.status(),
        200,
        "{}",
        String::from_utf8_lossy(&good.head)
    );
    let before = plain.hits();
    let raw = raw_proxy_request(
        &f.proxy,
        &format!("GET http://{target}/echo HTTP/1.1\r\nHost: {target}\r\nHost: evil.test\r\n"),
        true,
    )
    .await;
    assert_eq!(raw.status(), 400, "{}", String::from_utf8_lossy(&raw.head));
    assert_eq!(raw.header("x-tollgate-reason"), Some("bad_request"));
    assert_eq!(plain.hits(), before, "the upstream saw the request");
}

/// Writes `head` (request line and headers, without the blank line) to the
/// proxy port, with the task's credentials when `auth`, and reads the response
/// head and its Content-Length body.
async fn raw_proxy_request(proxy: &ProxyProc, head: &str, auth: bool) -> Raw {
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let credentials = if auth {
        format!("Proxy-Authorization: Basic {}\r\n", basic(TASK, TOKEN))
    } else {
        format!("Proxy-Authorization: Basic {}\r\n", basic(TASK, "wrong"))
    };
    tcp.write_all(format!("{head}{credentials}\r\n").as_bytes())
        .await
        .unwrap();
    read_response(&mut tcp).await
}

/// Reads one response: the head, then exactly its Content-Length body (none
/// without one). Bounded to 10 s.
async fn read_response(tcp: &mut tokio::net::TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(end) = find(&bytes, b"\r\n\r\n") {
                let parsed = parse_response(&bytes[..end + 4]);
                let length: usize = parsed
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    break;
                }
            }
            match tcp.read(&mut buf).await {
                Ok(n) if n > 0 => bytes.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    })
    .await;
    parse_response(&bytes)
}

#[tokio::test]
async fn malformed_connect_targets_get_400_and_dial_nothing() {
    let f = hostile_fixture(|_| ok("ok")).await;
    let port = f.up.port;
    let mut failures = Vec::new();
    let mut bare = Vec::new();
    for target in [
        format!("api.test:+{port}"),
        format!("user@api.test:{port}"),
        format!("user:pw@api.test:{port}"),
        "api.test:0".to_string(),
        "api.test:65536".to_string(),
    ] {
        let raw = raw_proxy_request(
            &f.proxy,
            &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"),
            true,
        )
        .await;
        match (raw.status(), raw.header("x-tollgate-reason")) {
            (400, Some("bad_request")) => {}
            (400, None) => bare.push(target),
            (_, _) => failures.push(format!("CONNECT {target}: {}", raw.status_line)),
        }
    }
    if !bare.is_empty() {
        eprintln!("answered with a bare 400 (hyper's own): {bare:?}");
    }
    assert!(failures.is_empty(), "not refused with 400: {failures:?}");
    assert_eq!(f.up.connections(), 0, "the upstream was dialled");
}

// ---------------------------------------------------------------------------
// 6. Denials are on disk before the response.

/// Sends `head` on a raw connection, reads the complete response, SIGKILLs
/// tollgate at once, and expects the record of that refusal in the file.
async fn denial_survives_sigkill(head: &str, auth: bool, status: u16) {
    let yaml = "name: main\nrules:\n  - name: plain\n    host: plain.test\n    port: 1\n";
    let mut proxy = common::start_proxy(&ProxySetup::with_policy("main", yaml));
    let raw = raw_proxy_request(&proxy, head, auth).await;
    proxy.kill_now();
    assert_eq!(
        raw.status(),
        status,
        "{}",
        String::from_utf8_lossy(&raw.head)
    );
    let records = audit_records(&proxy);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "request" && r["status"] == status),
        "the record of the {status} is not in the audit file after a SIGKILL right after the response:\n{}",
        records
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_403_no_rule_is_on_disk_before_the_response() {
    denial_survives_sigkill(
        "GET http://nowhere.test:9/x HTTP/1.1\r\nHost: nowhere.test:9\r\n",
        true,
        403,
    )
    .await;
}

#[tokio::test]
async fn a_407_is_on_disk_before_the_response() {
    denial_survives_sigkill(
        "GET http://plain.test:1/x HTTP/1.1\r\nHost: plain.test:1\r\n",
        false,
        407,
    )
    .await;
}

#[tokio::test]
async fn a_400_is_on_disk_before_the_response() {
    denial_survives_sigkill(
        "GET http://plain.test:1/a/../b HTTP/1.1\r\nHost: plain.test:1\r\n",
        true,
        400,
    )
    .await;
}

#[tokio::test]
async fn a_refused_connect_is_on_disk_before_the_response() {
    denial_survives_sigkill(
        "CONNECT nowhere.test:443 HTTP/1.1\r\nHost: nowhere.test:443\r\n",
        true,
        403,
    )
    .await;
}

// ---------------------------------------------------------------------------
// 7. `status` is what the client got.

fn broken_handler(s: &Seen) -> Reply {
    match s.path() {
        "/bad-gzip" => {
            let body = "this is not gzip at all";
            let len = body.len().to_string();
            let mut bytes = head(
                "HTTP/1.1 200 OK",
                &[
                    ("Content-Type", "text/plain"),
                    ("Content-Encoding", "gzip"),
                    ("Content-Length", &len),
                    ("Connection", "close"),
                ],
            );
            bytes.extend_from_slice(body.as_bytes());
            Reply::close(bytes)
        }
        "/cut" => {
            let mut bytes = head(
                "HTTP/1.1 200 OK",
                &[
                    ("Content-Type", "text/plain"),
                    ("Content-Length", "1000"),
                    ("Connection", "close"),
                ],
            );
            bytes.extend_from_slice(b"0123456789");
            Reply::close(bytes)
        }
        _ => ok("ok"),
    }
}

#[tokio::test]
async fn a_body_labelled_gzip_that_is_not_gzip_is_a_502_and_recorded_so() {
    let f = hostile_fixture(broken_handler).await;
    let out = curl(
        &f.proxy,
        &["--http1.1", "-H", AUTH, &api_url(&f, "/bad-gzip")],
    )
    .await;
    assert_refusal(&out, 502, "upstream_error");
    let record = wait_record(&f.proxy, |r| r["path"] == "/bad-gzip").await;
    assert_eq!(record["status"], 502, "{record}");
    assert_eq!(record["decision"], "error", "{record}");
    assert_eq!(record["reason"], "upstream_error", "{record}");
}

#[tokio::test]
async fn a_body_cut_short_is_recorded_as_an_error_with_the_status_sent() {
    let f = hostile_fixture(broken_handler).await;
    let out = curl(&f.proxy, &["--http1.1", "-H", AUTH, &api_url(&f, "/cut")]).await;
    assert_eq!(out.status, 200, "the client got the head: {out:?}");
    assert!(out.body.len() < 1000, "{} bytes", out.body.len());
    assert_ne!(out.exit, 0, "curl must see the body was cut: {out:?}");
    let record = wait_record(&f.proxy, |r| r["path"] == "/cut").await;
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(record["decision"], "error", "{record}");
    assert_eq!(record["reason"], "upstream_error", "{record}");
}

// ---------------------------------------------------------------------------
// 8. `audit verify` on a log cut before its shutdown checkpoint.

async fn verify_reports_a_cut_log(audit_yaml: &str) {
    let ca = TestCa::new("upstream test CA");
    let api: Upstream = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nrules:\n  - {{ host: api.test, port: {} }}\n",
        api.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    setup.extra_yaml = audit_yaml.to_string();
    let proxy = common::start_proxy(&setup);
    for i in 0..3 {
        let out = curl(
            &proxy,
            &[&format!("https://api.test:{}/echo?i={i}", api.port)],
        )
        .await;
        assert_eq!(out.status, 200, "{out:?}");
    }
    wait_record(&proxy, |r| r["query"] == "i=2").await;
    // The proxy is still running: this copy has no shutdown checkpoint.
    let state = proxy.dir.path().join("state");
    let copy = proxy.dir.path().join("cut.jsonl");
    std::fs::copy(state.join("audit/audit.jsonl"), &copy).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&copy)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last_checkpoint = lines
        .iter()
        .rposition(|r| r["type"] == "checkpoint")
        .expect("the start checkpoint");
    let after = lines.len() - last_checkpoint - 1;
    assert_eq!(after, 3, "the three requests follow the start checkpoint");
    let out = Command::new(tollgate_bin())
        .args(["audit", "verify"])
        .arg(&copy)
        .arg("--key")
        .arg(state.join("audit.key.pub"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "{} records ok, {after} after the last checkpoint unconfirmed: the log may have been cut",
            lines.len()
        )
    );
}

#[tokio::test]
async fn verify_reports_the_unconfirmed_tail_of_a_cut_log_in_record_mode() {
    verify_reports_a_cut_log("audit:\n  sign: record\n").await;
}

#[tokio::test]
async fn verify_reports_the_unconfirmed_tail_of_a_cut_log_in_checkpoint_mode() {
    // No periodic checkpoint may land during the test.
    verify_reports_a_cut_log("audit:\n  sign: checkpoint\n  checkpoint_every: 1h\n").await;
}

// ---------------------------------------------------------------------------
// 9. The audit key is readable by OpenSSL 3.0.

fn assert_openssl_reads(key: &std::path::Path) {
    let out = Command::new("openssl")
        .args(["pkey", "-in"])
        .arg(key)
        .arg("-pubout")
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl pkey failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // Byte for byte the same PEM.
    let public = std::fs::read_to_string(key.with_extension("key.pub")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), public);
}

#[test]
fn openssl_reads_the_audit_key_keygen_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(tollgate_bin())
        .args(["audit", "keygen", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_openssl_reads(&dir.path().join("audit.key"));
}

// ---------------------------------------------------------------------------
// 10. Early 413, whatever the protocol and the client.

struct BodyFixture {
    _ca: TestCa,
    api: Upstream,
    proxy: ProxyProc,
    /// A 1.5 MiB JSON body carrying the placeholder.
    big: std::path::PathBuf,
}

async fn body_fixture() -> BodyFixture {
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        r#"name: main
secrets:
  GH_TOKEN:
    env: GH
    hosts: [api.test]
rules:
  - name: api body
    host: api.test
    port: {}
    methods: [POST]
    paths: ["/echo-body"]
    inject: [GH_TOKEN]
    inject_body: true
"#,
        api.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    setup.env = vec![("TOLLGATE_SECRET_GH".into(), VALUE.into())];
    let proxy = common::start_proxy(&setup);
    let body = format!(
        "{{\"token\":\"{PLACEHOLDER}\",\"data\":\"{}\"}}",
        "x".repeat(1536 * 1024)
    );
    let big = common::write_file(proxy.dir.path(), "big.json", &body);
    BodyFixture {
        _ca: ca,
        api,
        proxy,
        big,
    }
}

fn body_url(f: &BodyFixture) -> String {
    format!("https://api.test:{}/echo-body", f.api.port)
}

async fn curl_413(extra: &[&str]) {
    let f = body_fixture().await;
    let data = format!("@{}", f.big.display());
    let url = body_url(&f);
    let mut args = extra.to_vec();
    args.extend([
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
        &url,
    ]);
    let out = curl(&f.proxy, &args).await;
    assert_refusal(&out, 413, "body_too_large");
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn early_413_with_curl_http2() {
    curl_413(&["--http2"]).await;
}

#[tokio::test]
async fn early_413_with_curl_http1() {
    curl_413(&["--http1.1"]).await;
}

/// The same class: any refusal answered before the upload ends (here 403, a
/// path no rule allows) reaches an HTTP/2 client as itself, not as a reset stream.
#[tokio::test]
async fn early_403_on_a_large_upload_with_curl_http2() {
    let f = body_fixture().await;
    let data = format!("@{}", f.big.display());
    let url = format!("https://api.test:{}/no-rule-here", f.api.port);
    let out = curl(
        &f.proxy,
        &[
            "--http2",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &data,
            &url,
        ],
    )
    .await;
    assert_refusal(&out, 403, "no_rule");
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn early_413_with_curl_chunked_upload() {
    curl_413(&["--http1.1", "-H", "Transfer-Encoding: chunked"]).await;
}

/// What a script client reported: `{"status","reason","body"}` or `{"error"}`.
async fn run_script(program: &str, args: &[&str], f: &BodyFixture) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("PROXY_HOST", f.proxy.addr.ip().to_string())
        .env("PROXY_PORT", f.proxy.addr.port().to_string())
        .env("PROXY_URL", f.proxy.url())
        .env("PROXY_AUTH", format!("{TASK}:{TOKEN}"))
        .env("TARGET_HOST", "api.test")
        .env("TARGET_PORT", f.api.port.to_string())
        .env("CA_FILE", &f.proxy.ca_pem)
        .env("BODY_FILE", &f.big)
        .env("URL", body_url(f))
        .kill_on_drop(true);
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUESTS_CA_BUNDLE",
        "NODE_OPTIONS",
    ] {
        cmd.env_remove(var);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the client script hung")
        .expect("the client program must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "{program} printed no result: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_script_413(result: &serde_json::Value) {
    assert_eq!(result["status"], 413, "{result}");
    assert_eq!(result["reason"], "body_too_large", "{result}");
    let body: serde_json::Value =
        serde_json::from_str(result["body"].as_str().unwrap_or("")).unwrap_or_default();
    assert_eq!(body["error"], "body_too_large", "{result}");
}

const PYTHON_CLIENT: &str = r#"
import json, os, requests
try:
    with open(os.environ["BODY_FILE"], "rb") as f:
        data = f.read()
    proxies = {"http": os.environ["PROXY_URL"], "https": os.environ["PROXY_URL"]}
    r = requests.post(os.environ["URL"], data=data, proxies=proxies,
                      verify=os.environ["CA_FILE"], timeout=20,
                      headers={"Content-Type": "application/json"})
    print(json.dumps({"status": r.status_code,
                      "reason": r.headers.get("x-tollgate-reason"), "body": r.text}))
except Exception as e:
    print(json.dumps({"error": repr(e)}))
"#;

#[tokio::test]
async fn early_413_with_python_requests() {
    let f = body_fixture().await;
    // Three times: on a race, one try may hit the good side of it.
    for _ in 0..3 {
        let result = run_script("python3", &["-c", PYTHON_CLIENT], &f).await;
        assert_script_413(&result);
    }
    assert_eq!(f.api.hits(), 0);
}

/// Opens a CONNECT tunnel with `http.request` and TLS on it with `tls.connect`
/// (ALPN from `ALPN`), then runs `send(tlsSocket, body, done)`.
const NODE_TUNNEL: &str = r#"
const http = require('http'), tls = require('tls'), fs = require('fs');
const env = process.env;
let finished = false;
function done(result) {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify(result));
  process.exit(0);
}
setTimeout(() => done({ error: 'timeout' }), 20000);
const target = `${env.TARGET_HOST}:${env.TARGET_PORT}`;
const connect = http.request({
  host: env.PROXY_HOST, port: env.PROXY_PORT, method: 'CONNECT', path: target,
  headers: { Host: target,
             'Proxy-Authorization': 'Basic ' + Buffer.from(env.PROXY_AUTH).toString('base64') },
});
connect.on('error', (e) => done({ error: 'connect: ' + e }));
connect.on('connect', (res, socket) => {
  if (res.statusCode !== 200) return done({ error: 'CONNECT answered ' + res.statusCode });
  const secure = tls.connect({ socket, servername: env.TARGET_HOST,
                               ca: fs.readFileSync(env.CA_FILE), ALPNProtocols: [ALPN] });
  secure.on('error', (e) => done({ error: 'tls: ' + e }));
  send(secure, fs.readFileSync(env.BODY_FILE), done);
});
connect.end();
"#;

const NODE_HTTPS: &str = r#"
const ALPN = 'http/1.1';
function send(secure, body, done) {
  const https = require('https');
  const env = process.env;
  const req = https.request({
    host: env.TARGET_HOST, port: env.TARGET_PORT, method: 'POST', path: '/echo-body',
    createConnection: () => secure,
    headers: { 'Content-Type': 'application/json', 'Content-Length': body.length },
  }, (res) => {
    let data = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { data += d; });
    res.on('end', () => done({ status: res.statusCode,
                               reason: res.headers['x-tollgate-reason'] || null, body: data }));
    res.on('error', (e) => done({ status: res.statusCode, error: 'response: ' + e, body: data }));
  });
  req.on('error', (e) => done({ error: 'request: ' + e }));
  req.end(body);
}
"#;

const NODE_HTTP2: &str = r#"
const ALPN = 'h2';
function send(secure, body, done) {
  const http2 = require('http2');
  const env = process.env;
  secure.on('secureConnect', () => {
    if (secure.alpnProtocol !== 'h2') return done({ error: 'ALPN ' + secure.alpnProtocol });
    const client = http2.connect(`https://${env.TARGET_HOST}:${env.TARGET_PORT}`,
                                 { createConnection: () => secure });
    client.on('error', (e) => done({ error: 'session: ' + e }));
    const stream = client.request({ ':method': 'POST', ':path': '/echo-body',
                                    'content-type': 'application/json' });
    let status = null, reason = null, data = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => { status = h[':status']; reason = h['x-tollgate-reason'] || null; });
    stream.on('data', (d) => { data += d; });
    stream.on('end', () => done({ status, reason, body: data }));
    stream.on('error', (e) => done({ status, error: 'stream: ' + e, body: data }));
    stream.end(body);
  });
}
"#;

/// Node with `script` (one of the clients above) over the tunnel helper.
async fn node_413(client: &str) {
    let f = body_fixture().await;
    let script = format!("{client}{NODE_TUNNEL}");
    // Three times: on a race, one try may hit the good side of it.
    for _ in 0..3 {
        let result = run_script("node", &["-e", &script], &f).await;
        assert_script_413(&result);
    }
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn early_413_with_node_https() {
    node_413(NODE_HTTPS).await;
}

#[tokio::test]
async fn early_413_with_node_http2() {
    node_413(NODE_HTTP2).await;
}

// ---------------------------------------------------------------------------
// 11. A secret value that cannot be a header value.

#[tokio::test]
async fn a_secret_with_cr_or_lf_is_503_and_never_forwarded() {
    let f = fixture_with(|_| ok("ok"), true, "", &[]).await;
    let out = curl(
        &f.proxy,
        &[
            "--http1.1",
            "-H",
            "Authorization: Bearer __CRLF__",
            &api_url(&f, "/x"),
        ],
    )
    .await;
    assert_refusal(&out, 503, "secret_unavailable");
    let message = out.json()["message"].as_str().unwrap_or("").to_string();
    assert!(
        message.contains("CRLF") && message.contains("CR or LF"),
        "{message}"
    );
    assert_eq!(f.up.hits(), 0, "the upstream saw the request");
    let record = wait_record(&f.proxy, |r| r["type"] == "request").await;
    assert_eq!(record["reason"], "secret_unavailable", "{record}");
    assert_eq!(record["status"], 503, "{record}");
    assert!(
        !f.proxy.logs().join("\n").contains("X-Injected: 1"),
        "the raw value reached tollgate's logs"
    );
}
