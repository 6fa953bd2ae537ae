//! Reading the process tree from /proc: children, sessions, live descendants.
//!
//! Used both by Cairn (to find a step's processes) and by the spawner process (to stop
//! everything below it), so it allocates and reads files but takes no locks of its own.

use cairn_procfs::Stat;

/// The process's session, liveness and start (`/proc/PID/stat`); `None` when it is gone.
pub(super) fn stat(pid: i32) -> Option<Stat> {
    cairn_procfs::stat(pid)
}

/// The process's name (`/proc/PID/comm`: the program's file name, at most 15 bytes), or `?`.
pub(super) fn command_name(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// A process a detached step left running, released to run on: never stopped by Cairn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Released {
    pub(super) pid: i32,
    pub(super) start: u64,
}

impl Released {
    /// The process as it is now, if it is still the one released (same pid and start time).
    fn alive(&self) -> Option<Stat> {
        stat(self.pid).filter(|s| s.live() && s.start == self.start)
    }
}

/// Whether `pid`, a child of the spawner, is spared: a released process, or an orphan of a
/// released process's session (a worker its daemon forked, whose parent then exited). What
/// a released process starts while it lives is below it, so never looked at as a root.
pub(super) fn spared(pid: i32, released: &[Released]) -> bool {
    let Some(me) = stat(pid) else {
        return false;
    };
    released.iter().any(|r| {
        r.alive()
            .is_some_and(|s| (r.pid == pid && s.start == me.start) || s.session == me.session)
    })
}

/// Drops the released processes that are gone (so that their pids may be reused safely).
pub(super) fn prune(released: &mut Vec<Released>) {
    released.retain(|r| r.alive().is_some());
}

/// The direct children of every thread of `pid` (a child belongs to the thread that made it).
pub(super) fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        out.extend(children_of_thread(&task.path().join("children")));
    }
    out
}

/// The direct children of one thread, from its `/proc/PID/task/TID/children` file
/// (`children_path`); for a single-threaded process, all of them in one file read, where
/// [`children`] lists the threads first.
pub(super) fn children_of_thread(children_path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(children_path)
        .map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `roots` and all their descendants that are still live.
///
/// A process that forks while this runs may be missed: callers signal what they found and
/// look again until nothing is left.
pub(super) fn live_subtree(roots: &[i32]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo: Vec<i32> = roots.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if stat(pid).is_some_and(|s| s.live()) {
            out.push(pid);
        }
        todo.extend(children(pid));
    }
    out
}
