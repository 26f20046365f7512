//! Fuzz target `scrub`: the response scrubber, whole and streamed.
//!
//! The input describes up to three secrets and a body built from literal bytes
//! and copies of pieces of those secrets (so that the fuzzer reaches echoes),
//! plus the points where the body is cut into chunks. Invariants: no panic; the
//! streamed output is the same as scrubbing the body whole, however it is cut;
//! and no output carries a run of a secret as long as the shortest piece that
//! must be replaced (half the secret, at least 12 bytes). Secret bytes all have
//! the high bit set, so placeholders (ASCII) can never hold a piece of one.

use crate::inject::{Echo, Scrubber, SecretForm};
use std::sync::Arc;

/// What an input describes.
struct Layout {
    secrets: Vec<Vec<u8>>,
    body: Vec<u8>,
    /// Chunk boundaries in `body`, ascending.
    cuts: Vec<usize>,
}

/// Reads the input.
fn layout(data: &[u8]) -> Option<Layout> {
    let (&head, mut rest) = data.split_first()?;
    let count = usize::from(head % 3) + 1;
    let mut secrets = Vec::with_capacity(count);
    for _ in 0..count {
        let (&len, tail) = rest.split_first()?;
        let len = usize::from(len % 80) + 1;
        let bytes = tail.get(..len)?;
        secrets.push(bytes.iter().map(|b| b | 0x80).collect::<Vec<u8>>());
        rest = &tail[len..];
    }
    let (&cut_count, tail) = rest.split_first().unwrap_or((&0, &[]));
    let cut_count = usize::from(cut_count % 8);
    let cuts_bytes = tail.get(..cut_count * 2).unwrap_or(&[]);
    rest = tail.get(cut_count * 2..).unwrap_or(&[]);
    // Body ops: a byte below 0xF0 is itself; 0xF0.. copies
    // `secret[start..start + len]` from the next three bytes.
    let mut body = Vec::new();
    let mut ops = rest.iter();
    while let Some(&op) = ops.next() {
        if op < 0xF0 {
            body.push(op);
            continue;
        }
        let (Some(&which), Some(&start), Some(&len)) = (ops.next(), ops.next(), ops.next()) else {
            break;
        };
        let secret = &secrets[usize::from(which) % secrets.len()];
        let start = usize::from(start) % secret.len();
        let end = (start + usize::from(len)).min(secret.len());
        body.extend_from_slice(&secret[start..end]);
    }
    let mut cuts: Vec<usize> = cuts_bytes
        .chunks(2)
        .map(|c| {
            usize::from(u16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                % (body.len() + 1)
        })
        .collect();
    cuts.sort_unstable();
    Some(Layout {
        secrets,
        body,
        cuts,
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(Layout {
        secrets,
        body,
        cuts,
    }) = layout(data)
    else {
        return;
    };
    let forms: Vec<SecretForm> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| SecretForm::new(s.clone(), format!("__S{i}__").into_bytes(), Echo::Pieces))
        .collect();
    let Some(scrubber) = Scrubber::new(forms).map(Arc::new) else {
        return;
    };
    let whole = scrubber.scrub(&body);
    let mut stream = scrubber.stream();
    let mut streamed = Vec::with_capacity(body.len());
    let mut from = 0;
    for &cut in &cuts {
        streamed.extend_from_slice(&stream.push(&body[from..cut]));
        from = cut;
    }
    streamed.extend_from_slice(&stream.push(&body[from..]));
    streamed.extend_from_slice(&stream.finish());
    assert_eq!(
        streamed, whole,
        "streamed output differs from scrubbing whole"
    );
    for secret in &secrets {
        let shortest = SecretForm::new(secret.clone(), Vec::new(), Echo::Pieces).shortest_piece();
        for window in secret.windows(shortest) {
            assert!(
                memchr::memmem::find(&whole, window).is_none(),
                "a piece of {shortest} bytes of a secret survived"
            );
        }
    }
}
