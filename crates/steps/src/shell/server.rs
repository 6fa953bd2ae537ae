//! The spawner process itself: forked from Cairn once, it starts every step's process the way
//! `posix_spawn` does (`clone` with `CLONE_VM | CLONE_VFORK`, then `execve`), reaps them, and stops everything below it when Cairn goes away.
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

use nix::sys::signal::{SigSet, Signal};
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
    // `finally`. Every other signal gets its default action, whatever Cairn inherited or
    // installed (a runtime's handlers, a parent's `nohup` or `trap '' USR1`): so [`IGNORED`]
    // is the whole of what a step's process must have reset at spawn, and there is no handler
    // that could run in the child while it shares the spawner's memory (see [`spawn`]).
    let ignored: Vec<i32> = IGNORED.iter().map(|s| *s as i32).collect();
    for signal in 1..=libc::SIGRTMAX() {
        let handler = if ignored.contains(&signal) {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        // The kernel's call, not the C library's: glibc refuses to touch its two internal
        // real-time signals, which its own `posix_spawn` leaves ignored in the program it
        // starts (and `execve` keeps ignored), so Cairn itself may have inherited them so.
        // The kernel's `struct sigaction`: the handler first, the rest (flags, restorer,
        // mask) zero.
        let action: [libc::c_ulong; 4] = [handler as libc::c_ulong, 0, 0, 0];
        // SAFETY: installs SIG_IGN or SIG_DFL, no handler code, from a valid structure. Fails,
        // harmlessly, for SIGKILL and SIGSTOP.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                action.as_ptr(),
                std::ptr::null_mut::<libc::c_ulong>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// The signals the spawner ignores, all others having their default action: the ones a step's
/// process gets back to default at spawn (a handled signal is reset by `execve` itself).
const IGNORED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGPIPE,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

struct Loop {
    sock: OwnedFd,
    sigchld: SignalFd,
    /// Step processes started and not yet reaped, with the write end of their status pipe.
    leaders: std::collections::HashMap<i32, OwnedFd>,
    /// Processes detached steps left running: spared when Cairn goes away.
    released: Vec<tree::Released>,
    /// The stack a step's process runs on between its start and its `execve`.
    stack: Stack,
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
            stack: Stack::new()?,
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
            match spawn(&self.stack, spec, [&stdin, &stdout, &stderr]) {
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
///
/// Not `posix_spawn`: the C library's resets every signal's disposition in the child (one
/// `rt_sigaction` per signal, 64 system calls per step) because the caller may have handlers
/// that must not run in a child sharing its memory. The spawner has none (see [`prepare`]), so
/// the child resets only the signals the spawner ignores. It is started the way `posix_spawn`
/// starts it: `clone` with `CLONE_VM | CLONE_VFORK` (no page tables copied; the spawner waits
/// until the child has called `execve` or exited), on a stack of its own, with every signal
/// blocked in between.
fn spawn(stack: &Stack, spec: OwnedFd, stdio: [&OwnedFd; 3]) -> Result<i32, i32> {
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
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut child = Child {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        stdio: stdio.map(AsRawFd::as_raw_fd),
        reset: IGNORED.map(|s| s as libc::c_int),
        errno: 0,
    };
    // SAFETY: the child shares our memory and runs only `start_child`, which reads `child`
    // (alive until clone returns, which CLONE_VFORK delays until the child has exec'd or
    // exited) and makes system calls. Every signal is blocked around the clone, so nothing
    // runs in the child before it has reset its dispositions and mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            start_child,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut child).cast(),
        );
        let clone_errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_errno);
        }
        let errno = std::ptr::read_volatile(&raw const child.errno);
        if errno != 0 {
            // It never ran the program: reap it here, it is no step of ours.
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            return Err(errno);
        }
        Ok(pid)
    }
}

/// What a step's process needs between its start and its `execve`, prepared by the spawner
/// (the child allocates nothing).
struct Child {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Null: the spawner's folder.
    cwd: *const libc::c_char,
    stdio: [RawFd; 3],
    reset: [libc::c_int; IGNORED.len()],
    /// Set by the child when it could not start the program.
    errno: libc::c_int,
}

/// The child's side of [`spawn`]: only system calls, on memory it shares with the spawner.
extern "C" fn start_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Child` that `spawn` keeps alive while we run; every call is a plain
    // system call wrapper, safe in a vfork-like child.
    unsafe {
        let child = &mut *arg.cast::<Child>();
        let fail = |child: &mut Child| -> ! {
            child.errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            libc::_exit(127)
        };
        if libc::setsid() < 0 {
            fail(child);
        }
        for (target, fd) in (0..).zip(child.stdio) {
            // The descriptors came with close-on-exec set: dup2 gives a copy without it, and
            // one already in place has the flag cleared.
            let ok = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, target) == target
            };
            if !ok {
                fail(child);
            }
        }
        if !child.cwd.is_null() && libc::chdir(child.cwd) < 0 {
            fail(child);
        }
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in child.reset {
            if libc::sigaction(signal, &default, std::ptr::null_mut()) < 0 {
                fail(child);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) < 0 {
            fail(child);
        }
        libc::execve(child.program, child.argv, child.envp);
        fail(child)
    }
}

/// The stack of a step's process until its `execve`: mapped once, with a guard page below it
/// (one process at a time uses it: the spawner waits for each).
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    const LEN: usize = 64 * 1024;
    const GUARD: usize = 4096;

    fn new() -> Option<Stack> {
        let len = Self::LEN + Self::GUARD;
        // SAFETY: a fresh anonymous mapping, then its lowest page made inaccessible.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return None;
            }
            libc::mprotect(base, Self::GUARD, libc::PROT_NONE);
            Some(Stack { base, len })
        }
    }

    /// The highest address: stacks grow down.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is 16-byte aligned (page aligned).
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
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
