//! Cairn's side of the spawner process: start it once, ask it for processes, hear of their end.
//!
//! Why a separate process: a `pre_exec` hook (for PR_SET_PDEATHSIG) makes the standard library
//! `fork` the whole of Cairn for every step, a cost that grows with Cairn's memory; and a
//! process killed with SIGKILL cannot stop what its steps left behind. The spawner is forked
//! while Cairn is small, starts steps with `posix_spawn` (no page tables copied), and is a
//! child subreaper, so that everything a step starts stays below it. When Cairn exits or dies,
//! its end of the socket closes and the spawner SIGKILLs everything below it.
//!
//! Each request carries a status pipe of its own, on which the spawner answers and later
//! reports the process's end: the step that asked reads it in its own runtime, so no thread
//! stands between the spawner and the step (one thread routing every reply cost two thread
//! wake-ups per step).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::protocol::{self, Reply, Spec};

/// What Cairn knows of the processes it asked for. Only the step that asked reads its replies
/// (on a status pipe of its own), so this table is the one view of every step at once.
#[derive(Default)]
struct Table {
    /// Requests sent whose reply has not been read yet: a process may exist that is in no
    /// step's hands so far.
    pending: HashSet<u64>,
    /// Step processes started and not yet known to have ended (their pid is their session id).
    leaders: HashSet<i32>,
    /// The leaders of the steps not finished yet: a step whose main process ended is still
    /// stopping (or releasing) what it left until its group is dropped.
    active: HashSet<i32>,
    /// Processes detached steps left running: no step's any more, never stopped.
    released: Vec<super::tree::Released>,
}

pub(super) struct Spawner {
    sock: OwnedFd,
    /// `/proc/PID/task/PID/children` of the spawner, which has one thread (it is forked and
    /// starts none): where the orphans of finished steps are found.
    children: PathBuf,
    next_id: AtomicU64,
    table: Mutex<Table>,
    /// Every step's stdin, opened once.
    null: std::fs::File,
}

static SPAWNER: OnceLock<Result<Spawner, String>> = OnceLock::new();

/// Starts the spawner process now. Call it early in `main`, before any thread or runtime
/// exists and while the process is small; otherwise it is started on the first step.
pub fn start() -> io::Result<()> {
    get().map(|_| ())
}

pub(super) fn get() -> io::Result<&'static Spawner> {
    SPAWNER
        .get_or_init(|| launch().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the process spawner: {e}")))
}

fn launch() -> io::Result<Spawner> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: the child runs only `server::serve`, which allocates and makes system calls
    // (see its module docs) and never returns.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            // The spawner is handed every step's environment, secrets included: it is never
            // dumpable. (A step's own program is: `execve` resets the attribute.)
            #[cfg(target_os = "linux")]
            let _ = nix::sys::prctl::set_dumpable(false);
            super::server::serve(theirs)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            Ok(Spawner {
                sock: ours,
                children: PathBuf::from(format!("/proc/{child}/task/{child}/children")),
                next_id: AtomicU64::new(0),
                table: Mutex::new(Table::default()),
                null,
            })
        }
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

fn gone() -> io::Error {
    io::Error::other("the process spawner is gone")
}

/// The read end of a step's status pipe: the spawner writes the reply to the request
/// (started, or failed) and later the process's end, then closes it.
struct Status {
    rx: pipe::Receiver,
    buf: [u8; protocol::REPLY_LEN],
    got: usize,
}

impl Status {
    /// The next reply; `None` when the spawner closed the pipe without one (it is gone).
    /// Cancel-safe: a reply read in part is kept for the next call.
    async fn next(&mut self) -> io::Result<Option<Reply>> {
        while self.got < self.buf.len() {
            match self.rx.read(&mut self.buf[self.got..]).await? {
                0 => return Ok(None),
                n => self.got += n,
            }
        }
        self.got = 0;
        Ok(Reply::decode(&self.buf))
    }

    /// The next reply if one is there now.
    fn try_next(&mut self) -> Option<Reply> {
        while self.got < self.buf.len() {
            match self.rx.try_read(&mut self.buf[self.got..]) {
                Ok(n) if n > 0 => self.got += n,
                _ => return None,
            }
        }
        self.got = 0;
        Reply::decode(&self.buf)
    }
}

/// How a step process ends: the spawner's report of its wait status.
pub(super) struct Exit {
    status: Status,
    pid: i32,
    table: &'static Mutex<Table>,
}

impl Exit {
    /// The raw wait status once the process has ended (cancel-safe).
    pub(super) async fn wait(&mut self) -> io::Result<i32> {
        loop {
            match self.status.next().await? {
                Some(reply) => {
                    if let Some(status) = self.ended(reply) {
                        return Ok(status);
                    }
                }
                None => return Err(gone()),
            }
        }
    }

    /// The raw wait status if the end was reported already.
    pub(super) fn try_wait(&mut self) -> Option<i32> {
        while let Some(reply) = self.status.try_next() {
            if let Some(status) = self.ended(reply) {
                return Some(status);
            }
        }
        None
    }

    fn ended(&self, reply: Reply) -> Option<i32> {
        match reply {
            Reply::Exited { pid, status } if pid == self.pid => {
                lock(self.table).leaders.remove(&pid);
                Some(status)
            }
            _ => None,
        }
    }
}

/// A started step process: the leader of its own session.
pub(super) struct Process {
    pub(super) pid: i32,
    pub(super) exit: Exit,
    pub(super) stdout: pipe::Receiver,
    pub(super) stderr: pipe::Receiver,
}

/// Takes a request off the pending list if its reply is never read (the step was dropped).
struct Pending<'a> {
    table: &'a Mutex<Table>,
    id: u64,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.table).pending.remove(&self.id);
        }
    }
}

/// What to start. `program` is looked up in the `PATH` of `env` when it has no slash.
pub(super) struct Launch<'a> {
    pub(super) program: &'a OsStr,
    pub(super) args: &'a [&'a OsStr],
    pub(super) env: &'a [(String, String)],
    pub(super) cwd: Option<&'a Path>,
    /// Inherit only [`KEPT_FOR_DETACHED`] of Cairn's environment (then `env`), not all of it.
    pub(super) clean_env: bool,
}

/// What a detached step's process keeps of Cairn's environment: where programs are, who and
/// where the user is, language and time zone. Nothing else (a secret Cairn read from its
/// environment, a token exported in the operator's shell) outlives the step in a daemon.
pub const KEPT_FOR_DETACHED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

fn kept_for_detached(name: &OsStr) -> bool {
    KEPT_FOR_DETACHED.iter().any(|k| OsStr::new(k) == name) || name.as_bytes().starts_with(b"LC_")
}

impl Spawner {
    /// Starts a process with stdin on /dev/null and both outputs piped back.
    pub(super) async fn spawn(&'static self, launch: &Launch<'_>) -> io::Result<Process> {
        let env = environment(launch.env, launch.clean_env);
        let path = env
            .iter()
            .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
            .map(OsStr::from_bytes);
        let program = resolve(launch.program, path)?;
        let spec = Spec {
            program: program.into_os_string().into_vec(),
            args: std::iter::once(launch.program)
                .chain(launch.args.iter().copied())
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            env: env.into_iter().map(OsString::into_vec).collect(),
            cwd: launch.cwd.map(|c| c.as_os_str().as_bytes().to_vec()),
        };
        if spec
            .args
            .iter()
            .chain(&spec.env)
            .chain(spec.cwd.as_ref())
            .any(|s| s.contains(&0))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an argument or environment value contains a NUL byte",
            ));
        }
        let memfd = memfd(&spec.encode())?;
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let stdout = pipe::Receiver::from_owned_fd(out_r)?;
        let stderr = pipe::Receiver::from_owned_fd(err_r)?;
        let mut status = Status {
            rx: pipe::Receiver::from_owned_fd(status_r)?,
            buf: [0; protocol::REPLY_LEN],
            got: 0,
        };

        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.table).pending.insert(id);
        let mut pending = Pending {
            table: &self.table,
            id,
            armed: true,
        };
        let head = protocol::Request::Spawn { id }.encode();
        let fds = [
            memfd.as_raw_fd(),
            self.null.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
            status_w.as_raw_fd(),
        ];
        let sent = sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[io::IoSlice::new(&head)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        // Our copies of the write ends must close, or the pipes never reach end of file.
        drop((memfd, out_w, err_w, status_w));
        if let Err(e) = sent {
            return Err(io::Error::other(format!(
                "the process spawner is gone: {e}"
            )));
        }
        let pid = match status.next().await? {
            Some(Reply::Spawned { id: got, pid }) if got == id => {
                // One step under the lock: never neither pending nor a leader.
                let mut t = lock(&self.table);
                t.pending.remove(&id);
                t.leaders.insert(pid);
                t.active.insert(pid);
                pending.armed = false;
                pid
            }
            Some(Reply::Failed { id: got, errno }) if got == id => {
                return Err(io::Error::from_raw_os_error(errno));
            }
            Some(_) => return Err(io::Error::other("the process spawner answered out of turn")),
            None => return Err(gone()),
        };
        Ok(Process {
            pid,
            exit: Exit {
                status,
                pid,
                table: &self.table,
            },
            stdout,
            stderr,
        })
    }

    /// Every live process of the step led by `leader`: the leader's descendants, and the
    /// orphans of its session that were reparented to the spawner. With `orphans_of_all`, also
    /// the orphans that left every session (`setsid`) — right only when no other step runs.
    /// `leader_ended` says the leader was reaped: its pid must not be followed any more.
    pub(super) fn members(
        &self,
        leader: i32,
        leader_ended: bool,
        orphans_of_all: bool,
    ) -> Vec<i32> {
        let t = lock(&self.table);
        let mut roots = Vec::new();
        if !leader_ended {
            roots.push(leader);
        }
        let others_run = t.active.iter().any(|&l| l != leader) || !t.pending.is_empty();
        for child in super::tree::children_of_thread(&self.children) {
            if child == leader
                || t.leaders.contains(&child)
                || super::tree::spared(child, &t.released)
            {
                continue;
            }
            match super::tree::stat(child) {
                Some(s) if s.session == leader || (orphans_of_all && !others_run) => {
                    roots.push(child);
                }
                _ => {}
            }
        }
        // Read while the table is locked, so that no step starts in between and gets taken
        // for an orphan.
        super::tree::live_subtree(&roots)
    }

    /// Leaves these processes running: no step's `members` names them any more, and the
    /// spawner does not stop them when Cairn goes away. Told to the spawner before this
    /// returns (a Cairn killed after it keeps them released).
    pub(super) fn release(&self, pids: &[i32]) -> io::Result<Vec<i32>> {
        let mut t = lock(&self.table);
        super::tree::prune(&mut t.released);
        let processes: Vec<super::tree::Released> = pids
            .iter()
            .take(protocol::MAX_RELEASED)
            .filter_map(|&pid| {
                let s = super::tree::stat(pid).filter(|s| s.live())?;
                Some(super::tree::Released {
                    pid,
                    start: s.start,
                })
            })
            .collect();
        let request = protocol::Request::Release {
            processes: processes.iter().map(|r| (r.pid, r.start)).collect(),
        };
        let bytes = request.encode();
        nix::sys::socket::send(self.sock.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| io::Error::other(format!("the process spawner is gone: {e}")))?;
        t.released.extend(&processes);
        Ok(processes.iter().map(|r| r.pid).collect())
    }

    /// Forgets a step process whose wait was abandoned (a dropped step future).
    pub(super) fn forget(&self, leader: i32) {
        lock(&self.table).leaders.remove(&leader);
    }

    /// The step led by `leader` is over: its group was dropped.
    pub(super) fn finished(&self, leader: i32) {
        lock(&self.table).active.remove(&leader);
    }
}

/// Cairn's environment (with `clean`, only what [`KEPT_FOR_DETACHED`] names) with the step's
/// additions; later entries win.
fn environment(extra: &[(String, String)], clean: bool) -> Vec<OsString> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !clean || kept_for_detached(k))
        .filter(|(k, _)| !extra.iter().any(|(e, _)| OsStr::new(e) == k))
        .collect();
    let mut seen = HashSet::new();
    for (k, v) in extra.iter().rev() {
        if seen.insert(k) {
            vars.push((k.into(), v.into()));
        }
    }
    vars.into_iter()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect()
}

/// The file `exec` would run: `program` itself when it holds a slash, else the first
/// executable file of that name in `path` (the step's PATH, as a shell would search it).
fn resolve(program: &OsStr, path: Option<&OsStr>) -> io::Result<PathBuf> {
    if program.is_empty() {
        return Err(io::ErrorKind::NotFound.into());
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut denied = false;
    for dir in std::env::split_paths(path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if !candidate.is_file() {
            continue;
        }
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        denied = true;
    }
    Err(if denied {
        io::ErrorKind::PermissionDenied.into()
    } else {
        io::ErrorKind::NotFound.into()
    })
}

fn memfd(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(c"cairn-spawn", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_searches_the_given_path() {
        let bash = resolve(
            OsStr::new("bash"),
            Some(OsStr::new("/nonexistent:/usr/bin:/bin")),
        )
        .expect("bash");
        assert!(bash.ends_with("bash"), "{bash:?}");
        let e = resolve(OsStr::new("cairn-no-such-tool"), None).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            resolve(OsStr::new("./x"), None).expect("as is"),
            PathBuf::from("./x")
        );
        assert_eq!(
            resolve(OsStr::new(""), None).expect_err("empty").kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn the_step_environment_overrides_cairns() {
        let env = environment(
            &[
                ("PATH".into(), "/x".into()),
                ("CAIRN_T".into(), "1".into()),
                ("CAIRN_T".into(), "2".into()),
            ],
            false,
        );
        let paths: Vec<_> = env
            .iter()
            .filter(|e| e.as_bytes().starts_with(b"PATH="))
            .collect();
        assert_eq!(paths, [&OsString::from("PATH=/x")]);
        let t: Vec<_> = env
            .iter()
            .filter(|e| e.as_bytes().starts_with(b"CAIRN_T="))
            .collect();
        assert_eq!(t, [&OsString::from("CAIRN_T=2")]);
    }

    #[test]
    fn a_clean_environment_keeps_only_the_allowlist() {
        // Cairn's own environment has PATH (cargo test runs with one) and more.
        let env = environment(&[("STEP_VAR".into(), "1".into())], true);
        let names: Vec<String> = env
            .iter()
            .map(|e| {
                e.to_string_lossy()
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert!(names.iter().any(|n| n == "PATH"), "{names:?}");
        assert!(names.iter().any(|n| n == "STEP_VAR"), "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n == "STEP_VAR" || kept_for_detached(OsStr::new(n))),
            "{names:?}"
        );
        assert!(!kept_for_detached(OsStr::new("PGPASSWORD")));
        assert!(kept_for_detached(OsStr::new("LC_ALL")));
    }
}
