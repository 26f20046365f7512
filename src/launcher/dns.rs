//! The sandbox's DNS stub: every name resolves to one fixed address, and no
//! query is ever forwarded. Connections to that address on ports 80 and 443 are
//! redirected to tollgate, which takes the real name from SNI or Host. The one
//! exception is `metadata.google.internal`, which resolves to 169.254.169.254
//! as on a GCP instance (port 80 there is redirected too, and answered by the
//! metadata emulation).
//!
//! The reply format is fixed and small (RFC 1035 §4.1), so it is written here
//! rather than pulling in a DNS library: a header, the question echoed, and at
//! most one A record.

use crate::metadata::{GOOGLE_METADATA_HOST, METADATA_ADDRESS};
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Where every name points inside the sandbox (TEST-NET-1, RFC 5737: never a
/// real host, and caught by the sandbox's redirect rules on 80 and 443).
pub const SANDBOX_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// TTL of answers: short, so nothing caches them for long.
const ANSWER_TTL: u32 = 5;
const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;

/// Answers queries on `socket` until `stop` fires.
pub async fn serve(socket: Arc<UdpSocket>, stop: CancellationToken) {
    let mut buf = [0u8; 1500];
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let Ok((len, from)) = received else { continue };
        if let Some(reply) = answer(&buf[..len], SANDBOX_ADDRESS) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

/// The reply to one query, or `None` for a packet not worth answering (too short
/// to carry an id, or itself a response). Every name gets `address`, but
/// `metadata.google.internal` gets [`METADATA_ADDRESS`].
pub fn answer(query: &[u8], address: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < HEADER_LEN {
        return None;
    }
    let flags = u16::from_be_bytes([query[2], query[3]]);
    if flags & 0x8000 != 0 {
        return None; // a response: never answer those (no loops)
    }
    let opcode = (flags >> 11) & 0xf;
    let recursion_desired = flags & 0x0100;
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    let question = (opcode == 0 && qdcount == 1)
        .then(|| question_end(query))
        .flatten();
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(&query[..2]);
    let Some(end) = question else {
        // Not a standard single-question query: NOTIMP, or FORMERR if malformed.
        let rcode = if opcode == 0 { 1 } else { 4 };
        let flags = 0x8000 | (opcode << 11) | recursion_desired | 0x0080 | rcode;
        reply.extend_from_slice(&flags.to_be_bytes());
        reply.extend_from_slice(&[0; 8]);
        return Some(reply);
    };
    let qtype = u16::from_be_bytes([query[end - 4], query[end - 3]]);
    let qclass = u16::from_be_bytes([query[end - 2], query[end - 1]]);
    let with_answer = qclass == CLASS_IN && (qtype == TYPE_A || qtype == TYPE_ANY);
    let address = if asks_for(&query[HEADER_LEN..end - 4], GOOGLE_METADATA_HOST) {
        METADATA_ADDRESS
    } else {
        address
    };
    // QR, AA, RD as asked, RA; RCODE 0 (a name without an A answer is NODATA).
    let flags = 0x8000 | 0x0400 | recursion_desired | 0x0080;
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&u16::from(with_answer).to_be_bytes());
    reply.extend_from_slice(&[0; 4]);
    reply.extend_from_slice(&query[HEADER_LEN..end]);
    if with_answer {
        reply.extend_from_slice(&[0xc0, HEADER_LEN as u8]); // the name: a pointer to the question
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&ANSWER_TTL.to_be_bytes());
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&address.octets());
    }
    Some(reply)
}

/// Whether the question's name (its labels, as [`question_end`] checked them)
/// is `name`, ignoring ASCII case.
fn asks_for(mut labels: &[u8], name: &str) -> bool {
    for expected in name.split('.') {
        let Some((&len, rest)) = labels.split_first() else {
            return false;
        };
        let len = usize::from(len);
        match rest.get(..len) {
            Some(label) if label.eq_ignore_ascii_case(expected.as_bytes()) => {
                labels = &rest[len..];
            }
            _ => return false,
        }
    }
    labels == [0]
}

/// Where the (single, uncompressed) question ends, QTYPE and QCLASS included.
fn question_end(query: &[u8]) -> Option<usize> {
    let mut at = HEADER_LEN;
    let mut name_len = 0usize;
    loop {
        let label = usize::from(*query.get(at)?);
        at += 1;
        if label == 0 {
            break;
        }
        if label > 63 {
            return None; // compression or an extended label type: not in a question
        }
        name_len += label + 1;
        if name_len > 255 {
            return None;
        }
        at += label;
    }
    let end = at + 4;
    (end <= query.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn a_query_gets_the_fixed_address() {
        let q = query("api.github.com", TYPE_A);
        let r = answer(&q, SANDBOX_ADDRESS).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34], "same id");
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[12..q.len()], &q[12..], "question echoed");
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 1]);
    }

    #[test]
    fn metadata_google_internal_is_the_metadata_address() {
        for name in ["metadata.google.internal", "METADATA.Google.Internal"] {
            let r = answer(&query(name, TYPE_A), SANDBOX_ADDRESS).unwrap();
            assert_eq!(&r[r.len() - 4..], &[169, 254, 169, 254], "{name}");
        }
        for name in [
            "metadata.google.internal.evil.test",
            "x.metadata.google.internal",
            "metadata.google",
            "metadata",
        ] {
            let r = answer(&query(name, TYPE_A), SANDBOX_ADDRESS).unwrap();
            assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 1], "{name}");
        }
    }

    #[test]
    fn aaaa_gets_no_answer_and_garbage_no_panic() {
        let r = answer(&query("example.org", 28), SANDBOX_ADDRESS).unwrap();
        assert_eq!(&r[6..8], &[0, 0], "NODATA for AAAA");
        let mut truncated = query("example.org", TYPE_A);
        truncated.truncate(20);
        let r = answer(&truncated, SANDBOX_ADDRESS).unwrap();
        assert_eq!(r[3] & 0x0f, 1, "FORMERR");
        assert!(answer(&[1, 2, 3], SANDBOX_ADDRESS).is_none());
        let mut response = query("x.y", TYPE_A);
        response[2] |= 0x80;
        assert!(answer(&response, SANDBOX_ADDRESS).is_none());
        // Every prefix and a sweep of byte values: never a panic.
        let q = query("a.b.c", TYPE_A);
        for len in 0..q.len() {
            let _ = answer(&q[..len], SANDBOX_ADDRESS);
        }
        for byte in 0..=255u8 {
            let mut bad = q.clone();
            bad[12] = byte;
            let _ = answer(&bad, SANDBOX_ADDRESS);
        }
    }
}
