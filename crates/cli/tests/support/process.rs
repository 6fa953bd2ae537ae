//! Running the real `cairn` in tests: both streams drained on their own threads (a full pipe
//! must not block the child), and a deadline so a hung binary fails the test instead of CI.

use std::io::Read;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Reads a stream to its end on a thread of its own.
pub fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for the child; after `limit`, kills it (by its own pid) and returns None.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for cairn") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command whose stdout and stderr are piped; returns its status and both streams.
/// Panics, with what it printed, if it is still running after `limit`.
pub fn capture(mut command: Command, limit: Duration) -> (ExitStatus, Vec<u8>, String) {
    let mut child = command.spawn().expect("spawn cairn");
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = wait_or_kill(&mut child, limit);
    let stdout = out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned();
    let Some(status) = status else {
        panic!(
            "cairn hung for {limit:?} and was killed\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&stdout)
        );
    };
    (status, stdout, stderr)
}

/// The name of the real uid running the tests, as `id -un` gives it: who Cairn records as
/// starting a run or answering a gate.
#[allow(dead_code)]
pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
