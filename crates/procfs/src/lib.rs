//! What `/proc/PID/stat` says about a process, read by one parser for every crate: the state
//! store's liveness checks (is the run's process still the one that started it?) and the
//! spawner's process tree (which processes a step left behind).
//!
//! The command name (field 2) is in parentheses and may itself hold spaces and `)`: the last
//! `)` of the line ends it, and the fields after it are counted from there.
//!
//! ```
//! let me = cairn_procfs::stat(std::process::id() as i32).expect("this process has a stat");
//! assert!(me.live());
//! assert!(cairn_procfs::parse("1 (a) b) c) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0").is_some());
//! ```

/// The fields of `/proc/PID/stat` Cairn reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The state letter (`R`, `S`, `D`, `Z`, `X`, ...), field 3.
    pub state: char,
    /// The parent's pid, field 4.
    pub ppid: i32,
    /// The process group, field 5.
    pub pgrp: i32,
    /// The session, field 6.
    pub session: i32,
    /// When it started, in clock ticks after boot, field 22: with the pid it names one process
    /// for as long as the host is up (a reused pid has another start time).
    pub start: u64,
}

impl Stat {
    /// Not a zombie (nor dead): it can still run code.
    pub fn live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Reads `/proc/PID/stat`; `None` when there is no such process (or no `/proc`).
pub fn stat(pid: i32) -> Option<Stat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses the text of a `/proc/PID/stat` file.
pub fn parse(text: &str) -> Option<Stat> {
    let mut f = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    // Fields 7 to 21, then starttime.
    let start = f.nth(15)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgrp,
        session,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        let line =
            "4242 (my (odd) ) name) Z 1 4242 4241 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(
            parse(line),
            Some(Stat {
                state: 'Z',
                ppid: 1,
                pgrp: 4242,
                session: 4241,
                start: 987654,
            })
        );
        assert!(!parse(line).is_some_and(|s| s.live()));
    }

    #[test]
    fn a_truncated_or_foreign_line_is_none() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("12 (x) S 1 2"), None);
        assert_eq!(parse("12 x S 1 2 3"), None);
    }

    #[test]
    fn this_process_is_read() {
        let me = stat(std::process::id() as i32).expect("a stat");
        assert!(me.live());
        assert_eq!(me.ppid, std::os::unix::process::parent_id() as i32);
        assert!(me.start > 0);
    }
}
