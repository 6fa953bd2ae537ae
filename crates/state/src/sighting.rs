//! Liveness across hosts without comparing clocks: a reader judges a run of another host by its
//! heartbeat counter (`heartbeat_seq`, moved by every heartbeat), which it must itself have seen
//! stand still for longer than the lease, measured on this host's `CLOCK_BOOTTIME`.
//!
//! Readers are short-lived processes, so what a host has seen is kept in the store (one
//! sighting per run and observing host): the counter, and when this host first saw it at that
//! value. `CLOCK_BOOTTIME` is one clock for the whole host, never set and never jumping, so a
//! later reader on the same host can measure from an earlier one's sighting; the host's boot id
//! tells a sighting made before a reboot, which is void.

use std::time::Duration;

/// What this host once saw of a run: its heartbeat counter and when (on this host's boot clock)
/// it first saw it at that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sighting {
    /// `/proc/sys/kernel/random/boot_id` of the observing host when it was made.
    pub boot_id: String,
    /// The counter seen.
    pub seq: u64,
    /// `CLOCK_BOOTTIME` in nanoseconds when the counter was first seen at `seq`.
    pub since_ns: u64,
}

/// This host's boot and boot clock, read once per judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Now {
    pub boot_id: String,
    pub ns: u64,
}

impl Now {
    /// The boot id and `CLOCK_BOOTTIME`; `None` where either cannot be read (no `/proc`, not
    /// Linux): such a host never judges a run of another host dead.
    pub(crate) fn read() -> Option<Now> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let boot_id = boot_id.trim().to_string();
        if boot_id.is_empty() {
            return None;
        }
        Some(Now {
            boot_id,
            ns: boot_clock_ns()?,
        })
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn boot_clock_ns() -> Option<u64> {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
    let secs = u64::try_from(t.tv_sec()).ok()?;
    let nanos = u64::try_from(t.tv_nsec()).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boot_clock_ns() -> Option<u64> {
    None
}

/// What a reader learns from one look at a run's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// No usable earlier sighting (none, another boot, the counter moved back, or this host
    /// cannot keep one): nothing can be judged yet.
    First,
    /// The counter moved since the last sighting: the process was alive in between.
    Advanced,
    /// The counter has stood still for this long, by this host's boot clock.
    Still(Duration),
}

/// Compares the run's counter `seq` with this host's earlier sighting. Returns what was seen
/// and the sighting to keep (`None`: keep the earlier one unchanged).
pub(crate) fn look(
    earlier: Option<&Sighting>,
    seq: u64,
    now: Option<&Now>,
) -> (Seen, Option<Sighting>) {
    let Some(now) = now else {
        return (Seen::First, None);
    };
    let fresh = || Sighting {
        boot_id: now.boot_id.clone(),
        seq,
        since_ns: now.ns,
    };
    match earlier {
        Some(e) if e.boot_id == now.boot_id && e.seq == seq && now.ns >= e.since_ns => {
            (Seen::Still(Duration::from_nanos(now.ns - e.since_ns)), None)
        }
        Some(e) if e.boot_id == now.boot_id && seq > e.seq => (Seen::Advanced, Some(fresh())),
        _ => (Seen::First, Some(fresh())),
    }
}

impl Seen {
    /// True once the counter has stood still for longer than `lease`: its writer is gone (or
    /// stalled past the lease, which fencing treats the same).
    pub(crate) fn outlasted(self, lease: Duration) -> bool {
        matches!(self, Seen::Still(d) if d > lease)
    }

    /// How much longer the counter must stand still before `lease` is outlasted.
    pub(crate) fn wait(self, lease: Duration) -> Duration {
        match self {
            Seen::Still(d) => lease.saturating_sub(d),
            Seen::First | Seen::Advanced => lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(boot: &str, ns: u64) -> Now {
        Now {
            boot_id: boot.to_string(),
            ns,
        }
    }

    #[test]
    fn only_a_still_counter_seen_twice_on_one_boot_outlasts_a_lease() {
        let lease = Duration::from_secs(120);
        let (seen, kept) = look(None, 7, Some(&at("b", 1_000)));
        assert_eq!(seen, Seen::First);
        assert!(
            !seen.outlasted(Duration::ZERO),
            "a first sight never judges"
        );
        let first = kept.expect("kept");
        let later = 1_000 + 121 * 1_000_000_000;
        let (seen, kept) = look(Some(&first), 7, Some(&at("b", later)));
        assert_eq!((seen, kept), (Seen::Still(Duration::from_secs(121)), None));
        assert!(seen.outlasted(lease));
        // The counter moved: alive, and measured afresh from now.
        let (seen, kept) = look(Some(&first), 8, Some(&at("b", later)));
        assert_eq!(seen, Seen::Advanced);
        assert_eq!(kept.map(|k| (k.seq, k.since_ns)), Some((8, later)));
        // Another boot, a counter that went back, or a boot clock that went back: void.
        for (seq, now) in [(7, at("c", later)), (6, at("b", later)), (7, at("b", 10))] {
            let (seen, kept) = look(Some(&first), seq, Some(&now));
            assert_eq!(seen, Seen::First, "{seq} {now:?}");
            assert!(kept.is_some());
        }
        // A host that cannot measure never judges.
        assert_eq!(look(Some(&first), 7, None), (Seen::First, None));
    }

    #[test]
    fn waiting_counts_down_from_the_lease() {
        let lease = Duration::from_secs(120);
        assert_eq!(Seen::First.wait(lease), lease);
        assert_eq!(
            Seen::Still(Duration::from_secs(20)).wait(lease),
            Duration::from_secs(100)
        );
        assert_eq!(Seen::Still(lease * 2).wait(lease), Duration::ZERO);
    }

    #[test]
    fn this_linux_host_has_a_boot_clock() {
        let a = Now::read().expect("boot id and CLOCK_BOOTTIME");
        let b = Now::read().expect("again");
        assert_eq!(a.boot_id, b.boot_id);
        assert!(b.ns >= a.ns);
    }
}
