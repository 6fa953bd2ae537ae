//! A temp dir and the real `cairn` run in it with a deadline, none of the machine's `CAIRN_*`
//! knobs, no colour, and HOME inside the sandbox (the per-user state store lands there).
#![allow(dead_code)]

#[path = "../support/process.rs"]
mod process;
#[path = "../support/sandbox.rs"]
mod sandbox;
#[allow(unused_imports)]
pub use process::whoami;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Every command here must end well within this; a hang is the bug under test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A temp dir ([`sandbox::Dir`]: its files), removed on drop.
pub struct Sandbox {
    dir: sandbox::Dir,
}

impl std::ops::Deref for Sandbox {
    type Target = sandbox::Dir;
    fn deref(&self) -> &sandbox::Dir {
        &self.dir
    }
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
            dir: sandbox::Dir::new("cairn-inputs-"),
        }
    }

    /// `cairn ARGS` with the sandbox as working directory and as HOME.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.path(), args)
    }

    pub fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = sandbox::cairn_command(dir);
        c.args(args)
            .env("USER", "tester")
            .env("HOME", self.join("home"));
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
