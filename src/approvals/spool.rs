//! The body of a held request, read off the client before the hold starts: the
//! first [`MEMORY_LIMIT`] bytes in memory, the rest in an unlinked file under
//! the state directory, at most [`MAX_HELD_BODY`] in all. The spool holds the
//! body as the sandbox sent it (placeholder form): no secret value ever reaches
//! the disk.

use crate::error::{Reason, Refusal};
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

/// Bytes of a held body kept in memory; beyond this it goes to the spool file.
pub const MEMORY_LIMIT: usize = 64 * 1024;
/// Largest body a held request may have.
pub const MAX_HELD_BODY: u64 = 64 * 1024 * 1024;
/// Spool bytes all held requests together may have on disk, so that sandboxes
/// asking for approvals cannot fill the disk the audit trail is written to.
pub const MAX_SPOOLED: u64 = 1024 * 1024 * 1024;
/// Spool bytes the held requests of one task may have on disk, so that one
/// sandbox cannot take the whole spool from the others.
pub const MAX_SPOOLED_PER_TASK: u64 = 256 * 1024 * 1024;
/// Bytes of a held body shown to operators (`GET /v1/approvals/{id}`).
pub const PREVIEW_BYTES: usize = 2048;
/// Write and read-back buffer of spool files.
const FILE_BUFFER: usize = 256 * 1024;

/// The disk space all spool files share, and each task's part of it.
#[derive(Debug)]
pub struct SpoolBudget {
    used: Arc<AtomicU64>,
    max: u64,
    per_task: Mutex<HashMap<String, Arc<AtomicU64>>>,
    task_max: u64,
}

impl SpoolBudget {
    /// A budget of `max` bytes in all and `task_max` per task.
    pub fn new(max: u64, task_max: u64) -> Self {
        Self {
            used: Arc::default(),
            max,
            per_task: Mutex::default(),
            task_max,
        }
    }

    /// Bytes in use now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation for `task`.
    fn reservation(&self, task: &str) -> Reservation {
        let mut per_task = self.per_task.lock().unwrap_or_else(|p| p.into_inner());
        // Tasks that hold nothing and that nobody reserves for are forgotten.
        per_task.retain(|_, used| Arc::strong_count(used) > 1);
        let task_used = per_task.entry(task.to_string()).or_default().clone();
        Reservation {
            used: self.used.clone(),
            task_used,
            bytes: 0,
        }
    }

    fn reserve(&self, reservation: &mut Reservation, n: u64) -> Result<(), SpoolError> {
        take(&reservation.task_used, n, self.task_max)?;
        if let Err(full) = take(&self.used, n, self.max) {
            reservation.task_used.fetch_sub(n, Ordering::AcqRel);
            return Err(full);
        }
        reservation.bytes += n;
        Ok(())
    }
}

/// Adds `n` to `counter` unless that goes over `max`.
fn take(counter: &AtomicU64, n: u64, max: u64) -> Result<(), SpoolError> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(n).filter(|total| *total <= max)
        })
        .map(|_| ())
        .map_err(|_| SpoolError::Full)
}

/// Spool space held by one body, given back when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicU64>,
    task_used: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.task_used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why a body could not be held.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Over [`MAX_HELD_BODY`] (declared or counted).
    #[error("the body is over the {MAX_HELD_BODY} byte limit of a request held for approval")]
    TooLarge,
    /// The client's body ended in an error (it hung up, or sent garbage).
    #[error("the request body could not be read")]
    Client,
    /// The spool (in all, or this task's part) is full.
    #[error("the spool for held requests is full")]
    Full,
    /// The spool file could not be written (a full disk, say).
    #[error("the request body could not be spooled to disk: {0}")]
    Disk(#[from] std::io::Error),
}

impl From<SpoolError> for Refusal {
    fn from(err: SpoolError) -> Self {
        let reason = match err {
            SpoolError::TooLarge => Reason::BodyTooLarge,
            SpoolError::Client => Reason::BadRequest,
            SpoolError::Disk(_) | SpoolError::Full => Reason::SpoolUnavailable,
        };
        Refusal::new(reason, err.to_string())
    }
}

/// A body read whole and held until the request is answered.
#[derive(Debug)]
pub struct HeldBody {
    data: Held,
    len: u64,
    sha256: String,
    preview: Bytes,
}

#[derive(Debug)]
enum Held {
    /// Small enough for memory (or empty).
    Memory(Bytes),
    /// In an unlinked spool file, read back from its start when forwarded.
    File {
        /// The file, already unlinked; its space is freed when this is dropped.
        file: tokio::fs::File,
        /// Its share of the spool budget.
        reservation: Reservation,
    },
}

impl HeldBody {
    /// Reads `body` whole (at most `max` bytes), spilling to a file in `dir`
    /// past [`MEMORY_LIMIT`], within `task`'s part of `budget`.
    pub async fn read<B>(
        body: B,
        dir: &Path,
        max: u64,
        budget: &SpoolBudget,
        task: &str,
    ) -> Result<HeldBody, SpoolError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
    {
        let mut body = body;
        let mut memory = BytesMut::new();
        let mut preview = BytesMut::new();
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut file: Option<BufWriter<tokio::fs::File>> = None;
        let mut len: u64 = 0;
        let mut reservation = budget.reservation(task);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| SpoolError::Client)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers are not kept
            };
            len += data.len() as u64;
            if len > max {
                return Err(SpoolError::TooLarge);
            }
            digest.update(&data);
            let room = PREVIEW_BYTES.saturating_sub(preview.len());
            preview.extend_from_slice(&data[..room.min(data.len())]);
            match &mut file {
                Some(file) => {
                    budget.reserve(&mut reservation, data.len() as u64)?;
                    file.write_all(&data).await?;
                }
                None if memory.len() + data.len() <= MEMORY_LIMIT => {
                    memory.extend_from_slice(&data)
                }
                None => {
                    budget.reserve(&mut reservation, (memory.len() + data.len()) as u64)?;
                    let mut spilled =
                        BufWriter::with_capacity(FILE_BUFFER, create_unlinked(dir).await?);
                    spilled.write_all(&memory).await?;
                    spilled.write_all(&data).await?;
                    memory = BytesMut::new();
                    file = Some(spilled);
                }
            }
        }
        let data = match file {
            None => Held::Memory(memory.freeze()),
            Some(mut file) => {
                file.flush().await?;
                Held::File {
                    file: file.into_inner(),
                    reservation,
                }
            }
        };
        Ok(HeldBody {
            data,
            len,
            sha256: crate::text::hex(digest.finish().as_ref()),
            preview: preview.freeze(),
        })
    }

    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the body waits on disk (else in memory).
    pub fn on_disk(&self) -> bool {
        matches!(self.data, Held::File { .. })
    }

    /// Hex SHA-256 of the body.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its first [`PREVIEW_BYTES`] bytes.
    pub fn preview(&self) -> &Bytes {
        &self.preview
    }

    /// The body to forward: streamed back from the spool file, not read into
    /// memory. Its type is the proxy's `ProxyBody`, spelled out here so that
    /// the registry does not depend on the proxy.
    pub async fn into_body(
        self,
    ) -> Result<BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>, SpoolError> {
        let never = |never: std::convert::Infallible| match never {};
        match self.data {
            Held::Memory(bytes) if bytes.is_empty() => Ok(Empty::new().map_err(never).boxed()),
            Held::Memory(bytes) => Ok(Full::new(bytes).map_err(never).boxed()),
            Held::File {
                mut file,
                reservation,
            } => {
                file.seek(SeekFrom::Start(0)).await?;
                let reader = tokio::io::AsyncReadExt::take(file, self.len);
                // The space stays reserved until the body has been sent.
                let frames = tokio_util::io::ReaderStream::with_capacity(reader, FILE_BUFFER)
                    .map_ok(move |data| {
                        let _ = &reservation;
                        Frame::data(data)
                    })
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) });
                Ok(StreamBody::new(frames).boxed())
            }
        }
    }
}

/// A new file in `dir` (created 0700 if absent), opened read-write, already
/// unlinked, so nothing is left behind whatever happens to the process.
async fn create_unlinked(dir: &Path) -> std::io::Result<tokio::fs::File> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        crate::tls::ca::create_private_dir(&dir).map_err(std::io::Error::other)?;
        let mut name = [0u8; 12];
        aws_lc_rs::rand::fill(&mut name)
            .map_err(|_| std::io::Error::other("random bytes unavailable"))?;
        let path = dir.join(format!("held-{}.body", crate::text::hex(&name)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(tokio::fs::File::from_std(file))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    async fn round_trip(data: Vec<u8>, dir: &Path) -> (u64, bool, Vec<u8>) {
        let budget = SpoolBudget::new(MAX_SPOOLED, MAX_SPOOLED_PER_TASK);
        let held = HeldBody::read(
            Full::new(Bytes::from(data)),
            dir,
            MAX_HELD_BODY,
            &budget,
            "t",
        )
        .await
        .unwrap_or_else(|e| panic!("spool: {e}"));
        let on_disk = held.on_disk();
        let len = held.len();
        let body = held
            .into_body()
            .await
            .unwrap_or_else(|e| panic!("into_body: {e}"));
        let back = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("collect: {e}"))
            .to_bytes()
            .to_vec();
        (len, on_disk, back)
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_large_ones_spill_and_come_back_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spool = dir.path().join("spool");
        let (len, on_disk, back) = round_trip(b"hello".to_vec(), &spool).await;
        assert_eq!((len, on_disk, back.as_slice()), (5, false, &b"hello"[..]));

        let big: Vec<u8> = (0..(MEMORY_LIMIT * 3 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let (len, on_disk, back) = round_trip(big.clone(), &spool).await;
        assert_eq!(len, big.len() as u64);
        assert!(on_disk, "a body over the memory limit is spooled to disk");
        assert!(back == big, "the spooled body comes back byte for byte");
        // The spool file was unlinked at once: nothing is left in the directory.
        let left = std::fs::read_dir(&spool)
            .unwrap_or_else(|e| panic!("{e}"))
            .count();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let body = Full::new(Bytes::from(vec![0u8; 1000]));
        let budget = SpoolBudget::new(MAX_SPOOLED, MAX_SPOOLED_PER_TASK);
        let err = HeldBody::read(body, dir.path(), 999, &budget, "t").await;
        assert!(matches!(err, Err(SpoolError::TooLarge)), "{err:?}");
    }

    #[tokio::test]
    async fn the_shared_budget_caps_the_disk_all_holds_use_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let unit = 2 * MEMORY_LIMIT as u64;
        // Room for three bodies in all, two per task.
        let budget = SpoolBudget::new(3 * unit, 2 * unit);
        let body = || Full::new(Bytes::from(vec![1u8; 2 * MEMORY_LIMIT]));
        let read = |task: &'static str| {
            let budget = &budget;
            let dir = dir.path().to_path_buf();
            async move { HeldBody::read(body(), &dir, MAX_HELD_BODY, budget, task).await }
        };
        let a1 = read("a").await.unwrap();
        let _a2 = read("a").await.unwrap();
        let a3 = read("a").await;
        assert!(matches!(a3, Err(SpoolError::Full)), "a task's part: {a3:?}");
        let _b1 = read("b").await.unwrap();
        let b2 = read("b").await;
        assert!(
            matches!(b2, Err(SpoolError::Full)),
            "the whole spool: {b2:?}"
        );
        assert_eq!(
            budget.used(),
            3 * unit,
            "refused bodies give their share back"
        );
        // Forwarding keeps the space until the body has been sent.
        let forwarded = a1.into_body().await.unwrap();
        assert_eq!(budget.used(), 3 * unit);
        drop(forwarded);
        assert_eq!(budget.used(), 2 * unit);
        assert!(read("b").await.is_ok());
    }

    #[tokio::test]
    async fn the_digest_and_preview_describe_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let budget = SpoolBudget::new(MAX_SPOOLED, MAX_SPOOLED_PER_TASK);
        let data: Vec<u8> = (0..(MEMORY_LIMIT * 2)).map(|i| (i % 97) as u8).collect();
        let held = HeldBody::read(
            Full::new(Bytes::from(data.clone())),
            dir.path(),
            MAX_HELD_BODY,
            &budget,
            "t",
        )
        .await
        .unwrap();
        let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
        assert_eq!(held.sha256(), crate::text::hex(expected.as_ref()));
        assert_eq!(held.preview().as_ref(), &data[..PREVIEW_BYTES]);
    }
}
