//! What the durable-state tests share: a temp dir holding the runbooks, the state and the files
//! the steps write; the real `cairn` binary run in it against one state URL; its JSON events,
//! `cairn runs` and `cairn show` parsed.
//!
//! Each test binary uses only part of this: what it leaves unused is not dead code.
#![allow(dead_code)]

#[path = "../support/process.rs"]
mod process;
#[path = "../support/sandbox.rs"]
pub mod sandbox;
#[allow(unused_imports)]
pub use process::whoami;
use process::{drain, wait_or_kill};
#[allow(unused_imports)]
pub use sandbox::{alive, gone_within};

use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Hang protection only: no test comes near it, even on a loaded machine.
pub const HANG: Duration = Duration::from_secs(180);

/// The PostgreSQL server of the test environment (trust authentication).
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A temp dir ([`sandbox::Dir`]: its files) and the state store its commands use; the dir is
/// removed on drop.
pub struct Sandbox {
    dir: sandbox::Dir,
    state: String,
}

impl std::ops::Deref for Sandbox {
    type Target = sandbox::Dir;
    fn deref(&self) -> &sandbox::Dir {
        &self.dir
    }
}

impl Sandbox {
    /// SQLite state in `<dir>/state.db`.
    pub fn new() -> Sandbox {
        let dir = sandbox::Dir::new("cairn-state-");
        let state = dir.file("state.db");
        Sandbox { dir, state }
    }

    /// Any state URL (PostgreSQL, `sqlite://...?sync=full`).
    pub fn with_state(url: &str) -> Sandbox {
        Sandbox {
            state: url.to_string(),
            ..Sandbox::new()
        }
    }

    pub fn state(&self) -> &str {
        &self.state
    }

    /// A file's text, empty if it does not exist.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }

    pub fn lines(&self, name: &str) -> Vec<String> {
        self.read(name).lines().map(str::to_string).collect()
    }

    /// `cairn ARGS --state URL` in the sandbox, stdin not a terminal, none of the machine's
    /// `CAIRN_*` knobs, no colour.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_on(args, &self.state)
    }

    /// [`command`](Self::command) on another URL of the store (as another database role).
    pub fn command_on(&self, args: &[&str], state: &str) -> Command {
        let mut c = sandbox::cairn_command(self.path());
        c.args(args).arg("--state").arg(state).env("USER", "tester");
        c
    }

    /// Runs `cairn ARGS` to its end.
    pub fn cairn(&self, args: &[&str]) -> Out {
        finish(self.command(args))
    }

    /// `cairn run FILE --log-format json ARGS`.
    pub fn run(&self, file: &str, args: &[&str]) -> Out {
        let mut all = vec!["run", file, "--log-format", "json"];
        all.extend_from_slice(args);
        self.cairn(&all)
    }

    /// `cairn resume RUN --log-format json ARGS`.
    pub fn resume(&self, run: &str, args: &[&str]) -> Out {
        let mut all = vec!["resume", run, "--log-format", "json"];
        all.extend_from_slice(args);
        self.cairn(&all)
    }

    /// `cairn runs --output json ARGS`, newest first.
    pub fn runs(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["runs", "--output", "json"];
        all.extend_from_slice(args);
        let out = self.cairn(&all);
        out.expect(0);
        match serde_json::from_str(&out.stdout) {
            Ok(Value::Array(runs)) => runs,
            other => panic!("`cairn runs --output json` is not an array: {other:?}\n{out}"),
        }
    }

    /// The only run in the store.
    pub fn only_run(&self) -> Value {
        let runs = self.runs(&[]);
        assert_eq!(runs.len(), 1, "expected exactly one run: {runs:#?}");
        runs[0].clone()
    }

    /// `cairn show RUN --output json`: `{run, steps, approvals}`.
    pub fn show(&self, run: &str) -> Value {
        let out = self.cairn(&["show", run, "--output", "json"]);
        out.expect(0);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("`cairn show --output json` is not JSON ({e})\n{out}"))
    }

    /// The stored record of one step (not of one of its items).
    pub fn step(&self, run: &str, step: &str) -> Value {
        let shown = self.show(run);
        shown["steps"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .find(|r| r["step_id"] == step && r["item"].is_null())
            })
            .cloned()
            .unwrap_or_else(|| panic!("no record of step `{step}`: {shown:#}"))
    }
}

/// Spawns, drains both pipes, waits (killing the child after [`HANG`]).
pub fn finish(command: Command) -> Out {
    let (status, stdout, stderr) = process::capture(command, HANG);
    Out::new(
        status,
        String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    )
}

/// A finished command: exit code (or the signal that ended it) and both streams.
pub struct Out {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn new(status: ExitStatus, stdout: String, stderr: String) -> Out {
        Out {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
        }
    }

    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect(&self, code: i32) -> &Out {
        assert_eq!(
            self.code,
            Some(code),
            "exit {:?} (expected {code})\n{self}",
            self.code
        );
        self
    }

    /// Panics unless stderr holds `text`.
    pub fn says(&self, text: &str) -> &Out {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}\n{self}");
        self
    }

    /// The JSON events (`--log-format json`), one per stdout line.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}"))
            })
            .collect()
    }

    /// The run id of the `run_started` event.
    pub fn run_id(&self) -> String {
        self.events()
            .iter()
            .find(|e| e["event"] == "run_started")
            .and_then(|e| e["run_id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no run_started event\n{self}"))
    }

    /// Steps that started (`step_started`), in order, one entry per attempt.
    pub fn started(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "step_started")
            .filter_map(|e| e["step"].as_str().map(str::to_string))
            .collect()
    }

    /// The outcome of the `run_finished` event.
    pub fn outcome(&self) -> String {
        self.events()
            .iter()
            .rev()
            .find(|e| e["event"] == "run_finished")
            .and_then(|e| e["outcome"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no run_finished event\n{self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit {:?} (signal {:?}) ---\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.signal, self.stdout, self.stderr
        )
    }
}

/// A `cairn` still running: its stdout lines arrive one by one, stderr is kept.
pub struct Live {
    lines: sandbox::Lines,
    pub seen: Vec<String>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Live {
    pub fn spawn(mut command: Command) -> Live {
        let mut lines = sandbox::Lines::spawn(&mut command);
        let stderr = Some(drain(lines.child.stderr.take().expect("stderr")));
        Live {
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.lines.pid()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.lines.child
    }

    /// The next line of stdout, whatever it is (hang protection: [`HANG`]).
    pub fn next_line(&mut self) -> String {
        let line = self.lines.next(HANG).expect("a line on stdout");
        self.seen.push(line.clone());
        line
    }

    /// Reads JSON events until one satisfies `pred` (hang protection: [`HANG`]).
    pub fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + HANG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.lines.next(left) else {
                panic!(
                    "the awaited event never came; seen:\n{}",
                    self.seen.join("\n")
                );
            };
            self.seen.push(line.clone());
            if let Ok(e) = serde_json::from_str::<Value>(&line)
                && pred(&e)
            {
                return e;
            }
        }
    }

    /// Waits for the end (hang protection: [`HANG`]) and gives the whole output.
    pub fn finish(mut self) -> Out {
        let status = wait_or_kill(&mut self.lines.child, HANG);
        let rest = self.lines.rest();
        self.seen.extend(rest);
        let stderr = self
            .stderr
            .take()
            .map(|h| String::from_utf8_lossy(&h.join().expect("stderr reader")).into_owned())
            .unwrap_or_default();
        let mut stdout = self.seen.join("\n");
        stdout.push('\n');
        let Some(status) = status else {
            panic!("cairn hung for {HANG:?} and was killed\nstdout:\n{stdout}\nstderr:\n{stderr}");
        };
        Out::new(status, stdout, stderr)
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after [`HANG`].
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 10 s) until every thread of `pid` is stopped, after a SIGSTOP: `kill` returns
/// before a thread running on another CPU has taken the signal.
pub fn wait_stopped(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        let all_stopped = tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| cairn_procfs::parse(&s))
                .is_none_or(|s| matches!(s.state, 'T' | 't' | 'Z' | 'X'))
        });
        if all_stopped {
            return;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Children of `pid`, from every `/proc/*/stat` (works whatever the kernel's config).
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| cairn_procfs::stat(p).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// A fresh PostgreSQL schema for one test, dropped with everything in it on drop. Its URL
/// puts the schema first in the connection's search_path.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub fn new(stem: &str) -> PgSchema {
        let name = format!("cairn_{stem}_{}", std::process::id());
        pg(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ));
        PgSchema { name }
    }

    pub fn url(&self) -> String {
        format!("{PG_URL}?options=-csearch_path%3D{}", self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        pg(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// Runs SQL on the test database.
pub fn pg(sql: &str) {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(PG_URL)
            .await
            .unwrap_or_else(|e| panic!("connect to {PG_URL}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    });
}

/// Sends `signal` to a process this test started.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("send signal");
}
