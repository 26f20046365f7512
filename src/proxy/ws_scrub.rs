//! Splicing a WebSocket whose handshake carried an injected secret: frames from
//! the upstream are parsed and each *message* is scrubbed as one stream across
//! its fragments, so a secret split between a frame and its continuation is
//! caught too. Fragments are forwarded as they come (the part that could still
//! be the start of a secret is held back into the next one), so memory stays
//! bounded by one frame. Client frames pass through untouched. Nothing moving
//! either way for the idle limit ends the splice, as for any splice.
//!
//! Compression (permessage-deflate) is refused at the handshake for such
//! requests; a compressed frame arriving anyway ends the connection.

use super::splice::Activity;
use crate::inject::{ScrubStream, Scrubber};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Largest upstream frame tollgate buffers to scrub; a larger one ends the splice.
pub const MAX_SCRUBBED_FRAME: u64 = 16 * 1024 * 1024;
/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

const OP_CONTINUATION: u8 = 0x0;
const OP_CLOSE: u8 = 0x8;

/// Copies client -> upstream as is and upstream -> client message by message,
/// scrubbed, until either side ends or nothing moves for `idle`. Returns
/// `(bytes up, bytes down)`.
pub async fn splice_scrubbed<C, U>(
    client: C,
    upstream: U,
    scrubber: Arc<Scrubber>,
    idle: Duration,
) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let client = activity.watch(client);
    let upstream = activity.watch(upstream);
    let (up, down) = (upstream.written.clone(), client.written.clone());
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let copy_up = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    let copy_down = async {
        let mut reader = BufReader::new(upstream_read);
        let mut messages = MessageScrubber::new(scrubber);
        loop {
            match forward_frame(&mut reader, &mut client_write, &mut messages).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => {
                    tracing::debug!(error = %err, "scrubbed websocket ended");
                    break;
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    // Either direction ending ends the splice; the other side is shut down.
    tokio::select! {
        () = copy_up => {}
        () = copy_down => {}
        () = activity.quiet_for(idle) => tracing::debug!("scrubbed websocket closed: idle"),
    }
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed))
}

/// The fixed part of a frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    /// Last frame of its message.
    pub fin: bool,
    /// The RSV1..3 bits (RSV1 is permessage-deflate's "compressed").
    pub rsv: u8,
    /// Opcode.
    pub opcode: u8,
    /// Whether a masking key follows (never from a server).
    pub masked: bool,
    /// Payload length.
    pub len: u64,
}

impl FrameHead {
    /// Whether this is a control frame (close, ping, pong).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x08 != 0
    }
}

/// Why an upstream frame cannot be forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1 set: permessage-deflate was refused at the handshake.
    #[error("compressed frame on a connection that must be scrubbed")]
    Compressed,
    /// Servers never mask.
    #[error("masked frame from the server")]
    Masked,
    /// Over [`MAX_SCRUBBED_FRAME`].
    #[error("frame too large to scrub")]
    TooLarge,
    /// A control frame over 125 bytes or fragmented.
    #[error("malformed control frame")]
    BadControl,
    /// A continuation with no message open, or a new message inside one.
    #[error("fragments out of order")]
    OutOfOrder,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
}

impl From<FrameError> for io::Error {
    fn from(err: FrameError) -> Self {
        io::Error::other(err)
    }
}

/// Bytes of header that follow the first two, given those two.
pub fn extended_header_len(second: u8) -> usize {
    let length = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    length + if second & 0x80 != 0 { 4 } else { 0 }
}

/// Parses a complete frame header (`2 + extended_header_len` bytes) and checks
/// what a scrubbing splice needs of it.
pub fn parse_head(header: &[u8]) -> Result<FrameHead, FrameError> {
    let (first, second) = match header {
        [a, b, ..] => (*a, *b),
        _ => return Err(FrameError::OutOfOrder),
    };
    let len = match second & 0x7F {
        126 => u64::from(u16::from_be_bytes([
            header.get(2).copied().unwrap_or(0),
            header.get(3).copied().unwrap_or(0),
        ])),
        127 => {
            let mut bytes = [0u8; 8];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = header.get(2 + i).copied().unwrap_or(0);
            }
            u64::from_be_bytes(bytes)
        }
        n => u64::from(n),
    };
    let head = FrameHead {
        fin: first & 0x80 != 0,
        rsv: (first >> 4) & 0x07,
        opcode: first & 0x0F,
        masked: second & 0x80 != 0,
        len,
    };
    if head.rsv & 0x04 != 0 {
        return Err(FrameError::Compressed);
    }
    if head.masked {
        return Err(FrameError::Masked);
    }
    if head.len > MAX_SCRUBBED_FRAME {
        return Err(FrameError::TooLarge);
    }
    match head.opcode {
        0x0..=0x2 => {}
        0x8..=0xA if head.fin && head.len <= MAX_CONTROL_PAYLOAD as u64 => {}
        0x8..=0xA => return Err(FrameError::BadControl),
        other => return Err(FrameError::UnknownOpcode(other)),
    }
    Ok(head)
}

/// Scrubs the upstream's messages: one stream per message, across fragments.
pub struct MessageScrubber {
    scrubber: Arc<Scrubber>,
    /// The message being received, if it is fragmented and not finished.
    open: Option<ScrubStream>,
}

impl std::fmt::Debug for MessageScrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageScrubber")
            .field("open", &self.open.is_some())
            .finish()
    }
}

impl MessageScrubber {
    /// A scrubber for one connection's messages.
    pub fn new(scrubber: Arc<Scrubber>) -> Self {
        Self {
            scrubber,
            open: None,
        }
    }

    /// The frame to send for an upstream frame with `head` and `payload`.
    pub fn frame(&mut self, head: FrameHead, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        let clean = if head.is_control() {
            self.control(head, payload)
        } else {
            let stream = match (head.opcode, self.open.take()) {
                (OP_CONTINUATION, Some(stream)) => stream,
                (OP_CONTINUATION, None) | (_, Some(_)) => return Err(FrameError::OutOfOrder),
                (_, None) => self.scrubber.stream(),
            };
            let mut stream = stream;
            let mut out = stream.push(payload).to_vec();
            if head.fin {
                out.extend_from_slice(&stream.finish());
            } else {
                self.open = Some(stream);
            }
            out
        };
        Ok(encode_frame(head, &clean))
    }

    /// A control frame's payload, scrubbed whole (a close frame's code kept).
    fn control(&self, head: FrameHead, payload: &[u8]) -> Vec<u8> {
        let (code, text) = match (head.opcode, payload.len()) {
            (OP_CLOSE, 2..) => payload.split_at(2),
            _ => (&payload[..0], payload),
        };
        let mut clean = code.to_vec();
        clean.extend_from_slice(&self.scrubber.scrub(text));
        clean.truncate(MAX_CONTROL_PAYLOAD);
        clean
    }
}

/// A server frame (unmasked) with `head`'s FIN, RSV and opcode and `payload`.
pub fn encode_frame(head: FrameHead, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(u8::from(head.fin) << 7 | head.rsv << 4 | head.opcode);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// Reads one upstream frame, scrubs it as part of its message, writes it to the
/// client. `Ok(false)` at a clean end of stream.
async fn forward_frame<R, W>(
    reader: &mut R,
    writer: &mut W,
    messages: &mut MessageScrubber,
) -> io::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut header = [0u8; 14];
    match reader.read_exact(&mut header[..2]).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(err) => return Err(err),
    }
    let more = extended_header_len(header[1]);
    reader.read_exact(&mut header[2..2 + more]).await?;
    let head = parse_head(&header[..2 + more])?;
    // Grows as bytes arrive, rather than reserving the declared length up front.
    let mut payload = Vec::new();
    (&mut *reader)
        .take(head.len)
        .read_to_end(&mut payload)
        .await?;
    if payload.len() as u64 != head.len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let frame = messages.frame(head, &payload)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(true)
}

#[cfg(test)]
mod tests;
