//! Reading the process tree from /proc: children, sessions, live descendants.
//!
//! Used both by Cairn (to find a step's processes) and by the spawner process (to stop
//! everything below it), so it allocates and reads files but takes no locks of its own.

/// The process's session and liveness (`/proc/PID/stat`); `None` when it is gone.
pub(super) fn stat(pid: i32) -> Option<cairn_procfs::Stat> {
    cairn_procfs::stat(pid)
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
