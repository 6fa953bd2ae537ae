//! Output capture: the tail of each stream in memory, the whole of both streams in the log file.
//!
//! The tail, not the head, is kept: when a 40-minute `pg_restore` fails, the error is at the end.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::StepError;

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
pub(super) type SharedLog = Arc<tokio::sync::Mutex<Option<tokio::fs::File>>>;

/// Opens (creating its folders) the log file that receives both streams, appended.
pub(super) async fn open_log(path: Option<&Path>) -> Result<SharedLog, StepError> {
    let Some(path) = path else {
        return Ok(Arc::new(tokio::sync::Mutex::new(None)));
    };
    let cannot = |e: std::io::Error| {
        StepError::setup(format!("cannot open log file `{}`: {e}", path.display()))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await.map_err(cannot)?;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(cannot)?;
    Ok(Arc::new(tokio::sync::Mutex::new(Some(file))))
}

/// The first read of a stream; later reads grow to [`LARGEST_READ`] while they fill the buffer.
const FIRST_READ: usize = 4 * 1024;
const LARGEST_READ: usize = 64 * 1024;

/// Copies one stream into its tail and the log until end of file.
///
/// The tail is shared so that the caller can stop waiting for EOF (a process that escaped
/// the group may hold the pipe open) and still keep everything read so far.
///
/// With a filter, the stream goes through it first; the bytes it holds back (an overlap that
/// may be the start of something to rewrite) are given to it again with the next chunk.
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
    loop {
        chunk.clear();
        let n = match stream.read_buf(&mut chunk).await {
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
        keep(&data, &tail, &log).await;
    }
    if let Some(f) = &filter {
        let (out, _) = f.filter(&pending, true);
        keep(&out, &tail, &log).await;
    }
    if let Some(file) = log.lock().await.as_mut() {
        let _ = file.flush().await;
    }
}

async fn keep(data: &[u8], tail: &SharedTail, log: &SharedLog) {
    if data.is_empty() {
        return;
    }
    tail.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(data);
    let mut log = log.lock().await;
    if let Some(file) = log.as_mut() {
        // A full disk must not kill a running backup: warn once and stop logging.
        if let Err(error) = file.write_all(data).await {
            tracing::warn!(%error, "writing the step log failed; logging stops");
            *log = None;
        }
    }
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
