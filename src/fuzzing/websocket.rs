//! Fuzz target `websocket`: parsing the frames an upstream sends on a scrubbed
//! WebSocket, and scrubbing its messages across fragments.
//!
//! The input is the byte stream from the upstream. Invariants: no panic; every
//! frame sent on parses again with the same FIN and opcode; a control frame's
//! payload stays within 125 bytes; and each complete message, put together
//! from its fragments, is the message scrubbed whole.

use crate::inject::{Echo, Scrubber, SecretForm};
use crate::proxy::ws_scrub::{extended_header_len, parse_head, MessageScrubber};
use std::sync::Arc;

/// The secret the fuzzed upstream may echo.
const SECRET: &[u8] = b"s3cr3t-value-0123456789-abcdefghij-KLMNO";

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(scrubber) = Scrubber::new(vec![SecretForm::new(
        SECRET.to_vec(),
        b"__TOKEN__".to_vec(),
        Echo::Pieces,
    )])
    .map(Arc::new) else {
        return;
    };
    let mut messages = MessageScrubber::new(scrubber.clone());
    let mut rest = data;
    let (mut message_in, mut message_out) = (Vec::new(), Vec::new());
    while rest.len() >= 2 {
        let header_len = 2 + extended_header_len(rest[1]);
        let Some(header) = rest.get(..header_len) else {
            return;
        };
        let Ok(head) = parse_head(header) else {
            return;
        };
        let Some(payload) = usize::try_from(head.len)
            .ok()
            .and_then(|len| rest.get(header_len..header_len + len))
        else {
            return;
        };
        rest = &rest[header_len + payload.len()..];
        let Ok(frame) = messages.frame(head, payload) else {
            return;
        };
        let sent_len = 2 + extended_header_len(frame[1]);
        let sent = parse_head(&frame[..sent_len]);
        assert!(sent.is_ok(), "a frame sent on does not parse: {sent:?}");
        if let Ok(sent) = sent {
            assert_eq!((sent.fin, sent.opcode), (head.fin, head.opcode));
            assert_eq!(sent.len as usize, frame.len() - sent_len);
            if head.is_control() {
                assert!(sent.len <= 125);
                continue;
            }
        }
        message_in.extend_from_slice(payload);
        message_out.extend_from_slice(&frame[sent_len..]);
        if head.fin {
            assert_eq!(message_out, scrubber.scrub(&message_in));
            message_in.clear();
            message_out.clear();
        }
    }
}
