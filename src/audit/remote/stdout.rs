//! The stdout sink: one record (or its OCSF rendering) per line.

use super::delivery::{render, Failure};
use crate::config::SinkFormat;
use bytes::Bytes;
use std::io::Write;

pub(super) struct Stdout {
    format: SinkFormat,
}

/// The bytes written for `batch`: each record followed by a newline.
pub(super) fn lines(batch: &[Bytes], format: SinkFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.iter().map(|r| r.len() + 1).sum());
    for line in batch {
        out.extend_from_slice(&render(format, line));
        out.push(b'\n');
    }
    out
}

impl Stdout {
    pub(super) fn new(format: SinkFormat) -> Stdout {
        Stdout { format }
    }

    pub(super) async fn send(&mut self, batch: &[Bytes]) -> Result<(), Failure> {
        let buf = lines(batch, self.format);
        // std's stdout, written on a blocking thread: a stalled reader of our
        // stdout must not hold a runtime worker.
        let written = tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)?;
            out.flush()
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure {
                acked: 0,
                reason: format!("stdout: {e}"),
            }),
            Err(e) => Err(Failure {
                acked: 0,
                reason: format!("stdout: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_record() {
        let batch = [
            Bytes::from_static(b"{\"seq\":1}"),
            Bytes::from_static(b"{\"seq\":2}"),
        ];
        assert_eq!(
            lines(&batch, SinkFormat::Native),
            b"{\"seq\":1}\n{\"seq\":2}\n".to_vec()
        );
        let ocsf = lines(&batch[..1], SinkFormat::Ocsf);
        assert_eq!(ocsf.iter().filter(|&&c| c == b'\n').count(), 1);
        let ev: serde_json::Value = serde_json::from_slice(&ocsf).unwrap();
        assert_eq!(ev["unmapped"]["tollgate"]["seq"], 1);
    }
}
