//! The file sink, the record of truth: appends whole batches, rolls back a partial
//! write, rotates by size to `<stem>-<first seq, 12 digits>.<ext>`, and at start
//! recovers the chain head from the end of the existing log.

use super::chain::{canonical, sha256, ChainHead};
use crate::config::{FileSink, DEFAULT_ROTATE_BYTES};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {message}")]
pub struct FileLogError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> FileLogError {
    FileLogError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A torn last line found at start (a crash mid-write): cut from the log and kept.
#[derive(Debug, Clone)]
pub struct TornTail {
    /// Its length.
    pub bytes: u64,
    /// Where the fragment was saved.
    pub saved_to: PathBuf,
}

/// What recovery found.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Where the chain continues.
    pub head: ChainHead,
    /// A torn tail that was cut off, if any.
    pub torn: Option<TornTail>,
}

/// Takes `<log>.lock`: two processes appending their own chains to one file
/// would make it unverifiable, so the second is refused.
fn lock_log(path: &Path) -> Result<File, FileLogError> {
    let mut name = path.as_os_str().to_os_string();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| err(&lock_path, e))?;
    match crate::file_lock::lock_exclusive(&lock) {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(err(
            path,
            "another tollgate process is writing this log; give each process its own \
             state_dir, or run sandboxes under one `tollgate serve` with `tollgate run --admin`",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(err(&lock_path, e)),
    }
}

/// The open log file.
#[derive(Debug)]
pub struct FileLog {
    path: PathBuf,
    file: File,
    /// Length up to the end of the last complete batch.
    len: u64,
    /// `seq` of the first record in the current file.
    first_seq: Option<u64>,
    rotate_bytes: u64,
    /// Held (flock) while this process owns the log.
    _lock: File,
}

impl FileLog {
    /// Opens (creating) the log and recovers the chain head from it, or from the
    /// newest rotated file when the current one is empty.
    pub fn open(config: &FileSink) -> Result<(Self, Recovered), FileLogError> {
        let path = config.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::tls::ca::create_private_dir(dir).map_err(|e| err(dir, e))?;
        }
        let lock = lock_log(&path)?;
        let mut file = open_append(&path)?;
        let torn = cut_torn_tail(&mut file, &path)?;
        let len = file.metadata().map_err(|e| err(&path, e))?.len();
        let (head, first_seq) = if len > 0 {
            let head = head_of(&mut file, &path)?;
            let first = first_seq_of(&mut file, &path)?;
            (head, Some(first))
        } else {
            match newest_rotated(&path) {
                Some(rotated) => {
                    let mut old = File::open(&rotated).map_err(|e| err(&rotated, e))?;
                    (head_of(&mut old, &rotated)?, None)
                }
                None => (ChainHead::genesis(), None),
            }
        };
        let log = FileLog {
            path,
            file,
            len,
            first_seq,
            rotate_bytes: config.rotate_bytes.unwrap_or(DEFAULT_ROTATE_BYTES),
            _lock: lock,
        };
        Ok((log, Recovered { head, torn }))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `batch` (whole lines) whose first record is `first_seq`. On failure
    /// the file is cut back to its previous length, so a later retry never
    /// leaves a torn line in the middle of the log.
    pub fn append(&mut self, batch: &[u8], first_seq: u64) -> std::io::Result<()> {
        match self.file.write_all(batch) {
            Ok(()) => {
                self.len += batch.len() as u64;
                self.first_seq.get_or_insert(first_seq);
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(path = %self.path.display(), error = %cut, "cannot cut a partial audit write back; the log may end in a torn line");
                }
                Err(e)
            }
        }
    }

    /// Flushes file data to the disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Whether the file has reached its rotation size.
    pub fn needs_rotation(&self) -> bool {
        self.len >= self.rotate_bytes
    }

    /// Renames the current file to its rotated name and starts an empty one.
    pub fn rotate(&mut self) -> std::io::Result<PathBuf> {
        let first = self.first_seq.unwrap_or(0);
        let target = rotated_name(&self.path, first);
        self.file.sync_all()?;
        std::fs::rename(&self.path, &target)?;
        self.file = open_append(&self.path).map_err(|e| std::io::Error::other(e.message))?;
        self.len = 0;
        self.first_seq = None;
        Ok(target)
    }
}

/// `dir/audit.jsonl` → `dir/audit-000000000042.jsonl`.
pub fn rotated_name(path: &Path, first_seq: u64) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{first_seq:012}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{first_seq:012}"),
    };
    path.with_file_name(name)
}

fn open_append(path: &Path) -> Result<File, FileLogError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| err(path, e))
}

/// Where the last line starts, given the file ends with a newline (or is cut to one).
/// Reads backwards in chunks so a large log is not read whole.
fn last_newline_before(
    file: &mut File,
    path: &Path,
    end: u64,
) -> Result<Option<u64>, FileLogError> {
    const CHUNK: u64 = 64 * 1024;
    let mut pos = end;
    let mut buf = vec![0u8; CHUNK as usize];
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        let n = (pos - start) as usize;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| err(path, e))?;
        file.read_exact(&mut buf[..n]).map_err(|e| err(path, e))?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(Some(start + i as u64));
        }
        pos = start;
    }
    Ok(None)
}

/// Cuts bytes after the last newline (a crash mid-write) and saves them beside the
/// log, so nothing is chained over silently.
fn cut_torn_tail(file: &mut File, path: &Path) -> Result<Option<TornTail>, FileLogError> {
    let len = file.metadata().map_err(|e| err(path, e))?.len();
    if len == 0 {
        return Ok(None);
    }
    let keep = match last_newline_before(file, path, len)? {
        Some(i) if i + 1 == len => return Ok(None),
        Some(i) => i + 1,
        None => 0,
    };
    let mut fragment = vec![0u8; (len - keep) as usize];
    file.seek(SeekFrom::Start(keep)).map_err(|e| err(path, e))?;
    file.read_exact(&mut fragment).map_err(|e| err(path, e))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut saved = path.as_os_str().to_os_string();
    saved.push(format!(".torn-{stamp}"));
    let saved_to = PathBuf::from(saved);
    std::fs::write(&saved_to, &fragment).map_err(|e| err(&saved_to, e))?;
    file.set_len(keep).map_err(|e| err(path, e))?;
    tracing::error!(
        path = %path.display(),
        bytes = fragment.len(),
        saved_to = %saved_to.display(),
        "the audit log ended in a torn line (a crash mid-write); it was cut off and saved, and the start checkpoint records it"
    );
    Ok(Some(TornTail {
        bytes: fragment.len() as u64,
        saved_to,
    }))
}

/// The chain head after the last line of a log that ends with a newline.
fn head_of(file: &mut File, path: &Path) -> Result<ChainHead, FileLogError> {
    let len = file.metadata().map_err(|e| err(path, e))?.len();
    if len == 0 {
        return Ok(ChainHead::genesis());
    }
    let start = match last_newline_before(file, path, len - 1)? {
        Some(i) => i + 1,
        None => 0,
    };
    let mut line = vec![0u8; (len - 1 - start) as usize];
    file.seek(SeekFrom::Start(start))
        .map_err(|e| err(path, e))?;
    file.read_exact(&mut line).map_err(|e| err(path, e))?;
    let value: Value = serde_json::from_slice(&line).map_err(|e| {
        err(
            path,
            format!("the last line is not an audit record ({e}); move the file aside to start a new log"),
        )
    })?;
    let seq = value.get("seq").and_then(Value::as_u64).ok_or_else(|| {
        err(
            path,
            "the last line has no seq; move the file aside to start a new log",
        )
    })?;
    let bytes = canonical(&value).map_err(|e| err(path, e))?;
    Ok(ChainHead {
        next_seq: seq + 1,
        prev: sha256(&bytes),
    })
}

fn first_seq_of(file: &mut File, path: &Path) -> Result<u64, FileLogError> {
    file.seek(SeekFrom::Start(0)).map_err(|e| err(path, e))?;
    let mut reader = std::io::BufReader::new(&*file);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).map_err(|e| err(path, e))?;
    serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|v| v.get("seq").and_then(Value::as_u64))
        .ok_or_else(|| err(path, "the first line is not an audit record"))
}

/// The rotated sibling with the highest first seq.
fn newest_rotated(path: &Path) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let prefix = format!("{stem}-");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&prefix)?;
            let digits = rest.get(..12)?;
            let seq: u64 = digits.parse().ok()?;
            (rotated_name(path, seq).file_name()? == entry.file_name().as_os_str())
                .then(|| (seq, entry.path()))
        })
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_carry_twelve_digits() {
        assert_eq!(
            rotated_name(Path::new("/x/audit.jsonl"), 42),
            PathBuf::from("/x/audit-000000000042.jsonl")
        );
        assert_eq!(
            rotated_name(Path::new("log"), 7),
            PathBuf::from("log-000000000007")
        );
    }
}
