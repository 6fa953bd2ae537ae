//! The one test sandbox every suite of the `cairn` binary builds on: a temp dir removed on drop
//! with its files, the real `cairn` started in it with none of the machine's `CAIRN_*` knobs
//! and no colour, a running `cairn` whose stdout lines arrive one by one, and whether a process
//! is gone. Each suite wraps it with what it needs (its state URL, its parsed output).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A temp dir for one test, removed on drop.
pub struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// A fresh dir named `PREFIX…` under the system's temp dir.
    pub fn new(prefix: &str) -> Dir {
        Dir {
            dir: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// A path in the sandbox, as text for runbooks, templates and shell commands.
    pub fn file(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }

    /// Writes `text` to `name` (parents created) and returns its path.
    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create parent dir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// A file's text; a missing file fails the test.
    pub fn read(&self, name: &str) -> String {
        let path = self.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.join(name).exists()
    }

    pub fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::create_dir_all(&path).expect("mkdir");
        path
    }

    /// A real FIFO, made by the real `mkfifo`.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create parent dir");
        }
        let ok = Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("run mkfifo")
            .success();
        assert!(ok, "mkfifo {}", path.display());
        path
    }

    pub fn symlink(&self, target: impl AsRef<Path>, name: &str) {
        std::os::unix::fs::symlink(target, self.join(name)).expect("symlink");
    }
}

/// The real `cairn` with `dir` as working directory: stdin not a terminal, both streams piped,
/// no colour, and none of the knobs of the machine running the tests (`CAIRN_STATE`,
/// `CAIRN_CONCURRENCY`, `CAIRN_LOG`, `CAIRN_STALE_AFTER_MS`, `XDG_STATE_HOME`).
pub fn cairn_command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .env_remove("CAIRN_CONCURRENCY")
        .env_remove("CAIRN_LOG")
        .env_remove("CAIRN_STALE_AFTER_MS")
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A process still running whose stdout lines arrive one by one; killed on drop. Its stderr
/// is left to the caller, who must drain it (a full pipe would block the process).
pub struct Lines {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Lines {
    pub fn spawn(command: &mut Command) -> Lines {
        let mut child = command.spawn().expect("spawn cairn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, lines }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// The next line, waiting at most `left`; `None` when none came (the process is then
    /// killed, so that the test's panic does not leave it running).
    pub fn next(&mut self, left: Duration) -> Option<String> {
        match self.lines.recv_timeout(left) {
            Ok(line) => Some(line),
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                None
            }
        }
    }

    /// The lines still to come once the process ended (each waited for up to 5 s).
    pub fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push(line);
        }
        out
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    cairn_procfs::stat(pid).is_some_and(|s| s.live())
}

/// Whether a process is gone: no such pid, or a zombie waiting for its reaper. Polls up to
/// `wait`, since an orphan is reaped a little after it ends.
pub fn gone_within(pid: i32, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if !alive(pid) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
