//! A step's captured log: its tail for the page, and its growth as Server-Sent Events.
//!
//! The log is the file the engine writes through its masking door (secrets are already
//! masked in it). A stream opens at the end of the log (its last [`TAIL_BYTES`], from a line
//! start), or at the byte offset of `Last-Event-ID` after a reconnect, or at `?from=`; every
//! event's id is the offset just after its text, so a client that reconnects misses nothing
//! and gets nothing twice. The stream ends (event `end`) once the step has stopped running
//! and everything written has been sent.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_state::{RunStatus, StepRecord, StepStatus, Store};

/// How much of a log a page shows, and a stream sends first.
pub const TAIL_BYTES: u64 = 16 * 1024;
/// The most one event carries.
const CHUNK: u64 = 64 * 1024;
/// How often a stream looks for new bytes.
const POLL: Duration = Duration::from_millis(100);
/// How often it asks the store whether the step still runs.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Where a step's log is: as recorded once the step ended, or, while it runs, where the
/// engine writes it (`LOGS/RUN/STEP.log`, `STEP.ITEM.log` for a `for_each` item).
pub fn log_file(logs_dir: &Path, rec: &StepRecord) -> Option<PathBuf> {
    if let Some(p) = &rec.log_path {
        return Some(PathBuf::from(p));
    }
    // Only names the engine could have written: nothing in a damaged record may reach
    // another file.
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !plain(&rec.step_id) || !plain(&rec.run_id) {
        return None;
    }
    let name = match rec.item {
        Some(k) => format!("{}.{k}.log", rec.step_id),
        None => format!("{}.log", rec.step_id),
    };
    Some(logs_dir.join(&rec.run_id).join(name))
}

/// Reads `[from, from + max)` of a regular file; its length too.
fn read_at(path: &Path, from: u64, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = cairn_model::source::open_regular(path).map_err(std::io::Error::other)?;
    let len = f.metadata()?.len();
    let from = from.min(len);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(max.min(len - from)).read_to_end(&mut buf)?;
    Ok((buf, len))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map_or(0, |m| m.len())
}

/// Where a stream or page starts when nothing is asked: the start of the first whole line of
/// the last [`TAIL_BYTES`].
pub fn tail_start(path: &Path) -> u64 {
    let len = file_len(path);
    if len <= TAIL_BYTES {
        return 0;
    }
    let from = len - TAIL_BYTES;
    match read_at(path, from, TAIL_BYTES) {
        Ok((buf, _)) => buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(from, |i| from + i as u64 + 1),
        Err(_) => from,
    }
}

/// The log's text from its tail start, for the page: `(text, start, end)`.
pub fn tail(path: &Path) -> Result<(String, u64, u64), String> {
    let start = tail_start(path);
    let (buf, len) = read_at(path, start, TAIL_BYTES).map_err(|e| e.to_string())?;
    let end = start + buf.len() as u64;
    let _ = len;
    Ok((String::from_utf8_lossy(&buf).into_owned(), start, end))
}

/// What a stream sends next.
pub enum Next {
    /// Text and the offset after it.
    Text(String, u64),
    /// The step has ended and all of its log was sent.
    End,
}

/// A stream's position in one step's log.
pub struct Follower {
    pub store: Arc<dyn Store>,
    pub run_id: String,
    pub step_id: String,
    pub item: Option<u32>,
    pub path: PathBuf,
    pub offset: u64,
    pub running: bool,
    last_check: Option<tokio::time::Instant>,
}

impl Follower {
    pub fn new(
        store: Arc<dyn Store>,
        rec: &StepRecord,
        path: PathBuf,
        offset: u64,
        running: bool,
    ) -> Follower {
        Follower {
            store,
            run_id: rec.run_id.clone(),
            step_id: rec.step_id.clone(),
            item: rec.item,
            path,
            offset,
            running,
            last_check: None,
        }
    }

    async fn still_running(&mut self) -> bool {
        let due = self.last_check.is_none_or(|t| t.elapsed() >= STATUS_EVERY);
        if self.running && due {
            self.last_check = Some(tokio::time::Instant::now());
            let run_alive = matches!(
                self.store.get_run(&self.run_id).await,
                Ok(Some(r)) if r.status == RunStatus::Running
            );
            let step_running = match self.store.steps(&self.run_id).await {
                Ok(steps) => steps.iter().any(|s| {
                    s.step_id == self.step_id
                        && s.item == self.item
                        && s.status == StepStatus::Running
                }),
                Err(_) => false,
            };
            self.running = run_alive && step_running;
        }
        self.running
    }

    /// Waits for the next text, or the end.
    pub async fn next(&mut self) -> Next {
        loop {
            let len = file_len(&self.path);
            if len < self.offset {
                // The file was replaced by a shorter one (a retry started it anew): from 0.
                self.offset = 0;
            }
            if len > self.offset {
                // Whether the step still runs is asked before reading, so that bytes written
                // before it ended are read in this round or the next.
                let running = self.still_running().await;
                if let Ok((buf, _)) = read_at(&self.path, self.offset, CHUNK) {
                    // Whole lines only while the step writes, unless a line is longer than a
                    // chunk.
                    let cut = if running && buf.len() < CHUNK as usize {
                        buf.iter().rposition(|&b| b == b'\n').map(|i| i + 1)
                    } else {
                        Some(buf.len())
                    };
                    if let Some(n) = cut.filter(|&n| n > 0) {
                        self.offset += n as u64;
                        return Next::Text(
                            String::from_utf8_lossy(&buf[..n]).into_owned(),
                            self.offset,
                        );
                    }
                }
            } else if !self.still_running().await && file_len(&self.path) <= self.offset {
                return Next::End;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
