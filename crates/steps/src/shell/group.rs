//! A step's processes: stopping all of them, whatever group or session they moved to.
//!
//! Every step runs as the leader of a new session, started by the spawner process, which is
//! a child subreaper. A step's processes are therefore the leader's descendants plus the
//! orphans of its session, which the kernel reparents to the spawner: a job put in a group of
//! its own (`set -m; sleep 100 &`) is still found and stopped. A process that also left the
//! session (`setsid`) is found while its parent lives; once orphaned it cannot be told apart
//! from another step's, and is stopped when no other step runs, or when Cairn exits.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::spawner::{Process, Spawner};

/// A running step process and the means to stop it and everything it started.
pub(super) struct Group {
    spawner: &'static Spawner,
    pub(super) leader: i32,
    exit: super::spawner::Exit,
    status: Option<ExitStatus>,
    armed: bool,
    /// Also stop orphans that left every session, when no other step runs (see module docs).
    sweep: bool,
    /// Every process signalled so far: one that left the session while dying is still waited
    /// for (a pid is not reused within the few seconds this lasts).
    signalled: std::collections::HashSet<i32>,
}

impl Group {
    pub(super) fn new(spawner: &'static Spawner, process: Process) -> (Group, Pipes) {
        let pipes = Pipes {
            stdout: process.stdout,
            stderr: process.stderr,
        };
        let group = Group {
            spawner,
            leader: process.pid,
            exit: process.exit,
            status: None,
            armed: true,
            sweep: false,
            signalled: std::collections::HashSet::new(),
        };
        (group, pipes)
    }

    /// Waits for the leader to end (cancel-safe).
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let raw = self.exit.wait().await?;
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        Ok(status)
    }

    fn members(&self) -> Vec<i32> {
        let mut members = self
            .spawner
            .members(self.leader, self.status.is_some(), self.sweep);
        for &pid in &self.signalled {
            if !members.contains(&pid) && super::tree::stat(pid).is_some_and(|s| s.live()) {
                members.push(pid);
            }
        }
        members
    }

    /// Every process of the step, stopped (SIGSTOP): the tree is looked at again until no new
    /// process shows up, so that a process forking or calling `setsid` while we look cannot
    /// slip out between the look and what is done to them. The caller sends them SIGCONT.
    fn freeze(&mut self) -> Vec<i32> {
        let mut frozen: Vec<i32> = Vec::new();
        for _ in 0..100 {
            let fresh: Vec<i32> = self
                .members()
                .into_iter()
                .filter(|p| !frozen.contains(p))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for &pid in &fresh {
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            }
            frozen.extend(fresh);
        }
        frozen
    }

    /// Sends `signal` to every process of the step (frozen first, then let go on with SIGCONT
    /// to act on it); returns them.
    fn signal(&mut self, signal: Signal) -> Vec<i32> {
        let frozen = self.freeze();
        self.send(&frozen, signal);
        frozen
    }

    fn send(&mut self, frozen: &[i32], signal: Signal) {
        for &pid in frozen {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        if signal != Signal::SIGKILL {
            for &pid in frozen {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
        }
        self.signalled.extend(frozen);
    }

    /// Polls until no member is left or `limit` has passed; true when none is left. With
    /// `kill`, SIGKILLs every member found on the way (a process may fork in between).
    async fn wait_empty(&mut self, limit: Duration, kill: bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if self.status.is_none() {
                // Reap news of the leader without waiting for it.
                if let Some(raw) = self.exit.try_wait() {
                    self.status = Some(ExitStatus::from_raw(raw));
                }
            }
            let left = if kill {
                self.signal(Signal::SIGKILL).len()
            } else {
                self.members().len()
            };
            if left == 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to every process of the step, `grace` to finish, then SIGKILL; reaps the leader.
    pub(super) async fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let started = Instant::now();
        let leader = tokio::time::timeout(grace, self.wait()).await;
        let left = grace.saturating_sub(started.elapsed());
        if leader.is_err() || !self.wait_empty(left, false).await {
            self.signal(Signal::SIGKILL);
        }
        let status = match leader {
            Ok(status) => status?,
            Err(_) => self.wait().await?,
        };
        // SIGKILL is not instant for a process in uninterruptible sleep: give it a moment.
        self.wait_empty(Duration::from_secs(1), true).await;
        self.armed = false;
        Ok(status)
    }

    /// After the leader exited: stops whatever it left running; names what it stopped.
    pub(super) async fn stop_leftovers(&mut self, grace: Duration) -> Vec<Leftover> {
        self.sweep = true;
        let frozen = self.freeze();
        let named = Leftover::name(&frozen);
        self.send(&frozen, Signal::SIGTERM);
        if !frozen.is_empty() {
            tracing::debug!(
                leader = self.leader,
                "stopping processes the step left behind"
            );
            if !self.wait_empty(grace, false).await {
                self.wait_empty(Duration::from_secs(1), true).await;
            }
        }
        self.armed = false;
        named
    }

    /// What the leader left running, without touching it (a detached step asks whether it
    /// may be released).
    pub(super) fn leftovers(&mut self) -> Vec<Leftover> {
        self.sweep = true;
        Leftover::name(&self.members())
    }

    /// After the leader exited: leaves whatever it left running to run on, beyond the step
    /// and beyond Cairn; names them.
    pub(super) fn release(&mut self) -> std::io::Result<Vec<Leftover>> {
        self.sweep = true;
        let frozen = self.freeze();
        let named = Leftover::name(&frozen);
        let released = self.spawner.release(&frozen);
        for &pid in &frozen {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        released?;
        self.armed = false;
        Ok(named)
    }
}

/// A process a step left running when its main process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Leftover {
    pub(super) pid: i32,
    /// Its program's name (`/proc/PID/comm`), not its command line (which may hold secrets).
    pub(super) command: String,
}

impl Leftover {
    fn name(pids: &[i32]) -> Vec<Leftover> {
        let mut out: Vec<Leftover> = pids
            .iter()
            .map(|&pid| Leftover {
                pid,
                command: super::tree::command_name(pid),
            })
            .collect();
        out.sort_by_key(|l| l.pid);
        out
    }
}

/// A step future dropped by the engine (its own timeout, a panic elsewhere) must not leave the
/// step's processes running.
impl Drop for Group {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGKILL);
            if self.status.is_none() {
                self.spawner.forget(self.leader);
            }
        }
        self.spawner.finished(self.leader);
    }
}

/// The read ends of the step's stdout and stderr.
pub(super) struct Pipes {
    pub(super) stdout: tokio::net::unix::pipe::Receiver,
    pub(super) stderr: tokio::net::unix::pipe::Receiver,
}
