//! A temp dir and the real `cairn` run in it with a deadline, none of the machine's `CAIRN_*`
//! knobs, no colour, and HOME inside the sandbox (the per-user state store lands there).
#![allow(dead_code)]

#[path = "../support/process.rs"]
mod process;
#[allow(unused_imports)]
pub use process::whoami;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every command here must end well within this; a hang is the bug under test.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Sandbox {
    dir: tempfile::TempDir,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("cairn-inputs-")
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

    /// Writes `text` to `name` (parents created) and returns its path.
    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create parent dir");
        }
        std::fs::write(&path, text).expect("write file");
        path
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

    /// `cairn ARGS` with the sandbox as working directory and as HOME.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.path(), args)
    }

    pub fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.current_dir(dir)
            .args(args)
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .env("HOME", self.join("home"))
            .env_remove("XDG_STATE_HOME")
            .env_remove("CAIRN_STATE")
            .env_remove("CAIRN_CONCURRENCY")
            .env_remove("CAIRN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    pub fn cairn(&self, args: &[&str]) -> Out {
        finish(self.command(args))
    }

    pub fn cairn_in(&self, dir: &Path, args: &[&str]) -> Out {
        finish(self.command_in(dir, args))
    }
}

pub fn finish(command: Command) -> Out {
    let (status, stdout, stderr) = process::capture(command, DEADLINE);
    Out {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    }
}

impl Out {
    /// Asserts the exit code; returns self for more checks.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}\n{self}");
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(self.stdout.contains(text), "stdout lacks {text:?}\n{self}");
        self
    }
}

pub const VALID: &str = "cairn: 1\nname: ok\nsteps:\n  - id: a\n    shell: echo hi\n";
