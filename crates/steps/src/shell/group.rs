//! The child's process group: spawning it so that it dies with Cairn, and stopping all of it.
//!
//! Every step runs as the leader of a new process group, so one `killpg` reaches the whole
//! tree it started (pipelines, `&` jobs, `xargs -P` workers) unless a process deliberately
//! leaves the group (`setsid`, a double-forking daemon). A step therefore cannot leave a
//! background process behind: whatever is still in its group when the main process exits
//! is stopped too.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

type Job = Box<dyn FnOnce() + Send>;

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
/// Tokio may run us on a blocking-pool thread that exits after 10 s idle, which would SIGKILL
/// a healthy 30-minute `pg_dump`. So every child is forked from one dedicated thread that
/// lives as long as the process: the signal then means "Cairn died", as intended.
fn spawner() -> Option<&'static mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("cairn-spawner".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Spawns `cmd` as the leader of a new process group that receives SIGKILL if Cairn dies.
///
/// Only the direct child gets the death signal (the kernel clears it on fork); if Cairn is
/// killed with SIGKILL, grandchildren survive it. Every orderly path (timeout, cancel, a
/// dropped future, normal exit) kills the whole group.
pub(super) async fn spawn(mut cmd: Command) -> io::Result<Child> {
    let parent = nix::unistd::getpid();
    cmd.process_group(0);
    // SAFETY: the closure runs in the forked child before exec; it only makes two
    // async-signal-safe system calls and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // Cairn may have died between fork and prctl: then nobody would signal us.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
    let Some(sender) = spawner() else {
        return cmd.spawn();
    };
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // The child's pipes and exit notification register with the caller's runtime.
        let _runtime = handle.enter();
        let _ = tx.send(cmd.spawn());
    });
    sender
        .send(job)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.await
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}

/// Kills the group with SIGKILL when dropped while armed: a step future dropped by the
/// engine (its own timeout, a panic elsewhere) must not leave the step's processes running.
pub(super) struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl GroupGuard {
    pub(super) fn new(pgid: Pid) -> Self {
        GroupGuard { pgid, armed: true }
    }
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Whether any live (non-zombie) process is still in group `pgid`.
///
/// `kill(-pgid, 0)` alone is not enough: zombies count for it, and a container's PID 1 may
/// never reap the orphans it inherits. So a positive answer is checked against /proc.
pub(super) fn group_alive(pgid: Pid) -> bool {
    if killpg(pgid, None) == Err(nix::errno::Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(name) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(pgid.as_raw()) && state != Some("Z") && state != Some("X")
    })
}

/// Polls until the group is empty or `limit` has passed; true when it emptied.
async fn wait_group_empty(pgid: Pid, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM to the whole group, `grace` to finish, then SIGKILL; reaps the leader.
pub(super) async fn terminate(
    child: &mut Child,
    pgid: Pid,
    grace: Duration,
) -> io::Result<std::process::ExitStatus> {
    let _ = killpg(pgid, Signal::SIGTERM);
    let started = Instant::now();
    let leader = tokio::time::timeout(grace, child.wait()).await;
    let left = grace.saturating_sub(started.elapsed());
    if leader.is_err() || !wait_group_empty(pgid, left).await {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let status = match leader {
        Ok(status) => status?,
        Err(_) => child.wait().await?,
    };
    // SIGKILL is not instant for a process in uninterruptible sleep: give it a moment.
    wait_group_empty(pgid, Duration::from_secs(1)).await;
    Ok(status)
}

/// After the leader exited: stops whatever it left running in its group.
///
/// The leader is reaped by now, but its number cannot name another group while this one has
/// members, and `killpg` on an empty group fails harmlessly; only a pid wrap-around between the
/// group emptying and our check could misdirect the signal.
pub(super) async fn stop_leftovers(pgid: Pid, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    tracing::debug!(
        pgid = pgid.as_raw(),
        "stopping processes the step left in its group"
    );
    let _ = killpg(pgid, Signal::SIGTERM);
    if !wait_group_empty(pgid, grace).await {
        let _ = killpg(pgid, Signal::SIGKILL);
        wait_group_empty(pgid, Duration::from_secs(1)).await;
    }
}
