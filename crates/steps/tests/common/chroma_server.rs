//! Starts a REAL Chroma server (`chroma run`) for the tests.
//!
//! The binary is `$CAIRN_CHROMA_BIN`, else `$CAIRN_CHROMA_VENV/bin/chroma`, else
//! `~/.cache/cairn/chroma-venv/bin/chroma` (what `.ci/chroma-venv.sh` installs). When it is
//! missing, the tests fail (they never pass without running).
//!
//! [`shared`] starts one server per test binary. Statics are never dropped, so that server is
//! tied to the process by `PR_SET_PDEATHSIG` instead, and its data folder (under Cargo's
//! target/tmp) is swept by the next run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn_steps::StepError;
use cairn_steps::chroma::{ChromaAction, ChromaClient, ChromaTarget, run};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct ChromaServer {
    /// e.g. `http://127.0.0.1:40123`
    pub url: String,
    child: Child,
    dir: PathBuf,
}

const DIR_PREFIX: &str = "cairn-chroma-";

/// The binary; a missing one fails the test.
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("CAIRN_CHROMA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let venv = std::env::var_os("CAIRN_CHROMA_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/cairn/chroma-venv")
                });
            venv.join("bin/chroma")
        });
    if path.is_file() {
        return Some(path);
    }
    // A missing server fails the tests: a test that passes without running proves nothing.
    panic!(
        "Chroma binary {} not found: run .ci/chroma-venv.sh (scripts/test.sh does) or set CAIRN_CHROMA_BIN",
        path.display()
    );
}

/// One server for the whole test binary, started on first use.
pub fn shared() -> Option<&'static ChromaServer> {
    static SERVER: OnceLock<Option<ChromaServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let bin = binary()?;
            // PR_SET_PDEATHSIG fires when the spawning *thread* ends, and test threads end early:
            // spawn from a thread that lives as long as the process.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("chroma-keeper".into())
                .spawn(move || {
                    let _ = tx.send(ChromaServer::launch(&bin));
                    loop {
                        std::thread::park();
                    }
                })
                .expect("spawn the chroma keeper thread");
            let server = rx
                .recv()
                .expect("chroma keeper thread")
                .unwrap_or_else(|e| panic!("{e}"));
            Some(server)
        })
        .as_ref()
}

/// A client for `url` with the default tenant and database.
pub fn client(url: &str) -> ChromaClient {
    ChromaClient::new(ChromaTarget::new(url), reqwest::Client::new())
}

/// Runs the action written as the engine would build it: `{"count": {"collection": "x"}}`.
pub async fn act(client: &ChromaClient, action: Value) -> Result<Value, StepError> {
    let action: ChromaAction = serde_json::from_value(action).expect("a valid chroma action");
    run(client, &action, &CancellationToken::new()).await
}

impl ChromaServer {
    pub fn client(&self) -> ChromaClient {
        client(&self.url)
    }

    /// A server of one's own, stopped on drop; None when the binary is missing outside CI.
    pub fn start() -> Option<ChromaServer> {
        let bin = binary()?;
        Some(Self::launch(&bin).unwrap_or_else(|e| panic!("{e}")))
    }

    fn launch(bin: &Path) -> Result<ChromaServer, String> {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        sweep_stale(&root);
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut last_error = String::new();
        // A port picked free can be taken before Chroma binds it: try a few.
        for _ in 0..3 {
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = root.join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let port = free_port();
            let log = std::fs::File::create(dir.join("chroma.log"))
                .map_err(|e| format!("chroma.log: {e}"))?;
            let mut command = Command::new(bin);
            command
                .args(["run", "--path"])
                .arg(dir.join("data"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .env("ANONYMIZED_TELEMETRY", "False")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
            let mut server = ChromaServer {
                url: format!("http://127.0.0.1:{port}"),
                child,
                dir,
            };
            match server.wait_healthy(Duration::from_secs(30)) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        let address = self.url.trim_start_matches("http://").to_owned();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "chroma exited early ({status}):\n{}",
                    self.log_tail()
                ));
            }
            if heartbeat(&address) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "chroma not healthy after {limit:?}:\n{}",
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chroma.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ChromaServer {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain-socket GET of the v2 heartbeat: no async runtime needed in the launcher.
fn heartbeat(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /api/v2/heartbeat HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// Removes data folders of test processes that are gone (shared servers are never dropped).
fn sweep_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
