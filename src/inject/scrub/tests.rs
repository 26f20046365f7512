use super::*;
use crate::body::full_body;
use crate::inject::forms::Echo;
use futures_util::stream;
use http_body_util::StreamBody;
use proptest::prelude::*;

const SECRET: &[u8] = b"ghp_SECRETVALUE0123456789abcdefghijKLMNO";

fn form(echo: &[u8], replacement: &[u8], kind: Echo) -> SecretForm {
    SecretForm::new(echo.to_vec(), replacement.to_vec(), kind)
}

fn scrubber() -> Arc<Scrubber> {
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(SECRET);
    Arc::new(
        Scrubber::new(vec![
            form(SECRET, b"__GITHUB_TOKEN__", Echo::Pieces),
            form(&bearer, b"Bearer __GITHUB_TOKEN__", Echo::Whole),
        ])
        .unwrap(),
    )
}

async fn run(scrubber: Arc<Scrubber>, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    let body = StreamBody::new(stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c)))),
    ));
    let scrubbed = scrubber.scrub_body(BodyExt::boxed(body));
    scrubbed.collect().await.unwrap().to_bytes().to_vec()
}

fn text(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[tokio::test]
async fn scrubs_across_every_chunk_boundary() {
    let input = text(&[b"x ", SECRET, b" y Bearer ", SECRET, b" z ", &SECRET[..19]]);
    let expected = text(&[
        b"x __GITHUB_TOKEN__ y Bearer __GITHUB_TOKEN__ z ",
        &SECRET[..19],
    ]);
    for split in 0..input.len() {
        let (a, b) = input.split_at(split);
        let out = run(scrubber(), vec![a.to_vec(), b.to_vec()]).await;
        assert_eq!(out, expected, "split at {split}");
    }
    let bytes: Vec<Vec<u8>> = input.chunks(1).map(<[u8]>::to_vec).collect();
    assert_eq!(run(scrubber(), bytes).await, expected);
}

#[test]
fn half_a_secret_or_more_is_replaced_and_less_is_kept() {
    let s = scrubber();
    // A message cut at 40 characters: `Bearer ` and 33 bytes of the secret.
    let mut cut = b"Bearer ".to_vec();
    cut.extend_from_slice(&SECRET[..33]);
    assert_eq!(s.scrub(&cut), b"Bearer __GITHUB_TOKEN__");
    // Either half alone.
    assert_eq!(
        s.scrub(&text(&[b"a", &SECRET[..20], b"b"])),
        b"a__GITHUB_TOKEN__b"
    );
    assert_eq!(
        s.scrub(&text(&[b"a", &SECRET[20..], b"b"])),
        b"a__GITHUB_TOKEN__b"
    );
    // A piece from the middle.
    assert_eq!(s.scrub(&SECRET[7..30]), b"__GITHUB_TOKEN__");
    // Less than half stays: it is not enough to be the secret.
    let short = text(&[b"a", &SECRET[..19], b"b"]);
    assert_eq!(s.scrub(&short), short);
}

#[test]
fn short_secrets_are_replaced_whole_only() {
    let s = Scrubber::new(vec![form(b"abcdefghij", b"__S__", Echo::Pieces)]).unwrap();
    assert_eq!(s.scrub(b"xabcdefghijx abcdefghi"), b"x__S__x abcdefghi");
}

#[tokio::test]
async fn trailers_are_scrubbed_and_kept_after_held_back_data() {
    let mut trailers = HeaderMap::new();
    let mut message = b"bad token ".to_vec();
    message.extend_from_slice(SECRET);
    trailers.insert("grpc-message", HeaderValue::from_bytes(&message).unwrap());
    let frames = vec![
        Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"tail ghp_SECRET"))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = BodyExt::boxed(StreamBody::new(stream::iter(frames)));
    let collected = scrubber().scrub_body(body).collect().await.unwrap();
    let got_trailers = collected.trailers().cloned().unwrap();
    assert_eq!(got_trailers["grpc-message"], "bad token __GITHUB_TOKEN__");
    assert_eq!(&collected.to_bytes()[..], b"tail ghp_SECRET");
}

#[tokio::test]
async fn untouched_body_passes_whole() {
    let out = scrubber()
        .scrub_body(full_body("nothing secret here"))
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&out[..], b"nothing secret here");
}

#[test]
fn leftmost_then_longest_wins() {
    let s = Scrubber::new(vec![
        form(b"abc", b"[3]", Echo::Whole),
        form(b"abcdef", b"[6]", Echo::Whole),
        form(b"cde", b"[c]", Echo::Whole),
    ])
    .unwrap();
    assert_eq!(s.scrub(b"xabcdefx abcx cdex"), b"x[6]x [3]x [c]x");
}

#[test]
fn scrubs_header_values_and_drops_tainted_names() {
    let mut h = HeaderMap::new();
    let mut echo = b"token=".to_vec();
    echo.extend_from_slice(&SECRET[..25]);
    h.insert("x-echo", HeaderValue::from_bytes(&echo).unwrap());
    h.insert("x-other", HeaderValue::from_static("fine"));
    let name = String::from_utf8(SECRET[4..30].to_ascii_lowercase()).unwrap();
    let lower = Scrubber::new(vec![form(
        &SECRET.to_ascii_lowercase(),
        b"__GITHUB_TOKEN__",
        Echo::Pieces,
    )])
    .unwrap();
    h.insert(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_static("1"),
    );
    scrubber().scrub_headers(&mut h);
    lower.scrub_headers(&mut h);
    assert_eq!(h["x-echo"], "token=__GITHUB_TOKEN__");
    assert_eq!(h["x-other"], "fine");
    assert!(!h.contains_key(name.as_str()));
    assert_eq!(h.len(), 2);
}

#[test]
fn with_whole_adds_request_forms_and_shares_the_pieces() {
    let base = scrubber();
    let more = base
        .with_whole(vec![form(
            b"Basic Zm9vOmJhcg==",
            b"Basic eDpfX1RfXw==",
            Echo::Whole,
        )])
        .unwrap();
    assert_eq!(
        more.scrub(&text(&[b"Basic Zm9vOmJhcg== ", &SECRET[10..]])),
        b"Basic eDpfX1RfXw== __GITHUB_TOKEN__"
    );
    assert!(Arc::ptr_eq(
        base.pieces.as_ref().unwrap(),
        more.pieces.as_ref().unwrap()
    ));
}

#[test]
fn nothing_to_scrub_is_no_scrubber() {
    assert!(Scrubber::new(vec![]).is_none());
    assert!(Scrubber::new(vec![form(b"same", b"same", Echo::Whole)]).is_none());
}

/// Secrets and filler for the properties: filler bytes never occur in secrets,
/// and placeholders (`__…__`) share no byte with either.
fn secret_strategy() -> impl Strategy<Value = Vec<u8>> {
    secret_from(b"ABCDEFGHJKMNPQRSTVWXYZ0123456789")
}

fn secret_from(alphabet: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop::sample::select(alphabet), 1..64)
}

/// Up to three secrets with no byte in common, so none holds a piece of another.
fn distinct_secrets() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        secret_from(b"ABCDEFGHJK"),
        secret_from(b"MNPQRSTVWX"),
        secret_from(b"0123456789"),
        1usize..4,
    )
        .prop_map(|(a, b, c, n)| [a, b, c].into_iter().take(n).collect())
}

fn filler_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop::sample::select(&b"abcdefghij {}\":,\n"[..]), 0..40)
}

/// What a body is made of, in the properties below.
#[derive(Clone, Debug)]
enum Part {
    Filler(Vec<u8>),
    /// `secret[start..end]` of secret `which` (cut to a valid range).
    Piece(usize, usize, usize),
}

fn part_strategy() -> impl Strategy<Value = Part> {
    prop_oneof![
        filler_strategy().prop_map(Part::Filler),
        (0usize..3, 0usize..64, 0usize..64).prop_map(|(w, a, b)| Part::Piece(
            w,
            a.min(b),
            a.max(b)
        )),
    ]
}

fn build(secrets: &[Vec<u8>], parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        match part {
            Part::Filler(f) => body.extend_from_slice(f),
            Part::Piece(w, a, b) => {
                let s = &secrets[w % secrets.len()];
                body.extend_from_slice(&s[(*a).min(s.len())..(*b).min(s.len())]);
            }
        }
    }
    body
}

/// Placeholders share no byte with secrets or filler.
fn placeholder(i: usize) -> String {
    format!("__{}__", ["pp", "qq", "rr"][i % 3])
}

fn scrubber_for(secrets: &[Vec<u8>]) -> Arc<Scrubber> {
    let forms = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| form(s, placeholder(i).as_bytes(), Echo::Pieces))
        .collect();
    Arc::new(Scrubber::new(forms).unwrap())
}

/// Whether `out` holds a run of some secret as long as the shortest piece
/// that must be scrubbed.
fn has_piece(secrets: &[Vec<u8>], out: &[u8]) -> Option<Vec<u8>> {
    for s in secrets {
        let f = form(s, b"x", Echo::Pieces);
        let w = f.shortest_piece();
        for window in s.windows(w) {
            if memchr::memmem::find(out, window).is_some() {
                return Some(window.to_vec());
            }
        }
    }
    None
}

fn chunked(
    rt: &tokio::runtime::Runtime,
    s: &Arc<Scrubber>,
    body: &[u8],
    cuts: &[usize],
) -> Vec<u8> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for c in cuts {
        chunks.push(body[from..c].to_vec());
        from = c;
    }
    chunks.push(body[from..].to_vec());
    rt.block_on(run(s.clone(), chunks))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// For any body and any split into chunks: the output is the same as
    /// scrubbing it whole, and carries no run of half a secret (12 bytes at least).
    #[test]
    fn any_chunking_gives_the_same_output_with_no_piece_left(
        secrets in proptest::collection::vec(secret_strategy(), 1..4),
        parts in proptest::collection::vec(part_strategy(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let s = scrubber_for(&secrets);
        let body = build(&secrets, &parts);
        let whole = s.scrub(&body);
        prop_assert_eq!(has_piece(&secrets, &whole), None);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let streamed = chunked(&rt, &s, &body, &cuts);
        prop_assert_eq!(streamed, whole);
    }

    /// Filler and whole secrets: the output is the input with each secret
    /// replaced by its placeholder, however it was chunked.
    #[test]
    fn whole_secrets_become_placeholders(
        secrets in distinct_secrets(),
        layout in proptest::collection::vec((filler_strategy(), 0usize..3), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let s = scrubber_for(&secrets);
        let mut body = Vec::new();
        let mut expected = Vec::new();
        for (filler, which) in &layout {
            let which = which % secrets.len();
            body.extend_from_slice(filler);
            body.extend_from_slice(&secrets[which]);
            expected.extend_from_slice(filler);
            expected.extend_from_slice(placeholder(which).as_bytes());
        }
        // Secrets glued together can share pieces, so the exact form is asserted
        // only where fillers keep them apart.
        let apart = layout.iter().all(|(f, _)| !f.is_empty());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let out = chunked(&rt, &s, &body, &cuts);
        prop_assert_eq!(has_piece(&secrets, &out), None);
        if apart {
            prop_assert_eq!(out, expected);
        }
    }
}
