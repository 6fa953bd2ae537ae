//! The spawner process itself: forked from Cairn once, it starts every step's process with
//! `posix_spawn`, reaps them, and stops everything below it when Cairn goes away.
//!
//! It is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever a step leaves behind (a
//! backgrounded job of `set -m`, a double-forked daemon, a `setsid` escape) is reparented to
//! it rather than to init, so nothing a step started can get out of its reach.
//!
//! It may be forked from a multi-threaded process (a test binary, a library user that did not
//! call [`super::spawner::start`] early): so it only allocates (glibc's `fork` leaves malloc
//! usable in the child) and makes system calls; it never touches a lock of the parent (no
//! printing, no logging, no environment access).

use std::ffi::CString;
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::signal::{SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use super::protocol::{self, Reply};
use super::tree;

/// The spawner's main loop; never returns.
pub(super) fn serve(sock: OwnedFd) -> ! {
    prepare(sock.as_raw_fd());
    let code = match Loop::new(sock) {
        Some(mut lp) => {
            lp.run();
            stop_everything_below(&lp.released);
            0
        }
        None => {
            stop_everything_below(&[]);
            1
        }
    };
    // SAFETY: ends this process without running the parent's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// Own process group (a Ctrl-C at the terminal is Cairn's to handle, not ours), stdio on
/// /dev/null (a caller reading Cairn's output must see EOF when Cairn exits), no other
/// inherited descriptor kept open (a database socket must close when Cairn closes it).
fn prepare(keep: RawFd) {
    // SAFETY: plain system calls on this process's own descriptors and attributes.
    unsafe {
        libc::setpgid(0, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: closing descriptors this process inherited and will never use.
        unsafe { libc::close(fd) };
    }
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // Stopping is Cairn's decision, told by closing the socket: a SIGTERM sent to the whole
    // service (systemd) or a terminal hang-up must not kill the spawner before Cairn has run
    // `finally`. The children get default dispositions back at spawn.
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        // SAFETY: installs SIG_IGN, no handler code.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) };
    }
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
    ] {
        // SAFETY: installs SIG_DFL; drops any handler inherited from the parent's runtime.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    }
}

struct Loop {
    sock: OwnedFd,
    sigchld: SignalFd,
    /// Step processes started and not yet reaped, with the write end of their status pipe.
    leaders: std::collections::HashMap<i32, OwnedFd>,
    /// Processes detached steps left running: spared when Cairn goes away.
    released: Vec<tree::Released>,
}

impl Loop {
    fn new(sock: OwnedFd) -> Option<Loop> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().ok()?;
        let sigchld =
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok()?;
        Some(Loop {
            sock,
            sigchld,
            leaders: std::collections::HashMap::new(),
            released: Vec::new(),
        })
    }

    /// Serves requests until Cairn closes its end (or dies, which closes it).
    fn run(&mut self) {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.sigchld.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfd structures.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if fds[1].revents != 0 {
                while let Ok(Some(_)) = self.sigchld.read_signal() {}
                self.reap();
            }
            if fds[0].revents != 0 && !self.serve_one() {
                return;
            }
        }
    }

    /// Reaps every exited child; reports the exit of step processes, each on its status pipe.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if let Some(pipe) = self.leaders.remove(&pid) {
                send(&pipe, Reply::Exited { pid, status });
            }
        }
    }

    /// Handles one request. False when Cairn closed the socket or it broke.
    fn serve_one(&mut self) -> bool {
        let mut head = vec![0u8; 1 + 12 * protocol::MAX_RELEASED];
        let mut space = nix::cmsg_space!([RawFd; 5]);
        let mut iov = [std::io::IoSliceMut::new(&mut head)];
        let (bytes, fds) = match recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::ScmRights(rights) = cmsg {
                            // SAFETY: the kernel just installed these descriptors for us.
                            fds.extend(
                                rights
                                    .into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                (msg.bytes, fds)
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => return true,
            Err(_) => return false,
        };
        if bytes == 0 {
            return false;
        }
        let id = match protocol::Request::decode(&head[..bytes]) {
            Some(protocol::Request::Spawn { id }) => Some(id),
            Some(protocol::Request::Release { processes }) => {
                tree::prune(&mut self.released);
                self.released.extend(
                    processes
                        .into_iter()
                        .map(|(pid, start)| tree::Released { pid, start }),
                );
                return true;
            }
            None => None,
        };
        // A request without its five descriptors has nowhere to be answered: dropped.
        if let (Some(id), Ok([spec, stdin, stdout, stderr, status])) =
            (id, <[OwnedFd; 5]>::try_from(fds))
        {
            match spawn(spec, &stdin, &stdout, &stderr) {
                Ok(pid) => {
                    send(&status, Reply::Spawned { id, pid });
                    self.leaders.insert(pid, status);
                }
                Err(errno) => send(&status, Reply::Failed { id, errno }),
            }
        }
        true
    }
}

/// Writes a reply on a status pipe. A step that stopped listening (its future was dropped)
/// closed the read end: the write fails with EPIPE (SIGPIPE is ignored here), which is fine.
fn send(pipe: &OwnedFd, reply: Reply) {
    let bytes = reply.encode();
    // SAFETY: writes a buffer we own to a descriptor we own.
    unsafe { libc::write(pipe.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
}

/// Starts one step process: its own session (so that `set -m` jobs stay findable by session),
/// default signal dispositions and an empty signal mask, the given stdio and folder.
fn spawn(spec: OwnedFd, stdin: &OwnedFd, stdout: &OwnedFd, stderr: &OwnedFd) -> Result<i32, i32> {
    let mut file = std::fs::File::from(spec);
    let mut bytes = Vec::new();
    file.rewind().map_err(|_| libc::EIO)?;
    file.read_to_end(&mut bytes).map_err(|_| libc::EIO)?;
    let spec = protocol::Spec::decode(&bytes).ok_or(libc::EINVAL)?;
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| libc::EINVAL);
    let program = cstr(&spec.program)?;
    let args = spec
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = spec
        .env
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = spec.cwd.as_deref().map(cstr).transpose()?;
    let mut argv: Vec<*mut libc::c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|a| a.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());

    // SAFETY: the attribute and action objects are initialised before use and destroyed
    // after; every pointer passed lives until posix_spawn returns.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let mut rc = 0;
        for (fd, target) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
            if rc == 0 {
                rc = libc::posix_spawn_file_actions_adddup2(&mut actions, fd.as_raw_fd(), target);
            }
        }
        if let (0, Some(cwd)) = (rc, &cwd) {
            rc = libc::posix_spawn_file_actions_addchdir_np(&mut actions, cwd.as_ptr());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigfillset(&mut all);
        libc::sigdelset(&mut all, libc::SIGKILL);
        libc::sigdelset(&mut all, libc::SIGSTOP);
        if rc == 0 {
            rc = libc::posix_spawnattr_setsigmask(&mut attr, &none);
        }
        if rc == 0 {
            rc = libc::posix_spawnattr_setsigdefault(&mut attr, &all);
        }
        if rc == 0 {
            let flags = libc::POSIX_SPAWN_SETSID
                | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short
                | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short;
            rc = libc::posix_spawnattr_setflags(&mut attr, flags);
        }
        let mut pid: libc::pid_t = 0;
        if rc == 0 {
            rc = libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &actions,
                &attr,
                argv.as_ptr(),
                envp.as_ptr(),
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if rc == 0 { Ok(pid) } else { Err(rc) }
    }
}

/// SIGKILLs every process below the spawner but the released ones (and what runs below them),
/// looking again until none is left (a process may fork while we look). Cairn is gone: nobody
/// is left to give them a grace period. The released ones are reparented to init (or the
/// nearest subreaper above Cairn) when the spawner exits.
fn stop_everything_below(released: &[tree::Released]) {
    let me = std::process::id() as i32;
    for _ in 0..300 {
        let roots: Vec<i32> = tree::children(me)
            .into_iter()
            .filter(|&c| !tree::spared(c, released))
            .collect();
        let below = tree::live_subtree(&roots);
        if below.is_empty() {
            break;
        }
        for pid in below {
            // SAFETY: signals a process found below us a moment ago.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
        reap_quietly();
    }
    reap_quietly();
}

fn reap_quietly() {
    let mut status = 0;
    // SAFETY: waitpid with a valid pointer.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}
