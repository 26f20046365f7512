//! Splicing a WebSocket whose handshake carried an injected secret: frames from
//! the upstream are parsed and their payloads scrubbed before the sandbox gets
//! them, so a server that echoes the credential in a message does not leak it.
//! Client frames pass through untouched.
//!
//! Compression (permessage-deflate) is refused at the handshake for such
//! requests; a compressed frame arriving anyway ends the connection.

use crate::inject::Scrubber;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Largest upstream frame tollgate buffers to scrub; a larger one ends the splice.
pub const MAX_SCRUBBED_FRAME: u64 = 16 * 1024 * 1024;
/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Copies client -> upstream as is and upstream -> client frame by frame,
/// scrubbed. Returns `(bytes up, bytes down)`.
pub async fn splice_scrubbed<C, U>(client: C, upstream: U, scrubber: Arc<Scrubber>) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let up = async {
        let n = tokio::io::copy(&mut client_read, &mut upstream_write)
            .await
            .unwrap_or(0);
        let _ = upstream_write.shutdown().await;
        n
    };
    let down = async {
        let mut reader = BufReader::new(upstream_read);
        let mut moved = 0u64;
        loop {
            match forward_frame(&mut reader, &mut client_write, &scrubber).await {
                Ok(Some(n)) => moved += n,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(error = %err, "scrubbed websocket ended");
                    break;
                }
            }
        }
        let _ = client_write.shutdown().await;
        moved
    };
    // Either direction ending ends the splice; the other side is shut down.
    tokio::select! {
        n = up => (n, 0),
        n = down => (0, n),
    }
}

/// Reads one upstream frame, scrubs its payload, writes it to the client.
/// `Ok(None)` at a clean end of stream.
async fn forward_frame<R, W>(
    reader: &mut R,
    writer: &mut W,
    scrubber: &Scrubber,
) -> io::Result<Option<u64>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut head = [0u8; 2];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    if head[0] & 0x40 != 0 {
        return Err(io::Error::other(
            "compressed frame on a connection that must be scrubbed",
        ));
    }
    if head[1] & 0x80 != 0 {
        return Err(io::Error::other("masked frame from the server"));
    }
    let len = match head[1] & 0x7F {
        126 => u64::from(reader.read_u16().await?),
        127 => reader.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_SCRUBBED_FRAME {
        return Err(io::Error::other("frame too large to scrub"));
    }
    // Grows as bytes arrive, rather than reserving the declared length up front.
    let mut payload = Vec::new();
    (&mut *reader).take(len).read_to_end(&mut payload).await?;
    if payload.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let is_control = head[0] & 0x08 != 0;
    let mut clean = scrubber.scrub(&payload);
    if is_control {
        clean.truncate(MAX_CONTROL_PAYLOAD);
    }
    let mut frame = Vec::with_capacity(clean.len() + 10);
    frame.push(head[0]);
    match clean.len() {
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
    frame.extend_from_slice(&clean);
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(Some(frame.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn scrubs_frames_and_fixes_lengths() {
        let scrubber =
            Scrubber::new(vec![(b"s3cr3t-value".to_vec(), b"__TOKEN__".to_vec())]).unwrap();
        let long = format!("{}s3cr3t-value", "x".repeat(200));
        let mut input = text_frame(b"hello s3cr3t-value");
        input.extend(text_frame(long.as_bytes()));
        let mut reader = &input[..];
        let mut out = Vec::new();
        while forward_frame(&mut reader, &mut out, &scrubber)
            .await
            .unwrap()
            .is_some()
        {}
        let mut expected = text_frame(b"hello __TOKEN__");
        expected.extend(text_frame(
            format!("{}__TOKEN__", "x".repeat(200)).as_bytes(),
        ));
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn a_frame_shorter_than_declared_is_an_error_and_sends_nothing() {
        let scrubber = Scrubber::new(vec![(b"abc".to_vec(), b"x".to_vec())]).unwrap();
        // Declares 10 MiB (under the limit), carries 3: nothing is sent on.
        let mut input = vec![0x82u8, 127];
        input.extend_from_slice(&(10u64 << 20).to_be_bytes());
        input.extend_from_slice(b"abc");
        let mut reader = &input[..];
        let mut out = Vec::new();
        assert!(forward_frame(&mut reader, &mut out, &scrubber)
            .await
            .is_err());
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused() {
        let scrubber = Scrubber::new(vec![(b"abc".to_vec(), b"x".to_vec())]).unwrap();
        let mut input = vec![0x82u8, 127];
        input.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let mut reader = &input[..];
        let mut out = Vec::new();
        assert!(forward_frame(&mut reader, &mut out, &scrubber)
            .await
            .is_err());
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn compressed_frames_end_the_connection() {
        let scrubber = Scrubber::new(vec![(b"abc".to_vec(), b"x".to_vec())]).unwrap();
        let input = [0xC1u8, 0x01, 0x00];
        let mut reader = &input[..];
        let mut out = Vec::new();
        assert!(forward_frame(&mut reader, &mut out, &scrubber)
            .await
            .is_err());
        assert!(out.is_empty());
    }
}
