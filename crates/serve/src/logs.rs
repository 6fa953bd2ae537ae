//! A step's captured log: its tail for the page, and its growth as Server-Sent Events.
//!
//! The log is the file the engine writes through its masking door (secrets are already
//! masked in it): while a step runs, its process's output line by line as it comes; when the
//! step ends, its log whole, in a new file renamed over the live one. A stream opens at the end
//! of the log (its last [`TAIL_BYTES`], from a line start), or at the byte offset of
//! `Last-Event-ID` after a reconnect, or at `?from=`; every event's id is the offset just after
//! its text, so a client that reconnects misses nothing and gets nothing twice. When the file
//! is replaced (the step's end, a retry) the stream says `reset` and starts the new file from
//! its beginning. The stream ends (event `end`) once the step has stopped running and
//! everything written has been sent.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
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
    file_id(path).map_or(0, |(_, len)| len)
}

/// The file's identity (device and inode) and its length; `None` for no regular file.
fn file_id(path: &Path) -> Option<((u64, u64), u64)> {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| ((m.dev(), m.ino()), m.len()))
}

/// How much of `buf` is whole UTF-8 characters: a character cut by the end of what was read
/// waits for the next read (bytes that are no UTF-8 at all go out, shown as `\xNN`).
fn whole_chars(buf: &[u8]) -> usize {
    for back in 1..=3.min(buf.len()) {
        let b = buf[buf.len() - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let width = match b {
            0xF8.. => 1,
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if width > back {
            buf.len() - back
        } else {
            buf.len()
        };
    }
    buf.len()
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
    /// The file was replaced (the step ended and its log was written whole, or a new attempt
    /// began): what follows is the new file from its start.
    Reset,
    /// The step has ended and all of its log was sent.
    End,
}

/// What the one watcher of a running step's log last saw: the file (device, inode) and its
/// length, and whether the step still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    file: Option<(u64, u64)>,
    len: u64,
    running: bool,
}

type Key = (String, String, Option<u32>);
type Map = std::collections::HashMap<Key, tokio::sync::watch::Receiver<Seen>>;

/// One watcher per running step's log, however many clients follow it: it looks at the file
/// every [`POLL`] and asks the store whether the step still runs every [`STATUS_EVERY`], and
/// every stream of that log waits on what it saw. 200 clients of one step cost one `stat`
/// per poll and one store read a second, not 200 of each.
#[derive(Default)]
pub struct Watches {
    map: Arc<std::sync::Mutex<Map>>,
}

impl Watches {
    /// What the watcher of this step's log sees; started if none runs.
    fn watch(
        &self,
        store: &Arc<dyn Store>,
        rec: &StepRecord,
        path: &Path,
    ) -> tokio::sync::watch::Receiver<Seen> {
        let key = (rec.run_id.clone(), rec.step_id.clone(), rec.item);
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rx) = map.get(&key) {
            return rx.clone();
        }
        let first = Seen {
            file: file_id(path).map(|(id, _)| id),
            len: file_len(path),
            running: true,
        };
        let (tx, rx) = tokio::sync::watch::channel(first);
        tokio::spawn(watcher(
            tx,
            self.map.clone(),
            store.clone(),
            key.clone(),
            path.to_path_buf(),
        ));
        map.insert(key, rx.clone());
        rx
    }
}

/// Watches one running step's log until the step ends or nobody follows it.
async fn watcher(
    tx: tokio::sync::watch::Sender<Seen>,
    map: Arc<std::sync::Mutex<Map>>,
    store: Arc<dyn Store>,
    key: Key,
    path: PathBuf,
) {
    let (run_id, step_id, item) = key.clone();
    let mut asked: Option<tokio::time::Instant> = None;
    let mut running = true;
    // Leaves the map when nobody but the map follows, or the step ended; under the map's
    // lock, where streams subscribe, so that none subscribes to a watcher that is gone.
    let leave = |ended: bool| {
        let mut map = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let alone = tx.receiver_count() <= 1;
        if alone || ended {
            map.remove(&key);
        }
        alone || ended
    };
    loop {
        if leave(false) {
            return;
        }
        if asked.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            asked = Some(tokio::time::Instant::now());
            let run_alive = matches!(
                store.get_run(&run_id).await,
                Ok(Some(r)) if r.status == RunStatus::Running
            );
            let step_running = match store.steps(&run_id).await {
                Ok(steps) => steps.iter().any(|s| {
                    s.step_id == step_id && s.item == item && s.status == StepStatus::Running
                }),
                Err(_) => false,
            };
            running = run_alive && step_running;
        }
        // The file after the status: once the step is seen ended, its whole log is counted.
        let seen = Seen {
            file: file_id(&path).map(|(id, _)| id),
            len: file_len(&path),
            running,
        };
        tx.send_if_modified(|old| {
            let changed = *old != seen;
            *old = seen;
            changed
        });
        if !running {
            leave(true);
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A stream's position in one step's log.
pub struct Follower {
    path: PathBuf,
    offset: u64,
    /// What the step's watcher sees, while the step runs; `None` for a step that ended.
    seen: Option<tokio::sync::watch::Receiver<Seen>>,
    /// The file being followed (device, inode), once there is one.
    file: Option<(u64, u64)>,
}

impl Follower {
    pub fn new(
        watches: &Watches,
        store: &Arc<dyn Store>,
        rec: &StepRecord,
        path: PathBuf,
        offset: u64,
        running: bool,
    ) -> Follower {
        let seen = running.then(|| watches.watch(store, rec, &path));
        Follower {
            path,
            offset,
            seen,
            file: None,
        }
    }

    /// What is known of the file now, and whether the step still runs.
    fn now(&mut self) -> (Option<(u64, u64)>, u64, bool) {
        match &mut self.seen {
            Some(rx) => {
                let seen = *rx.borrow_and_update();
                (seen.file, seen.len, seen.running)
            }
            None => {
                file_id(&self.path).map_or((None, 0, false), |(id, len)| (Some(id), len, false))
            }
        }
    }

    /// Waits for the next text, or the end.
    pub async fn next(&mut self) -> Next {
        loop {
            let (id, len, running) = self.now();
            let replaced = id.is_some() && self.file.is_some() && id != self.file;
            // A file shorter than where the client stands is another file too (a client's
            // `Last-Event-ID` from before the file was replaced).
            if replaced || len < self.offset {
                self.file = id;
                self.offset = 0;
                return Next::Reset;
            }
            if id.is_some() {
                self.file = id;
            }
            if len > self.offset {
                if let Ok((buf, _)) = read_at(&self.path, self.offset, CHUNK.min(len - self.offset))
                {
                    // The engine writes whole lines, and a line not ended yet only after a
                    // pause: all of it goes, but a character cut in two waits for its end.
                    let n = if running {
                        whole_chars(&buf)
                    } else {
                        buf.len()
                    };
                    if n > 0 {
                        self.offset += n as u64;
                        return Next::Text(
                            String::from_utf8_lossy(&buf[..n]).into_owned(),
                            self.offset,
                        );
                    }
                }
            } else if !running {
                return Next::End;
            }
            match &mut self.seen {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        // The watcher ended, with the step: the file as it is now is all.
                        self.seen = None;
                    }
                }
                None => tokio::time::sleep(POLL).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::whole_chars;

    #[test]
    fn a_character_cut_in_two_waits_for_its_end() {
        let text = "aé€😀".as_bytes();
        assert_eq!(whole_chars(text), text.len());
        for cut in 0..text.len() {
            let n = whole_chars(&text[..cut]);
            assert!(std::str::from_utf8(&text[..n]).is_ok(), "cut at {cut}");
            assert!(cut - n < 4, "cut at {cut}");
        }
        assert_eq!(whole_chars(b"ab\xff"), 3, "no UTF-8 at all goes out");
        assert_eq!(whole_chars(b"\x80\x80\x80"), 3);
    }
}
