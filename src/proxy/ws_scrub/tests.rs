use super::*;
use crate::inject::{Echo, SecretForm};
use proptest::prelude::*;

const SECRET: &[u8] = b"s3cr3t-value-0123456789-abcdefghij-KLMNO";

fn scrubber() -> Arc<Scrubber> {
    Arc::new(
        Scrubber::new(vec![SecretForm::new(
            SECRET.to_vec(),
            b"__TOKEN__".to_vec(),
            Echo::Pieces,
        )])
        .unwrap(),
    )
}

fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let head = FrameHead {
        fin: first & 0x80 != 0,
        rsv: 0,
        opcode: first & 0x0F,
        masked: false,
        len: payload.len() as u64,
    };
    encode_frame(head, payload)
}

/// Forwards every frame of `input`; the bytes sent and the error that ended it.
async fn forward_all(input: &[u8]) -> (Vec<u8>, Option<io::Error>) {
    let mut reader = input;
    let mut out = Vec::new();
    let mut messages = MessageScrubber::new(scrubber());
    loop {
        match forward_frame(&mut reader, &mut out, &mut messages).await {
            Ok(true) => {}
            Ok(false) => return (out, None),
            Err(err) => return (out, Some(err)),
        }
    }
}

/// Frames in `bytes` as `(first byte, payload)`.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let more = extended_header_len(bytes[1]);
        let head = parse_head(&bytes[..2 + more]).unwrap();
        let start = 2 + more;
        let end = start + head.len as usize;
        out.push((bytes[0], bytes[start..end].to_vec()));
        bytes = &bytes[end..];
    }
    out
}

#[tokio::test]
async fn scrubs_frames_and_fixes_lengths() {
    let long = [&b"x".repeat(200)[..], SECRET].concat();
    let mut input = frame(0x81, &[b"hello ", SECRET].concat());
    input.extend(frame(0x81, &long));
    let (out, err) = forward_all(&input).await;
    assert!(err.is_none());
    let mut expected = frame(0x81, b"hello __TOKEN__");
    expected.extend(frame(0x81, &[&b"x".repeat(200)[..], b"__TOKEN__"].concat()));
    assert_eq!(out, expected);
}

#[tokio::test]
async fn a_secret_split_across_fragments_and_around_a_ping_is_scrubbed() {
    let mut input = frame(0x01, &[b"token: ", &SECRET[..25]].concat());
    input.extend(frame(0x89, b"ping"));
    input.extend(frame(0x00, &SECRET[25..30]));
    input.extend(frame(0x80, &[&SECRET[30..], b" end"].concat()));
    let (out, err) = forward_all(&input).await;
    assert!(err.is_none(), "{err:?}");
    let sent = frames(&out);
    let opcodes: Vec<u8> = sent.iter().map(|f| f.0).collect();
    assert_eq!(opcodes, vec![0x01, 0x89, 0x00, 0x80]);
    let message: Vec<u8> = sent
        .iter()
        .filter(|f| f.0 & 0x08 == 0)
        .flat_map(|f| f.1.clone())
        .collect();
    assert_eq!(message, b"token: __TOKEN__ end");
    assert_eq!(sent[1].1, b"ping");
}

#[tokio::test]
async fn a_close_reason_is_scrubbed_and_its_code_kept() {
    let input = frame(0x88, &[&[0x03, 0xE8][..], b"bye ", &SECRET[..20]].concat());
    let (out, _) = forward_all(&input).await;
    assert_eq!(
        frames(&out),
        vec![(0x88, [&[0x03, 0xE8][..], b"bye __TOKEN__"].concat())]
    );
}

#[tokio::test]
async fn fragments_out_of_order_end_the_connection() {
    for input in [
        frame(0x80, b"continuation of nothing"),
        [frame(0x01, b"first"), frame(0x81, b"new message inside")].concat(),
        frame(0x09, b"fragmented ping"),
        frame(0x83, b"reserved opcode"),
    ] {
        let (_, err) = forward_all(&input).await;
        assert!(err.is_some(), "{input:?}");
    }
}

#[tokio::test]
async fn a_frame_shorter_than_declared_is_an_error_and_sends_nothing() {
    // Declares 10 MiB (under the limit), carries 3: nothing is sent on.
    let mut input = vec![0x82u8, 127];
    input.extend_from_slice(&(10u64 << 20).to_be_bytes());
    input.extend_from_slice(b"abc");
    let (out, err) = forward_all(&input).await;
    assert!(err.is_some());
    assert!(out.is_empty());
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused() {
    let mut input = vec![0x82u8, 127];
    input.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let (out, err) = forward_all(&input).await;
    assert!(err.is_some());
    assert!(out.is_empty());
}

#[tokio::test]
async fn compressed_or_masked_frames_end_the_connection() {
    for input in [vec![0xC1u8, 0x01, 0x00], vec![0x81, 0x81, 1, 2, 3, 4, 0]] {
        let (out, err) = forward_all(&input).await;
        assert!(err.is_some());
        assert!(out.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_scrubbed_splice_is_cut() {
    let (client, proxy_client) = tokio::io::duplex(1024);
    let (proxy_upstream, upstream) = tokio::io::duplex(1024);
    let splice = tokio::spawn(splice_scrubbed(
        proxy_client,
        proxy_upstream,
        scrubber(),
        Duration::from_secs(60),
    ));
    let (mut client, mut upstream) = (client, upstream);
    upstream.write_all(&frame(0x81, b"hi")).await.unwrap();
    let mut got = [0u8; 4];
    client.read_exact(&mut got).await.unwrap();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(!splice.is_finished());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let moved = tokio::time::timeout(Duration::from_secs(10), splice)
        .await
        .expect("an idle scrubbed splice must be cut")
        .unwrap();
    assert_eq!(moved, (0, 4));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// However a message is fragmented, what the client puts together is the
    /// message scrubbed whole.
    #[test]
    fn any_fragmentation_gives_the_message_scrubbed_whole(
        prefix in proptest::collection::vec(any::<u8>(), 0..40),
        cut in 0usize..40,
        suffix in proptest::collection::vec(any::<u8>(), 0..40),
        splits in proptest::collection::vec(any::<usize>(), 0..5),
    ) {
        let message = [&prefix[..], &SECRET[..cut.max(20)], &suffix[..]].concat();
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % (message.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(message.len());
        let mut input = Vec::new();
        let mut from = 0;
        for (i, &to) in cuts.iter().enumerate() {
            let fin = if i + 1 == cuts.len() { 0x80 } else { 0 };
            let opcode = if i == 0 { 0x02 } else { 0x00 };
            input.extend(frame(fin | opcode, &message[from..to]));
            from = to;
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (out, err) = rt.block_on(forward_all(&input));
        prop_assert!(err.is_none());
        let got: Vec<u8> = frames(&out).into_iter().flat_map(|f| f.1).collect();
        prop_assert_eq!(got, scrubber().scrub(&message));
    }
}
