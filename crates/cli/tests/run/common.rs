//! What every `cairn run` test needs: a temp dir holding the runbook, the state and the files
//! the steps write; the real binary run with `--state <dir>/state.db --log-format json`; its
//! events parsed; a small real HTTP server; and PostgreSQL helpers.
//!
//! Each test binary module uses only part of this: what it leaves unused is not dead code.
#![allow(dead_code)]

#[path = "../support/process.rs"]
pub mod process;
#[path = "../support/sandbox.rs"]
pub mod sandbox;
pub use process::{wait_or_kill, whoami};

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Hang protection only: no test here expects to come near it.
pub const HANG: Duration = Duration::from_secs(180);

/// The PostgreSQL server of the test environment (trust authentication).
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A temp dir for one test ([`sandbox::Dir`]: its files), removed on drop.
pub struct Sandbox {
    dir: sandbox::Dir,
}

impl std::ops::Deref for Sandbox {
    type Target = sandbox::Dir;
    fn deref(&self) -> &sandbox::Dir {
        &self.dir
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: sandbox::Dir::new("cairn-run-"),
        }
    }

    /// `cairn` with this sandbox as working directory, the state in it, JSON events on stdout
    /// and none of the environment knobs of the machine running the tests.
    pub fn command(&self, runbook: &str, args: &[&str]) -> Command {
        let mut c = sandbox::cairn_command(self.path());
        c.arg("run")
            .arg(runbook)
            .arg("--state")
            .arg(self.path().join("state.db"))
            .args(["--log-format", "json"])
            .args(args);
        c
    }

    /// Writes the runbook as `runbook.yaml` and runs it to its end.
    pub fn run_yaml(&self, yaml: &str, args: &[&str]) -> Run {
        self.write("runbook.yaml", yaml);
        self.run("runbook.yaml", args)
    }

    /// Runs `cairn run FILE ARGS` to its end (or kills it after [`HANG`]).
    pub fn run(&self, runbook: &str, args: &[&str]) -> Run {
        self.run_with(self.command(runbook, args))
    }

    pub fn run_with(&self, command: Command) -> Run {
        let (status, stdout, stderr) = process::capture(command, HANG);
        Run::new(
            status,
            String::from_utf8(stdout).expect("utf-8 stdout"),
            stderr,
        )
    }
}

/// A finished `cairn run`: exit code, raw streams and the parsed events.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<Value>,
}

impl Run {
    fn new(status: ExitStatus, stdout: String, stderr: String) -> Run {
        let events = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not a JSON event ({e}): {l}"))
            })
            .collect();
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            events,
        }
    }

    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code {} (expected {code})\n{}",
            self.code, self
        );
        self
    }

    /// Every event named `kind` (`step_started`...) of `step` (any item).
    pub fn all(&self, kind: &str, step: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["event"] == kind && e["step"] == step)
            .collect()
    }

    /// The `step_finished` event of a step (not of one of its items).
    pub fn finished(&self, step: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["event"] == "step_finished" && e["step"] == step && e.get("item").is_none())
            .unwrap_or_else(|| panic!("no step_finished for `{step}`\n{self}"))
    }

    /// The final status of a step: `succeeded`, `failed`, `skipped`...
    pub fn status(&self, step: &str) -> &str {
        self.finished(step)["status"].as_str().unwrap_or_default()
    }

    pub fn run_finished(&self) -> &Value {
        let last = self
            .events
            .last()
            .unwrap_or_else(|| panic!("no events\n{self}"));
        assert_eq!(last["event"], "run_finished", "the last event\n{self}");
        last
    }

    pub fn outcome(&self) -> &str {
        self.run_finished()["outcome"].as_str().unwrap_or_default()
    }

    pub fn outputs(&self) -> &Value {
        &self.run_finished()["outputs"]
    }

    /// A step's line of the run_finished summary.
    pub fn summary(&self, step: &str) -> &Value {
        self.run_finished()["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["id"] == step))
            .unwrap_or_else(|| panic!("`{step}` is not in the summary\n{self}"))
    }

    pub fn started(&self, step: &str) -> bool {
        !self.all("step_started", step).is_empty()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit {} ---\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A `cairn run` still going: its events arrive one by one.
pub struct Live {
    lines: sandbox::Lines,
    pub seen: Vec<Value>,
}

impl Live {
    pub fn spawn(mut command: Command) -> Live {
        let mut lines = sandbox::Lines::spawn(&mut command);
        // Stderr is drained so that cairn never blocks on a full pipe.
        let stderr = lines.child.stderr.take().expect("stderr");
        thread::spawn(move || {
            let _ = std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink());
        });
        Live {
            lines,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.lines.pid()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.lines.child
    }

    /// Reads events until one satisfies `pred` (hang protection: [`HANG`]).
    pub fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + HANG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.lines.next(left) else {
                panic!("the awaited event never came; seen: {:#?}", self.seen);
            };
            let e: Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("not a JSON event ({err}): {line}"));
            self.seen.push(e.clone());
            if pred(&e) {
                return e;
            }
        }
    }

    /// The rest of the events, after the process ended.
    pub fn drain(&mut self) {
        for line in self.lines.rest() {
            if let Ok(e) = serde_json::from_str(&line) {
                self.seen.push(e);
            }
        }
    }
}

pub use sandbox::gone_within;

/// One request the test server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string, `?` excluded.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A small real HTTP/1.1 server on 127.0.0.1:0 (one thread per connection, `Connection: close`).
///
/// - `/health`: 200 `ok`
/// - `/slow/MS`: 200 after MS milliseconds
/// - `/status/N`: status N
/// - `/echo`: 200, JSON `{"method","path","headers":{..},"body"}` of the request
/// - `/json`: 200, `{"version":"1.2.3","items":[1,2,3],"ok":true}`
/// - `/goto/N?to=URL`: status N (a redirect) to the percent-decoded URL
/// - `/echo/*`: like `/echo`, for paths below a base path
/// - anything else: 404
///
/// Every request is recorded, so tests count hits and read what arrived.
pub struct HttpServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stopped) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let reqs = reqs.clone();
                thread::spawn(move || serve(stream, &reqs));
            }
        });
        HttpServer {
            port,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    /// Requests whose path (query excluded) is `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Request>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.trim().is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let query = target
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let req = Request {
        method,
        path,
        query,
        headers,
        body,
    };
    requests.lock().expect("requests").push(req.clone());
    let (status, content_type, text) = route(&req);
    let reason = if status < 400 { "OK" } else { "Error" };
    // A redirect's text is where it points.
    let location = if (300..400).contains(&status) {
        format!("location: {text}\r\n")
    } else {
        String::new()
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         {location}connection: close\r\n\r\n{text}",
        text.len()
    );
    let mut w = write_half;
    let _ = w.write_all(answer.as_bytes());
    let _ = w.flush();
}

fn route(req: &Request) -> (u16, &'static str, String) {
    let number = |prefix: &str| req.path.strip_prefix(prefix)?.parse::<u64>().ok();
    if req.path == "/health" {
        (200, "text/plain", "ok".into())
    } else if let Some(ms) = number("/slow/") {
        thread::sleep(Duration::from_millis(ms));
        (200, "text/plain", "slow".into())
    } else if let Some(code) = number("/status/").and_then(|n| u16::try_from(n).ok()) {
        (code, "text/plain", format!("status {code}"))
    } else if let Some(code) = number("/goto/").and_then(|n| u16::try_from(n).ok()) {
        let to = req.query.strip_prefix("to=").unwrap_or_default();
        let to = urlencoding::decode(to)
            .map(|t| t.into_owned())
            .unwrap_or_default();
        (code, "text/plain", to)
    } else if req.path == "/echo" || req.path.starts_with("/echo/") {
        let headers: serde_json::Map<String, Value> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
            .collect();
        let echo = serde_json::json!({
            "method": req.method, "path": req.path, "headers": headers,
            "body": String::from_utf8_lossy(&req.body),
        });
        (200, "application/json", echo.to_string())
    } else if req.path == "/json" {
        (
            200,
            "application/json",
            r#"{"version":"1.2.3","items":[1,2,3],"ok":true}"#.into(),
        )
    } else {
        (404, "text/plain", "no such route".into())
    }
}

/// A name unique to this test process and call: tables, collections, markers.
pub fn unique(stem: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{stem}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `sql` on the test database and returns every row as text (NULL as `None`).
/// Columns must be text: cast them in the query (`SELECT n::text`).
pub fn pg(sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::{Connection, Row};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(PG_URL)
            .await
            .unwrap_or_else(|e| panic!("connect to {PG_URL}: {e}"));
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let out = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<Option<String>, _>(i).expect("a text column"))
                    .collect()
            })
            .collect();
        let _ = conn.close().await;
        out
    })
}

/// A table name of this test, dropped (if it exists) when the guard goes.
pub struct Table(pub String);

impl Table {
    pub fn new(stem: &str) -> Table {
        let t = Table(unique(&format!("cairn_it_{stem}")));
        pg(&format!("DROP TABLE IF EXISTS {}", t.0));
        t
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        pg(&format!("DROP TABLE IF EXISTS {}", self.0));
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
