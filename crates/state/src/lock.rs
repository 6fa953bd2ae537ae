//! Liveness: is a run's process still there, and is a lock free to take. Every backend applies
//! these same rules, so SQLite, PostgreSQL and the memory store cannot disagree about them.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::sighting::Seen;
use crate::types::{LockHolder, LockInfo, RunRecord, RunStatus};

/// A `running` run of another host whose heartbeat counter a reader has seen stand still for
/// longer than this (by the reader's own boot clock) is reported as `interrupted`: the engine
/// must call [`crate::Store::heartbeat`] well within it (every 15 s is plenty). Tests shorten it
/// with `CAIRN_STALE_AFTER_MS` (see [`stale_after`]).
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// [`STALE_AFTER`], or the milliseconds in `CAIRN_STALE_AFTER_MS` when that is set to a number
/// (for tests that must see a run judged dead without waiting two minutes), read once.
pub fn stale_after() -> Duration {
    static STALE: OnceLock<Duration> = OnceLock::new();
    *STALE.get_or_init(|| {
        std::env::var("CAIRN_STALE_AFTER_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or(STALE_AFTER, Duration::from_millis)
    })
}

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
    proc_stat(pid).is_some_and(|s| !s.live())
}

/// Reads `/proc/PID/stat`; `None` when there is no such process (or no `/proc`).
fn proc_stat(pid: u32) -> Option<cairn_procfs::Stat> {
    i32::try_from(pid).ok().and_then(cairn_procfs::stat)
}

/// When the process `pid` of this host started, in clock ticks after boot (`/proc/PID/stat`);
/// `None` if it is not running or the host has no `/proc`. With the pid it names one process
/// for as long as the host is up: a reused pid has another start time.
pub fn process_start(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start)
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

/// What decides whether a `running` run's process is still there.
pub(crate) struct Liveness<'a> {
    pub status: RunStatus,
    pub host: &'a str,
    pub pid: u32,
    pub pid_start: Option<u64>,
    pub heartbeat_at: DateTime<Utc>,
    /// For a run of another host: what this host has seen of its heartbeat counter.
    pub seen: Seen,
}

/// True for a run whose liveness only its heartbeat counter can tell: `running` on another host.
pub(crate) fn needs_sighting(status: RunStatus, host: &str) -> bool {
    status == RunStatus::Running && host != current_host()
}

impl Liveness<'_> {
    /// The status a reader should see: a `running` run whose process is gone is `interrupted`.
    ///
    /// On the run's own host no clock is read: the run is alive exactly while a process with
    /// its pid and its start time exists (and is not a zombie), so a clock that jumps forward
    /// cannot make a live run look dead, and a reused pid cannot make a dead one look alive.
    /// Only a record without a start time (written before schema version 4, or by a host
    /// without `/proc`) falls back to the pid and the heartbeat's age. From another host, no
    /// clock of the run's host is compared either: the run is gone once this host has seen its
    /// heartbeat counter stand still for longer than [`stale_after`] (see [`crate::sighting`]);
    /// a first sight never judges it gone.
    pub(crate) fn effective(&self, now: DateTime<Utc>) -> RunStatus {
        if self.status != RunStatus::Running {
            return self.status;
        }
        let alive = if self.host == current_host() {
            match self.pid_start {
                Some(start) => proc_stat(self.pid).is_some_and(|s| s.start == start && s.live()),
                None => pid_alive(self.pid) && !stale(self.heartbeat_at, now),
            }
        } else {
            !self.seen.outlasted(stale_after())
        };
        if alive {
            RunStatus::Running
        } else {
            RunStatus::Interrupted
        }
    }
}

fn stale(heartbeat_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(heartbeat_at)
        > TimeDelta::from_std(stale_after()).unwrap_or(TimeDelta::MAX)
}

/// The run as a reader should see it: [`Liveness::effective`], and for a run of another host
/// still `running`, how long its counter must yet stand still before it can be judged gone
/// ([`RunRecord::unconfirmed`]) unless this host has just seen it move.
pub(crate) fn judged(mut run: RunRecord, seen: Seen, now: DateTime<Utc>) -> RunRecord {
    run.status = Liveness {
        status: run.status,
        host: &run.host,
        pid: run.pid,
        pid_start: run.pid_start,
        heartbeat_at: run.heartbeat_at,
        seen,
    }
    .effective(now);
    run.unconfirmed = match seen {
        Seen::First | Seen::Still(_) if needs_sighting(run.status, &run.host) => {
            Some(seen.wait(stale_after()))
        }
        _ => None,
    };
    run
}

/// The run that a lock row names, as a reader sees it: its effective status and the process
/// that holds its claim (which may differ from the process named in the lock row).
#[derive(Clone, Debug)]
pub(crate) struct HolderRun {
    pub status: RunStatus,
    pub host: String,
    pub pid: u32,
    /// What this host has seen of its heartbeat counter (for a run of another host).
    pub seen: Seen,
}

/// Whether `requester` may take the lock `held`, taken for `lease`. `holder` is the holder run as
/// it is now, `None` if that run is not in the store.
///
/// Free when: the requester's run already holds it (a resumed run takes its own lock back),
/// unless that run is running in another process than the requester: the lock row may name an
/// earlier process of the run (or a second resume that took it before losing the claim), so
/// what counts is who holds the run's claim now (a second resume, which its claim will
/// refuse, must not make the lock name itself); the holder run finished (succeeded, failed,
/// interrupted); or the holder runs on another host and this host has seen its heartbeat
/// counter (which renews the lease) stand still for longer than the lease. A paused run keeps
/// its lock however long the approval takes. Only a lock whose run is not in the store (no
/// counter renews it) falls back to the pid on this host and `lease_until` by this host's clock.
pub(crate) fn lock_is_free(
    held: &LockInfo,
    lease: Duration,
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
    match holder {
        Some(h) if h.status.is_finished() => return true,
        Some(h) if h.status == RunStatus::Paused => return false,
        // Running on this host: its process was found by pid and start time, no clock read, so
        // a lease that looks run out (a clock jumped forward) does not free its lock.
        Some(h) if h.status == RunStatus::Running && h.host == current_host() => return false,
        // Running on another host: no clock of that host is compared; its counter must have
        // stood still, as this host saw it, for longer than the lease.
        Some(h) if h.status == RunStatus::Running => return h.seen.outlasted(lease),
        Some(_) => return false,
        None => {}
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
    fn this_process_has_a_start_time() {
        assert!(process_start(std::process::id()).is_some());
        assert_eq!(process_start(u32::MAX), None);
    }

    #[test]
    fn huge_leases_are_clamped() {
        let t = now();
        assert!(lease_end(t, Duration::MAX) > t);
        assert!(lease_ms(Duration::MAX) > 0);
    }
}
