//! Output capture: the tail of each stream in memory, the whole of both streams in the log file.
//!
//! The tail, not the head, is kept: when a 40-minute `pg_restore` fails, the error is at the end.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The last `limit` bytes written to a stream, and how many were written in all.
#[derive(Debug)]
pub(super) struct Tail {
    buf: VecDeque<u8>,
    limit: usize,
    total: u64,
}

impl Tail {
    pub(super) fn new(limit: usize) -> Self {
        Tail {
            buf: VecDeque::new(),
            limit,
            total: 0,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if chunk.len() >= self.limit {
            self.buf.clear();
            self.buf.extend(&chunk[chunk.len() - self.limit..]);
            return;
        }
        let excess = (self.buf.len() + chunk.len()).saturating_sub(self.limit);
        self.buf.drain(..excess);
        self.buf.extend(chunk);
    }

    pub(super) fn truncated(&self) -> bool {
        self.total > self.buf.len() as u64
    }

    /// The kept bytes as text. When the cut fell inside a UTF-8 sequence, its orphaned
    /// continuation bytes are dropped rather than shown as a replacement character.
    pub(super) fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let mut start = 0;
        if self.truncated() {
            while start < bytes.len().min(3) && (bytes[start] & 0xC0) == 0x80 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

pub(super) type SharedTail = Arc<Mutex<Tail>>;
pub(super) type SharedLog = Arc<tokio::sync::Mutex<LogFile>>;

/// How long a line without its end waits before it is written anyway (a progress bar, a
/// prompt): the live log shows it within this, plus what a reader polls.
pub(super) const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(100);
/// The longest piece of one line held in memory: a line longer than this (a dump of JSON on
/// one line) is written in pieces of about this size.
pub(super) const LINE_CAP: usize = 64 * 1024;

/// The log file both streams are written to, opened at the first byte to write: a command
/// that prints nothing leaves no file. A file left by an earlier run is replaced then.
#[derive(Debug)]
pub(super) struct LogFile {
    path: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    /// Opening or writing failed once: logging stops (a full disk must not kill a backup).
    failed: bool,
}

impl LogFile {
    pub(super) fn shared(path: Option<&Path>) -> SharedLog {
        Arc::new(tokio::sync::Mutex::new(LogFile {
            path: path.map(Path::to_path_buf),
            file: None,
            failed: false,
        }))
    }

    /// Writes `pieces` one after the other (no other stream's bytes between them), then
    /// flushes them to the file so that a reader sees them now.
    async fn write(&mut self, pieces: &[&[u8]]) {
        if self.failed || pieces.iter().all(|p| p.is_empty()) {
            return;
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        if self.file.is_none() {
            match open(&path).await {
                Ok(f) => self.file = Some(f),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot open the step log; logging stops");
                    self.failed = true;
                    return;
                }
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut written = Ok(());
        for piece in pieces.iter().filter(|p| !p.is_empty()) {
            written = file.write_all(piece).await;
            if written.is_err() {
                break;
            }
        }
        // tokio's file hands the bytes to a thread: flush waits until they are in the file.
        if let Err(error) = written.and(file.flush().await) {
            tracing::warn!(%error, "writing the step log failed; logging stops");
            self.failed = true;
            self.file = None;
        }
    }
}

async fn open(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .await
}

/// One stream's line not ended yet, held back so that the log gets whole lines (never half a
/// line of stdout with a line of stderr inside it), until [`PARTIAL_LINE_DELAY`] passed or it
/// reached [`LINE_CAP`].
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    due: Option<tokio::time::Instant>,
}

impl Lines {
    /// Writes every line `data` ends, and keeps the rest.
    async fn push(&mut self, data: &[u8], log: &SharedLog) {
        if data.is_empty() {
            return;
        }
        match data.iter().rposition(|&b| b == b'\n') {
            Some(end) => {
                log.lock()
                    .await
                    .write(&[&self.partial, &data[..=end]])
                    .await;
                self.partial.clear();
                self.partial.extend_from_slice(&data[end + 1..]);
                self.due = None;
            }
            None => self.partial.extend_from_slice(data),
        }
        if self.partial.len() >= LINE_CAP {
            self.flush(log).await;
        } else if !self.partial.is_empty() && self.due.is_none() {
            self.due = Some(tokio::time::Instant::now() + PARTIAL_LINE_DELAY);
        }
    }

    /// Writes the line begun, ended or not.
    async fn flush(&mut self, log: &SharedLog) {
        if !self.partial.is_empty() {
            log.lock().await.write(&[&self.partial]).await;
            self.partial.clear();
        }
        self.due = None;
    }
}

/// The first read of a stream; later reads grow to [`LARGEST_READ`] while they fill the buffer.
const FIRST_READ: usize = 4 * 1024;
const LARGEST_READ: usize = 64 * 1024;

/// Copies one stream into its tail and the log until end of file; the log gets it line by
/// line as it arrives (see [`Lines`]).
///
/// The tail is shared so that the caller can stop waiting for EOF (a process that escaped
/// the group may hold the pipe open) and still keep everything read so far.
///
/// With a filter, the stream goes through it first, and only what it returns reaches the
/// tail and the log; the bytes it holds back (an overlap that may be the start of something to
/// rewrite) are given to it again with the next chunk.
pub(super) async fn pump(
    mut stream: impl AsyncRead + Unpin,
    tail: SharedTail,
    log: SharedLog,
    filter: Option<Arc<dyn super::OutputFilter>>,
) {
    // Read into spare capacity, never zeroed: zeroing 64 KiB per stream was a quarter of
    // Cairn's own instructions for a step that prints nothing. The buffer starts small and
    // doubles while reads fill it: two 64 KiB buffers per step, freed at its end, made the
    // allocator give the top of the heap back to the kernel and take it again (and fault its
    // pages in) on every step.
    let mut chunk: Vec<u8> = Vec::with_capacity(FIRST_READ);
    let mut pending: Vec<u8> = Vec::new();
    let logging = log.lock().await.path.is_some();
    let mut lines = Lines::default();
    loop {
        chunk.clear();
        let read = match lines.due {
            None => stream.read_buf(&mut chunk).await,
            Some(due) => tokio::select! {
                // Cancel safe: a read that did not complete took nothing.
                r = stream.read_buf(&mut chunk) => r,
                () = tokio::time::sleep_until(due) => {
                    lines.flush(&log).await;
                    continue;
                }
            },
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(%error, "reading step output failed");
                break;
            }
        };
        if n == chunk.capacity() && n < LARGEST_READ {
            chunk.reserve_exact(n);
        }
        let data = match &filter {
            None => chunk[..n].to_vec(),
            Some(f) => {
                pending.extend_from_slice(&chunk[..n]);
                let (out, used) = f.filter(&pending, false);
                pending.drain(..used.min(pending.len()));
                out
            }
        };
        keep(&data, &tail);
        if logging {
            lines.push(&data, &log).await;
        }
    }
    if let Some(f) = &filter {
        let (out, _) = f.filter(&pending, true);
        keep(&out, &tail);
        if logging {
            lines.push(&out, &log).await;
        }
    }
    lines.flush(&log).await;
}

fn keep(data: &[u8], tail: &SharedTail) {
    if data.is_empty() {
        return;
    }
    tail.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(data);
}

#[cfg(test)]
mod tests {
    use super::Tail;

    #[test]
    fn keeps_the_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cdef");
        assert_eq!(t.text(), "cdef");
        assert!(t.truncated());
        t.push(b"0123456789");
        assert_eq!(t.text(), "6789");
        assert_eq!(t.total, 16);
    }

    #[test]
    fn drops_a_split_utf8_sequence() {
        let mut t = Tail::new(3);
        t.push("xé!".as_bytes());
        assert_eq!(t.text(), "é!");
        let mut t = Tail::new(2);
        t.push("é!".as_bytes());
        assert_eq!(t.text(), "!");
    }

    #[test]
    fn zero_limit_keeps_nothing() {
        let mut t = Tail::new(0);
        t.push(b"abc");
        assert_eq!(t.text(), "");
        assert!(t.truncated());
    }
}
