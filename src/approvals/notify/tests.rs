//! The notifier against real HTTP receivers on loopback: what a notice carries,
//! which answers are retried, and that a dead receiver starves no other.

use super::message::tests::notice;
use super::*;
use http::HeaderMap;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(RootCertStore::empty())
    .with_no_client_auth()
}

/// A received POST.
struct Received {
    headers: HeaderMap,
    json: serde_json::Value,
}

/// A tiny HTTP/1 receiver: answers with `script` in order (then 200) and
/// sends every request it gets (whatever its answer) into the channel.
struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    hits: Arc<AtomicUsize>,
}

impl Receiver {
    async fn next(&mut self) -> Received {
        timeout(WAIT, self.rx.recv()).await.unwrap().unwrap()
    }
}

async fn receiver(script: &[u16]) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
    let hits = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let hits2 = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let tx = tx.clone();
            let hits = hits2.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let script = script.clone();
                    let tx = tx.clone();
                    let hits = hits.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.unwrap().to_bytes();
                        let json = serde_json::from_slice(&bytes).unwrap();
                        hits.fetch_add(1, Ordering::SeqCst);
                        let status = script.lock().unwrap().pop_front().unwrap_or(200);
                        let _ = tx.send(Received {
                            headers: parts.headers,
                            json,
                        });
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                            b"secret receiver answer",
                        )));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver {
        url: format!("http://{addr}/hooks/T000/B000/secret"),
        rx,
        hits,
    }
}

async fn wait_failed(n: &Notifier, want: u64) {
    timeout(WAIT, async {
        while n.failed() < want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn notice_carries_all_fields_and_action_urls() {
    let mut rx = receiver(&[]).await;
    let n = Notifier::new(std::slice::from_ref(&rx.url), &tls()).unwrap();
    n.notify(notice());
    let got = rx.next().await;
    let j = &got.json;
    assert_eq!(got.headers[CONTENT_TYPE], "application/json");
    assert_eq!(
        got.headers[USER_AGENT],
        concat!("tollgate/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(j["id"], "a-1f2e3d4c5b6a7980");
    assert_eq!(j["task"], "t-abc");
    assert_eq!(j["policy"], "github-agent");
    assert_eq!(j["rule"], "merge needs a person");
    assert_eq!(j["method"], "PUT");
    assert_eq!(j["scheme"], "https");
    assert_eq!(j["host"], "api.github.com");
    assert_eq!(j["port"], 443);
    assert_eq!(j["path"], "/repos/acme/x/pulls/7/merge");
    assert!(j["query"].is_null());
    assert_eq!(j["since"], "2023-11-14T22:13:20.123Z");
    assert_eq!(j["expires_at"], "2023-11-14T22:18:20.123Z");
    assert_eq!(j["body_bytes"], 42);
    assert_eq!(j["content_type"], "application/json");
    assert!(j["approve_url"].is_null());
    assert!(j["deny_url"].is_null());
    assert_eq!(
        j["text"],
        "tollgate: task t-abc wants PUT https://api.github.com/repos/acme/x/pulls/7/merge \
         (rule \"merge needs a person\", policy github-agent). \
         Approve: tollgate approvals approve a-1f2e3d4c5b6a7980 \u{b7} \
         Deny: tollgate approvals deny a-1f2e3d4c5b6a7980"
    );

    n.set_admin_base("http://127.0.0.1:3129/".into());
    let mut other = notice();
    other.summary.port = 8443;
    other.summary.content_type = None;
    other.summary.query = Some("merge_method=squash".into());
    n.notify(other);
    let j = rx.next().await.json;
    assert_eq!(
        j["approve_url"],
        "http://127.0.0.1:3129/v1/approvals/a-1f2e3d4c5b6a7980/approve"
    );
    assert_eq!(
        j["deny_url"],
        "http://127.0.0.1:3129/v1/approvals/a-1f2e3d4c5b6a7980/deny"
    );
    assert!(j["content_type"].is_null());
    assert_eq!(j["query"], "merge_method=squash");
    let text = j["text"].as_str().unwrap();
    assert!(
        text.contains(
            "PUT https://api.github.com:8443/repos/acme/x/pulls/7/merge?merge_method=squash "
        ),
        "{text}"
    );
    assert_eq!(n.failed(), 0);
}

#[tokio::test]
async fn retries_5xx_until_delivered() {
    let mut rx = receiver(&[500, 500]).await;
    let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
        .unwrap()
        .with_backoff_base(Duration::from_millis(1));
    n.notify(notice());
    for _ in 0..3 {
        assert_eq!(rx.next().await.json["id"], "a-1f2e3d4c5b6a7980");
    }
    // Nothing more arrives: the third attempt was answered 200.
    assert!(timeout(Duration::from_millis(200), rx.rx.recv())
        .await
        .is_err());
    assert_eq!(rx.hits.load(Ordering::SeqCst), 3);
    assert_eq!(n.failed(), 0);
}

#[tokio::test]
async fn retries_408_and_429() {
    let mut rx = receiver(&[408, 429]).await;
    let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
        .unwrap()
        .with_backoff_base(Duration::from_millis(1));
    n.notify(notice());
    for _ in 0..3 {
        rx.next().await;
    }
    assert!(timeout(Duration::from_millis(200), rx.rx.recv())
        .await
        .is_err());
    assert_eq!(n.failed(), 0);
}

#[tokio::test]
async fn gives_up_after_six_attempts() {
    let mut rx = receiver(&[503; 10]).await;
    let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
        .unwrap()
        .with_backoff_base(Duration::from_millis(1));
    n.notify(notice());
    wait_failed(&n, 1).await;
    for _ in 0..6 {
        rx.next().await;
    }
    assert!(timeout(Duration::from_millis(200), rx.rx.recv())
        .await
        .is_err());
    assert_eq!(n.failed(), 1);
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let mut rx = receiver(&[400]).await;
    let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
        .unwrap()
        .with_backoff_base(Duration::from_millis(1));
    n.notify(notice());
    rx.next().await;
    wait_failed(&n, 1).await;
    assert!(timeout(Duration::from_millis(200), rx.rx.recv())
        .await
        .is_err());
    assert_eq!(rx.hits.load(Ordering::SeqCst), 1);
    assert_eq!(n.failed(), 1);
}

#[tokio::test]
async fn receiver_down_does_not_block_and_eventually_fails() {
    let addr = closed_port().await;
    let n = Notifier::new(&[format!("http://{addr}/hook")], &tls())
        .unwrap()
        .with_backoff_base(Duration::from_millis(1));
    let started = std::time::Instant::now();
    n.notify(notice());
    let took = started.elapsed();
    // Returned before any delivery could have been given up.
    assert_eq!(n.failed(), 0);
    assert!(took < ATTEMPT_TIMEOUT, "notify took {took:?}");
    wait_failed(&n, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(n.failed(), 1);
}

#[tokio::test]
async fn too_many_in_flight_are_dropped() {
    let mut rx = receiver(&[500; 10]).await;
    let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
        .unwrap()
        .with_backoff_base(Duration::from_secs(3600))
        .with_max_in_flight(1);
    n.notify(notice());
    // The first delivery now waits an hour before retrying, holding the slot.
    rx.next().await;
    n.notify(notice());
    assert_eq!(n.failed(), 1);
}

#[tokio::test]
async fn hostile_values_are_escaped_in_text_only() {
    let mut rx = receiver(&[]).await;
    let n = Notifier::new(std::slice::from_ref(&rx.url), &tls()).unwrap();
    let hostile_path = "/x/<@U999>";
    let hostile_query = "a=<!channel>&b=<http://evil.example|Click to approve>\n<@U123>";
    let hostile_rule = "r <!here> & <http://x|y>";
    let mut bad = notice();
    bad.summary.path = hostile_path.into();
    bad.summary.query = Some(hostile_query.into());
    bad.summary.rule = hostile_rule.into();
    bad.summary.method = "GET\u{202e}<".into();
    bad.summary.task = "t>\r\n*hi*".into();
    n.notify(bad);
    let j = rx.next().await.json;
    let text = j["text"].as_str().unwrap();
    assert!(!text.contains('<'), "{text}");
    assert!(!text.contains('>'), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{text}"
    );
    assert!(
        text.contains(
            "/x/&lt;@U999&gt;?a=&lt;!channel&gt;&amp;b=&lt;http://evil.example|Click to approve&gt;"
        ),
        "{text}"
    );
    assert!(
        text.contains("rule \"r &lt;!here&gt; &amp; &lt;http://x|y&gt;\""),
        "{text}"
    );
    // Every `&` in the text starts one of the three entities.
    for (i, _) in text.match_indices('&') {
        let rest = &text[i..];
        assert!(
            rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"),
            "{text}"
        );
    }
    assert_eq!(j["path"], hostile_path);
    assert_eq!(j["query"], hostile_query);
    assert_eq!(j["rule"], hostile_rule);
    assert_eq!(j["method"], "GET\u{202e}<");
}

/// A receiver that accepts connections and never answers (nor closes them).
async fn blackhole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn blackholed_url_does_not_starve_another() {
    const CAP: usize = 4;
    const SENT: usize = 3 * CAP;
    let dead = blackhole().await;
    let mut rx = receiver(&[]).await;
    // The blackholed URL comes first: with one budget shared by all URLs,
    // its deliveries would hold every slot and the healthy URL's would be
    // dropped.
    let n = Notifier::new(&[dead, rx.url.clone()], &tls())
        .unwrap()
        .with_backoff_base(Duration::from_millis(1))
        .with_attempt_timeout(Duration::from_millis(200))
        .with_max_in_flight(CAP);
    for i in 0..SENT {
        let mut one = notice();
        one.id = format!("a-{i}");
        n.notify(one);
        // Each delivery to the blackhole holds its slot for 6 attempts of
        // 200 ms; the healthy one is done long before.
        assert_eq!(rx.next().await.json["id"], format!("a-{i}"));
    }
    // The blackhole's budget was full: the notices beyond it were dropped.
    assert!(n.failed() >= (SENT - CAP) as u64, "{}", n.failed());
    // ...and the ones in flight are given up in the end; the healthy URL
    // failed none.
    wait_failed(&n, SENT as u64).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(n.failed(), SENT as u64);
    assert_eq!(rx.hits.load(Ordering::SeqCst), SENT);
}

#[tokio::test]
async fn every_url_receives_it() {
    let mut a = receiver(&[]).await;
    let mut b = receiver(&[]).await;
    let n = Notifier::new(&[a.url.clone(), b.url.clone()], &tls()).unwrap();
    n.notify(notice());
    assert_eq!(a.next().await.json["id"], "a-1f2e3d4c5b6a7980");
    assert_eq!(b.next().await.json["id"], "a-1f2e3d4c5b6a7980");
    assert_eq!(n.failed(), 0);
}

#[test]
fn new_rejects_bad_urls_and_debug_hides_them() {
    assert!(Notifier::new(&["ftp://x/".into()], &tls()).is_err());
    assert!(Notifier::new(&["not a url".into()], &tls()).is_err());
    assert!(Notifier::new(&["/relative".into()], &tls()).is_err());
    let n = Notifier::new(&["https://hooks.example/services/SECRET".into()], &tls()).unwrap();
    let shown = format!("{n:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(!shown.contains("hooks.example"), "{shown}");
}

#[test]
fn notify_outside_a_runtime_counts_as_failed() {
    let n = Notifier::new(&["http://127.0.0.1:9/".into()], &tls()).unwrap();
    n.notify(notice());
    assert_eq!(n.failed(), 1);
}

#[test]
fn no_urls_is_a_no_op() {
    let n = Notifier::new(&[], &tls()).unwrap();
    n.notify(notice());
    assert_eq!(n.failed(), 0);
}
