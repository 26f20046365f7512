//! Remote audit sinks against real receivers on 127.0.0.1: syslog over TCP
//! (RFC 5424 + RFC 6587 octet counting) and UDP, HTTP collectors that are down,
//! refuse, or are slow, Splunk HEC envelopes, OCSF bodies, and the disk spool
//! across close and restart.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate::audit::remote::{RemoteSink, SinkOptions};
use tollgate::audit::SealedRecord;
use tollgate::config::{
    AuditSink, HttpEnvelope, HttpSink, SinkFormat, SyslogSink, SyslogTransport,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

/// Quick retries so that tests wait for a receiver's return in milliseconds.
fn fast() -> SinkOptions {
    SinkOptions {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        ..SinkOptions::default()
    }
}

fn ts(seq: u64) -> String {
    format!(
        "2026-11-23T05:{:02}:{:02}.{:03}Z",
        seq / 60_000 % 60,
        seq / 1000 % 60,
        seq % 1000
    )
}

/// A request record in canonical (sorted-key) form.
fn record(seq: u64) -> SealedRecord {
    let line = format!(
        r#"{{"bytes_down":5120,"bytes_up":0,"client":"10.200.0.2:51234","decision":"allow","duration_ms":12,"host":"api.github.com","key_id":"3f9a0c1d2e3f4a5b","method":"GET","path":"/repos/acme/x/pulls","policy":"github-reader","port":443,"prev":"{:064x}","query":"state=open","reason":null,"rule":"read pulls","scheme":"https","secrets":["GITHUB_TOKEN"],"seq":{seq},"sig":"c2lnbmF0dXJl","status":200,"task":"ci-42","ts":"{}","type":"request","v":1}}"#,
        seq.wrapping_sub(1),
        ts(seq)
    );
    SealedRecord {
        seq,
        line: Bytes::from(line),
    }
}

fn checkpoint(seq: u64) -> SealedRecord {
    let line = format!(
        r#"{{"event":"start","key_id":"3f9a0c1d2e3f4a5b","prev":"{:064x}","seq":{seq},"sig":"c2lnbmF0dXJl","ts":"{}","type":"checkpoint","v":1}}"#,
        seq.wrapping_sub(1),
        ts(seq)
    );
    SealedRecord {
        seq,
        line: Bytes::from(line),
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spool_lines(sink: &RemoteSink) -> usize {
    std::fs::read(sink.spool_path())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// A port nothing listens on (yet).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---------------------------------------------------------------- syslog

/// One parsed RFC 5424 message.
#[derive(Debug)]
struct Syslog5424 {
    pri_version: String,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    sd: String,
    msg: String,
}

fn parse_5424(raw: &[u8]) -> Syslog5424 {
    let text = std::str::from_utf8(raw).unwrap();
    let parts: Vec<&str> = text.splitn(8, ' ').collect();
    assert_eq!(parts.len(), 8, "not an RFC 5424 message: {text}");
    Syslog5424 {
        pri_version: parts[0].into(),
        timestamp: parts[1].into(),
        hostname: parts[2].into(),
        app: parts[3].into(),
        procid: parts[4].into(),
        msgid: parts[5].into(),
        sd: parts[6].into(),
        msg: parts[7].into(),
    }
}

fn check_message(m: &Syslog5424, rec: &SealedRecord) {
    assert_eq!(m.pri_version, "<110>1");
    assert_eq!(m.timestamp, ts(rec.seq));
    assert!(!m.hostname.is_empty() && !m.hostname.contains(' '));
    assert_eq!(m.app, "tollgate");
    assert_eq!(m.procid, std::process::id().to_string());
    assert_eq!(m.msgid, "audit");
    assert_eq!(m.sd, "-");
    assert_eq!(m.msg.as_bytes(), &rec.line[..], "MSG is the record line");
}

/// Reads RFC 6587 octet-counted frames (`LEN SP MSG`) until EOF.
fn read_frames(
    stream: std::net::TcpStream,
    tx: &mpsc::Sender<Vec<u8>>,
    max: usize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    for _ in 0..max {
        let mut len = Vec::new();
        if reader.read_until(b' ', &mut len)? == 0 {
            return Ok(());
        }
        assert_eq!(
            len.pop(),
            Some(b' '),
            "frame length not followed by a space"
        );
        let len: usize = std::str::from_utf8(&len).unwrap().parse().unwrap();
        let mut msg = vec![0u8; len];
        reader.read_exact(&mut msg)?;
        if tx.send(msg).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn syslog_sink(addr: SocketAddr, transport: SyslogTransport, format: SinkFormat) -> AuditSink {
    AuditSink::Syslog(SyslogSink {
        address: addr.to_string(),
        transport,
        format,
    })
}

#[test]
fn syslog_tcp_octet_counted_rfc5424_in_order() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let _ = read_frames(stream, &tx, usize::MAX);
    });
    let sink = RemoteSink::start_with(
        &syslog_sink(addr, SyslogTransport::Tcp, SinkFormat::Native),
        dir.path(),
        rt.handle(),
        tls(),
        fast(),
    )
    .unwrap();
    assert!(sink.name().starts_with("syslog-") && sink.name().len() == "syslog-".len() + 8);
    let records: Vec<SealedRecord> = (1..=300).map(record).collect();
    for r in &records {
        sink.push(r);
    }
    for r in &records {
        let msg = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        check_message(&parse_5424(&msg), r);
    }
    wait_until("an empty queue", Duration::from_secs(5), || {
        sink.depth() == 0
    });
    sink.close(Duration::from_secs(1));
    assert_eq!(sink.dropped(), 0);
}

#[test]
fn syslog_tcp_reconnects_after_the_receiver_closes() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let (closed_tx, closed_rx) = mpsc::channel();
    std::thread::spawn(move || {
        // First connection: five messages, then the receiver hangs up.
        let (stream, _) = listener.accept().unwrap();
        read_frames(stream.try_clone().unwrap(), &tx, 5).unwrap();
        drop(stream);
        closed_tx.send(()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let _ = read_frames(stream, &tx, usize::MAX);
    });
    let sink = RemoteSink::start_with(
        &syslog_sink(addr, SyslogTransport::Tcp, SinkFormat::Native),
        dir.path(),
        rt.handle(),
        tls(),
        fast(),
    )
    .unwrap();
    let records: Vec<SealedRecord> = (1..=10).map(record).collect();
    for r in &records[..5] {
        sink.push(r);
    }
    for r in &records[..5] {
        check_message(
            &parse_5424(&rx.recv_timeout(Duration::from_secs(10)).unwrap()),
            r,
        );
    }
    closed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    for r in &records[5..] {
        sink.push(r);
    }
    for r in &records[5..] {
        check_message(
            &parse_5424(&rx.recv_timeout(Duration::from_secs(10)).unwrap()),
            r,
        );
    }
    sink.close(Duration::from_secs(1));
}

#[test]
fn syslog_udp_one_message_per_datagram() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let sink = RemoteSink::start_with(
        &syslog_sink(addr, SyslogTransport::Udp, SinkFormat::Native),
        dir.path(),
        rt.handle(),
        tls(),
        fast(),
    )
    .unwrap();
    let records: Vec<SealedRecord> = (1..=40).map(record).collect();
    let mut buf = vec![0u8; 65_536];
    // A few at a time, so that the socket buffer cannot overflow.
    for chunk in records.chunks(10) {
        for r in chunk {
            sink.push(r);
        }
        for r in chunk {
            let n = socket.recv(&mut buf).unwrap();
            check_message(&parse_5424(&buf[..n]), r);
        }
    }
    sink.close(Duration::from_secs(1));
}

#[test]
fn syslog_udp_ocsf_carries_the_native_record() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let sink = RemoteSink::start_with(
        &syslog_sink(addr, SyslogTransport::Udp, SinkFormat::Ocsf),
        dir.path(),
        rt.handle(),
        tls(),
        fast(),
    )
    .unwrap();
    let rec = record(7);
    sink.push(&rec);
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).unwrap();
    let m = parse_5424(&buf[..n]);
    assert_eq!(m.pri_version, "<110>1");
    assert_eq!(m.timestamp, ts(7));
    let ev: Value = serde_json::from_str(&m.msg).unwrap();
    assert_eq!(ev["class_uid"], 4002);
    assert_eq!(ev["type_uid"], 400_203);
    let native: Value = serde_json::from_slice(&rec.line).unwrap();
    assert_eq!(ev["unmapped"]["tollgate"], native);
    sink.close(Duration::from_secs(1));
}

// ---------------------------------------------------------------- http

struct Received {
    headers: http::HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct CollectorState {
    received: Mutex<Vec<Received>>,
    /// Answer 503 to this many requests first.
    refuse_first: AtomicUsize,
    /// Accept at most this many requests, answer 503 to the rest.
    accept_at_most: AtomicUsize,
    refused: AtomicUsize,
    /// Delay before answering, in milliseconds.
    delay_ms: AtomicUsize,
}

#[derive(Clone)]
struct Collector {
    state: Arc<CollectorState>,
}

impl Collector {
    /// A hyper HTTP/1.1 server on `addr` (or a fresh port).
    fn start(rt: &tokio::runtime::Runtime, addr: Option<SocketAddr>) -> (Collector, SocketAddr) {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(
                addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
            ))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(CollectorState {
            accept_at_most: AtomicUsize::new(usize::MAX),
            ..CollectorState::default()
        });
        let collector = Collector {
            state: state.clone(),
        };
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await?.to_bytes();
                            let delay = state.delay_ms.load(Ordering::SeqCst);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay as u64)).await;
                            }
                            let refuse = state
                                .refuse_first
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            let mut received = state.received.lock().unwrap();
                            let full =
                                received.len() >= state.accept_at_most.load(Ordering::SeqCst);
                            let (status, text) = if refuse || full {
                                state.refused.fetch_add(1, Ordering::SeqCst);
                                (StatusCode::SERVICE_UNAVAILABLE, "busy")
                            } else {
                                received.push(Received { headers, body });
                                (StatusCode::OK, r#"{"text":"Success","code":0}"#)
                            };
                            drop(received);
                            let mut resp = Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() = status;
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (collector, addr)
    }

    fn bodies(&self) -> Vec<(http::HeaderMap, Bytes)> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.headers.clone(), r.body.clone()))
            .collect()
    }

    /// The `seq` of every record received in JSON-array bodies, in arrival order.
    fn seqs(&self) -> Vec<u64> {
        self.bodies()
            .iter()
            .flat_map(|(_, body)| {
                let batch: Vec<Value> = serde_json::from_slice(body).unwrap();
                batch
                    .into_iter()
                    .map(|r| r["seq"].as_u64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn http_sink(addr: SocketAddr, envelope: HttpEnvelope, format: SinkFormat) -> AuditSink {
    AuditSink::Http(HttpSink {
        url: format!("http://{addr}/services/collector"),
        headers: BTreeMap::from([("Authorization".to_string(), "Splunk x".to_string())]),
        envelope,
        format,
    })
}

fn start_http(
    sink: &AuditSink,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    options: SinkOptions,
) -> RemoteSink {
    RemoteSink::start_with(sink, dir, rt.handle(), tls(), options).unwrap()
}

#[test]
fn http_receiver_down_then_refusing_then_up_gets_every_record_once_in_order() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let config = http_sink(addr, HttpEnvelope::None, SinkFormat::Native);
    let spool_dir = dir.path().join("state").join("spool");
    let sink = start_http(&config, &spool_dir, &rt, fast());
    assert!(sink.name().starts_with("http-") && sink.name().len() == "http-".len() + 8);
    assert_eq!(
        sink.spool_path(),
        spool_dir.join(format!("{}.spool", sink.name()))
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spool_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    for seq in 1..=50 {
        sink.push(&record(seq));
    }
    // Nobody listens: everything waits in the spool.
    wait_until("records in the spool", Duration::from_secs(5), || {
        spool_lines(&sink) == 50
    });
    assert_eq!(sink.depth(), 50);
    // The collector comes up but refuses its first requests with 503.
    let (collector, _) = Collector::start(&rt, Some(addr));
    collector.state.refuse_first.store(2, Ordering::SeqCst);
    wait_until("delivery of the spool", Duration::from_secs(10), || {
        collector.seqs().len() >= 50
    });
    for seq in 51..=60 {
        sink.push(&record(seq));
    }
    wait_until("delivery of new records", Duration::from_secs(10), || {
        collector.seqs().len() >= 60
    });
    wait_until("an empty queue", Duration::from_secs(5), || {
        sink.depth() == 0
    });
    assert_eq!(collector.seqs(), (1..=60).collect::<Vec<_>>());
    assert_eq!(collector.state.refused.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::metadata(sink.spool_path()).unwrap().len(), 0);
    for (headers, _) in collector.bodies() {
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["authorization"], "Splunk x");
    }
    sink.close(Duration::from_secs(1));
    assert_eq!(sink.dropped(), 0);
}

#[test]
fn http_spool_survives_close_and_restart_exactly_once() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let config = http_sink(addr, HttpEnvelope::None, SinkFormat::Native);
    let options = SinkOptions {
        batch_records: 5,
        ..fast()
    };

    // Run 1: the collector is down; close spools everything.
    let first = start_http(&config, dir.path(), &rt, options.clone());
    for seq in 1..=20 {
        first.push(&record(seq));
    }
    first.close(Duration::from_millis(100));
    assert_eq!(first.depth(), 20);
    assert_eq!(spool_lines(&first), 20);
    // The same destination cannot be started twice on one spool.
    assert!(
        RemoteSink::start_with(&config, dir.path(), rt.handle(), tls(), options.clone()).is_err()
    );
    drop(first);

    // Run 2: the collector takes two batches, then refuses.
    let (collector, _) = Collector::start(&rt, Some(addr));
    collector.state.accept_at_most.store(2, Ordering::SeqCst);
    let second = start_http(&config, dir.path(), &rt, options.clone());
    wait_until("two batches", Duration::from_secs(10), || {
        collector.state.refused.load(Ordering::SeqCst) > 0
    });
    assert_eq!(collector.seqs(), (1..=10).collect::<Vec<_>>());
    second.close(Duration::from_millis(50));
    assert_eq!(second.depth(), 10);
    drop(second);

    // Run 3: the collector accepts everything; new records come after the spool.
    collector
        .state
        .accept_at_most
        .store(usize::MAX, Ordering::SeqCst);
    let third = start_http(&config, dir.path(), &rt, options);
    for seq in 21..=25 {
        third.push(&record(seq));
    }
    wait_until("the rest", Duration::from_secs(10), || {
        collector.seqs().len() >= 25
    });
    wait_until("an empty queue", Duration::from_secs(5), || {
        third.depth() == 0
    });
    assert_eq!(collector.seqs(), (1..=25).collect::<Vec<_>>());
    third.close(Duration::from_secs(1));
}

#[test]
fn http_slow_receiver_overflows_memory_to_spool_in_order() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (collector, addr) = Collector::start(&rt, None);
    collector.state.delay_ms.store(15, Ordering::SeqCst);
    let options = SinkOptions {
        memory_records: 4,
        batch_records: 3,
        ..fast()
    };
    let sink = start_http(
        &http_sink(addr, HttpEnvelope::None, SinkFormat::Native),
        dir.path(),
        &rt,
        options,
    );
    let mut most_spooled = 0;
    for seq in 1..=200 {
        sink.push(&record(seq));
        most_spooled = most_spooled.max(spool_lines(&sink));
        if seq % 50 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Memory holds four records: the rest had to wait on disk.
    assert!(most_spooled > 0);
    wait_until("every record", Duration::from_secs(30), || {
        sink.depth() == 0
    });
    assert_eq!(collector.seqs(), (1..=200).collect::<Vec<_>>());
    sink.close(Duration::from_secs(1));
}

#[test]
fn http_splunk_hec_envelope() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (collector, addr) = Collector::start(&rt, None);
    let sink = start_http(
        &http_sink(addr, HttpEnvelope::SplunkHec, SinkFormat::Native),
        dir.path(),
        &rt,
        fast(),
    );
    let records = [record(1), record(2), checkpoint(3)];
    for r in &records {
        sink.push(r);
    }
    wait_until("an empty queue", Duration::from_secs(10), || {
        sink.depth() == 0
    });
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let mut events = Vec::new();
    for (headers, body) in collector.bodies() {
        assert_eq!(headers["authorization"], "Splunk x");
        let text = String::from_utf8(body.to_vec()).unwrap();
        for line in text.split('\n') {
            events.push(line.to_string());
        }
    }
    assert_eq!(events.len(), 3);
    for (line, rec) in events.iter().zip(&records) {
        let ev: Value = serde_json::from_str(line).unwrap();
        let obj = ev.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = vec!["event", "source", "sourcetype", "time"];
        if hostname.is_some() {
            want.push("host");
        }
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(ev["source"], "tollgate");
        assert_eq!(ev["sourcetype"], "tollgate:audit");
        if let Some(h) = &hostname {
            assert_eq!(ev["host"], h.as_str());
        }
        // 2026-11-23T05:00:00Z is 1795410000; time is seconds with milliseconds.
        let want_time = 1_795_410_000.0 + (rec.seq % 1000) as f64 / 1000.0;
        assert!((ev["time"].as_f64().unwrap() - want_time).abs() < 1e-6);
        let native: Value = serde_json::from_slice(&rec.line).unwrap();
        assert_eq!(ev["event"], native);
        // The signed canonical bytes are carried verbatim.
        let verbatim = format!("\"event\":{}}}", String::from_utf8_lossy(&rec.line));
        assert!(line.ends_with(&verbatim));
    }
    sink.close(Duration::from_secs(1));
}

#[test]
fn http_ocsf_body_is_an_array_of_http_activity_events() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (collector, addr) = Collector::start(&rt, None);
    let sink = start_http(
        &http_sink(addr, HttpEnvelope::None, SinkFormat::Ocsf),
        dir.path(),
        &rt,
        fast(),
    );
    let records = [record(1), checkpoint(2)];
    for r in &records {
        sink.push(r);
    }
    wait_until("an empty queue", Duration::from_secs(10), || {
        sink.depth() == 0
    });
    let events: Vec<Value> = collector
        .bodies()
        .iter()
        .flat_map(|(_, body)| serde_json::from_slice::<Vec<Value>>(body).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["class_uid"], 4002);
    assert_eq!(events[0]["activity_id"], 3);
    assert_eq!(
        events[0]["http_request"]["url"]["hostname"],
        "api.github.com"
    );
    assert_eq!(events[1]["activity_id"], 99);
    assert_eq!(events[1]["activity_name"], "Checkpoint");
    for (ev, rec) in events.iter().zip(&records) {
        let native: Value = serde_json::from_slice(&rec.line).unwrap();
        assert_eq!(ev["unmapped"]["tollgate"], native);
    }
    sink.close(Duration::from_secs(1));
}

#[test]
fn stdout_sink_delivers() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let config = AuditSink::Stdout(tollgate::config::StdoutSink {
        format: SinkFormat::Native,
    });
    let sink = RemoteSink::start_with(&config, dir.path(), rt.handle(), tls(), fast()).unwrap();
    assert_eq!(sink.name(), "stdout");
    sink.push(&record(1));
    wait_until("an empty queue", Duration::from_secs(10), || {
        sink.depth() == 0
    });
    sink.close(Duration::from_secs(1));
    assert_eq!(sink.dropped(), 0);
}

#[test]
fn sinks_can_move_to_the_writer_thread() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RemoteSink>();
}

#[test]
fn file_sink_is_not_remote() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let file = AuditSink::File(tollgate::config::FileSink {
        path: dir.path().join("audit.jsonl"),
        rotate_bytes: None,
    });
    assert!(RemoteSink::start(&file, dir.path(), rt.handle(), tls()).is_err());
}
