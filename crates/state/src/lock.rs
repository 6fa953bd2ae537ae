//! Liveness: is a run's process still there, and is a lock free to take. Every backend applies
//! these same rules, so SQLite, PostgreSQL and the memory store cannot disagree about them.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::types::{LockHolder, LockInfo, RunStatus};

/// A `running` run whose last heartbeat is older than this is reported as `interrupted`, whatever
/// its host: the engine must call [`crate::Store::heartbeat`] well within it (every 15 s is plenty).
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// How often the engine should heartbeat: an eighth of [`STALE_AFTER`].
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

// A lease longer than this is clamped: timestamps past year 9999 do not fit RFC 3339 text.
const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// True if a process with this pid exists on this host (it may belong to another user).
/// A zombie counts as dead. Off Unix this cannot be known and is assumed true, so only leases
/// and heartbeats decide there.
pub fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        use nix::sys::signal::kill;
        use nix::unistd::Pid;

        // pid 0 and negative pids address process groups, never one process.
        let Ok(raw) = i32::try_from(pid) else {
            return false;
        };
        if raw <= 0 {
            return false;
        }
        match kill(Pid::from_raw(raw), None) {
            // EPERM: the process exists but belongs to someone else.
            Ok(()) | Err(Errno::EPERM) => !is_zombie(pid),
            Err(_) => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

// A process that has exited but was not reaped by its parent still answers kill(pid, 0).
#[cfg(unix)]
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the command name, which is in parentheses and may hold spaces.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// This machine's host name, as recorded in [`crate::RunRecord::host`] and
/// [`crate::LockHolder::host`]; use it when building those so liveness checks compare like
/// with like.
pub fn current_host() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        #[cfg(unix)]
        if let Ok(name) = nix::unistd::gethostname()
            && let Ok(name) = name.into_string()
            && !name.is_empty()
        {
            return name;
        }
        std::env::var("HOSTNAME")
            .or_else(|_| std::env::var("COMPUTERNAME"))
            .unwrap_or_else(|_| "localhost".to_string())
    })
    .clone()
}

/// The present time at the precision every backend stores (microseconds), so a record read
/// back compares equal to the one written.
pub fn now() -> DateTime<Utc> {
    trunc(Utc::now())
}

/// Truncates to microseconds, the precision of PostgreSQL's TIMESTAMPTZ.
pub(crate) fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

/// `now + lease`, clamped to a representable time.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let delta = TimeDelta::from_std(lease.min(MAX_LEASE)).unwrap_or(TimeDelta::MAX);
    trunc(now.checked_add_signed(delta).unwrap_or(now))
}

/// The lease as stored, in milliseconds.
pub(crate) fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.min(MAX_LEASE).as_millis()).unwrap_or(i64::MAX)
}

/// The status a reader should see: a `running` run whose process is gone is `interrupted`.
/// Gone means: on this host, its pid is not alive; on any host, no heartbeat for
/// [`STALE_AFTER`] (which also covers a pid that was reused by another process).
pub(crate) fn effective_status(
    status: RunStatus,
    host: &str,
    pid: u32,
    heartbeat_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> RunStatus {
    if status != RunStatus::Running {
        return status;
    }
    let stale = now.signed_duration_since(heartbeat_at)
        > TimeDelta::from_std(STALE_AFTER).unwrap_or(TimeDelta::MAX);
    if stale || (host == current_host() && !pid_alive(pid)) {
        RunStatus::Interrupted
    } else {
        RunStatus::Running
    }
}

/// The run that a lock row names, as a reader sees it: its effective status and the process
/// that holds its claim (which may differ from the process named in the lock row).
#[derive(Clone, Debug)]
pub(crate) struct HolderRun {
    pub status: RunStatus,
    pub host: String,
    pub pid: u32,
}

/// Whether `requester` may take the lock `held`. `holder` is the holder run as it is now,
/// `None` if that run is not in the store.
///
/// Free when: the requester's run already holds it (a resumed run takes its own lock back),
/// unless that run is running in another process than the requester: the lock row may name an
/// earlier process of the run (or a second resume that took it before losing the claim), so
/// what counts is who holds the run's claim now (a second resume, which its claim will
/// refuse, must not make the lock name itself); the holder run finished (succeeded, failed,
/// interrupted); or, unless the holder is paused (a paused run keeps its lock however long the
/// approval takes), the lease ran out or the holder's pid is dead on this host.
pub(crate) fn lock_is_free(
    held: &LockInfo,
    holder: Option<&HolderRun>,
    requester: &LockHolder,
    now: DateTime<Utc>,
) -> bool {
    let status = holder.map(|h| h.status);
    if held.run_id == requester.run_id {
        let same_process = held.host == requester.host && held.pid == requester.pid;
        let owns_run = holder.is_some_and(|h| h.host == requester.host && h.pid == requester.pid);
        return same_process || owns_run || status != Some(RunStatus::Running);
    }
    match status {
        Some(s) if s.is_finished() => return true,
        Some(RunStatus::Paused) => return false,
        _ => {}
    }
    held.lease_until <= now || (held.host == current_host() && !pid_alive(held.pid))
}

/// The `since` of a lock about to be (re)taken from `held`: re-taking one's own lock keeps
/// the time it was first taken; taking over another run's lock starts now, and is logged,
/// since it means that run died, finished without releasing, or let its lease run out.
pub(crate) fn taken_since(
    held: &LockInfo,
    requester_run: &str,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if held.run_id == requester_run {
        return held.since;
    }
    tracing::info!(
        lock = %held.name,
        from_run = %held.run_id,
        from_host = %held.host,
        from_pid = held.pid,
        to_run = %requester_run,
        "lock taken over from a run that no longer holds it"
    );
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_nonsense_pids_are_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn huge_leases_are_clamped() {
        let t = now();
        assert!(lease_end(t, Duration::MAX) > t);
        assert!(lease_ms(Duration::MAX) > 0);
    }
}
