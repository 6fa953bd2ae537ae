//! Secrets work (the peer receives the real value) but are recorded nowhere: not on stdout or
//! stderr, not in the state database (nor its WAL), not in step logs, not in reports.

use super::common::{HttpServer, Sandbox, files_under};
use base64::Engine as _;

/// Holds characters that base64, URL-encoding, shell quoting and JSON escaping each change.
const CANARY: &str = "cAnArY-7f3e'9b/x+y=z?&k";

fn forms() -> Vec<(&'static str, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64_raw = base64::engine::general_purpose::STANDARD_NO_PAD;
    vec![
        ("raw", CANARY.to_string()),
        ("base64", b64.encode(CANARY)),
        ("base64 unpadded", b64_raw.encode(CANARY)),
        ("url-encoded", urlencoding::encode(CANARY).into_owned()),
        // A distinctive fragment: survives any quoting of the whole.
        ("fragment", "7f3e".to_string()),
    ]
}

fn assert_absent(what: &str, bytes: &[u8]) {
    for (form, text) in forms() {
        assert!(
            !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
            "the canary ({form}) leaked into {what}"
        );
    }
}

#[test]
fn a_secret_is_used_but_never_recorded() {
    let server = HttpServer::start();
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        format!(
            r##"
cairn: 1
name: secrets
secrets:
  canary: {{ env: CAIRN_TEST_CANARY }}
targets:
  api: {{ http: "{api}", bearer: "{{{{ secrets.canary }}}}" }}
steps:
  - id: prints
    shell: echo token is {{{{ secrets.canary }}}}
  - id: prints_encoded
    shell: printf '%s' "$TOKEN" | base64 -w0; echo; python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["TOKEN"], safe=""))'
    env: {{ TOKEN: "{{{{ secrets.canary }}}}" }}
  - id: returns
    shell: "true"
    outputs: {{ token: "{{{{ secrets.canary }}}}" }}
  - id: fails
    shell: echo "login failed for" {{{{ secrets.canary }}}} >&2; exit 3
    on_failure: continue
  - id: fails_retrying
    shell: echo "denied $TOKEN" >&2; exit 4
    env: {{ TOKEN: "{{{{ secrets.canary }}}}" }}
    retry: {{ attempts: 2, delay: 10ms }}
    on_failure: continue
  - id: reports
    report:
      inline: "# Report\ntoken: {{{{ secrets.canary }}}}\nfrom output: {{{{ steps.returns.outputs.token }}}}\n"
      to: report.md
  - id: sends
    http:
      target: api
      get: /echo
      headers: {{ X-Token: "{{{{ secrets.canary }}}}" }}
    outputs: {{ echoed: "{{{{ result.json.headers['x-token'] }}}}" }}
outputs:
  token: "{{{{ secrets.canary }}}}"
  echoed: "{{{{ steps.sends.outputs.echoed }}}}"
"##,
            api = server.url("")
        ),
    );
    let mut cmd = sb.command("runbook.yaml", &[]);
    cmd.env("CAIRN_TEST_CANARY", CANARY);
    let run = sb.run_with(cmd);
    run.expect_code(0);
    assert_eq!(run.status("prints"), "succeeded");
    assert_eq!(run.status("fails"), "failed");
    assert_eq!(run.status("sends"), "succeeded");
    assert_eq!(
        run.finished("fails")["error"],
        "exit code 3: login failed for ***"
    );
    assert_eq!(run.outputs()["token"], "***");
    assert_eq!(run.outputs()["echoed"], "***");

    // The secret works: the server received the real value.
    let got = server.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-token"), Some(CANARY));
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {CANARY}").as_str())
    );

    // ...and is recorded nowhere.
    assert_absent("stdout", run.stdout.as_bytes());
    assert_absent("stderr", run.stderr.as_bytes());
    let files = files_under(sb.path());
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(sb.path()).unwrap_or(p).display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "state.db"), "{names:?}");
    assert!(names.iter().any(|n| n == "report.md"), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("prints.log")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("fails.log")), "{names:?}");
    for path in &files {
        let bytes = std::fs::read(path).expect("read");
        assert_absent(&path.display().to_string(), &bytes);
    }
    // The masks are there instead: the checks above looked at real content.
    assert_eq!(
        sb.read("report.md"),
        "# Report\ntoken: ***\nfrom output: ***\n"
    );
    let log = files
        .iter()
        .find(|p| p.ends_with("prints_encoded.log"))
        .expect("the log of prints_encoded");
    let log = std::fs::read_to_string(log).expect("log");
    assert!(log.contains("--- stdout ---\n***\n***\n"), "{log}");
    let state = std::fs::read(sb.path().join("state.db")).expect("state");
    assert!(state.windows(3).any(|w| w == b"***"));
}

/// A PostgreSQL WARNING that quotes a secret reaches no stream in clear: not the progress on
/// stderr, not the JSON events, not `cairn check`'s answer, not Cairn's own diagnostics even
/// when `CAIRN_LOG=info` prints every notice.
#[test]
fn a_server_warning_quoting_a_secret_is_masked_on_every_stream() {
    let sb = Sandbox::new();
    let f = super::common::unique("cairn_warn");
    super::common::pg(&format!(
        "CREATE FUNCTION {f}(t text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'leaked %', t; RAISE NOTICE 'told %', t; RETURN 1; END $$"
    ));
    sb.write(
        "runbook.yaml",
        format!(
            r#"
cairn: 1
name: warned
secrets:
  x: {{ env: CAIRN_TEST_CANARY }}
targets:
  db: {{ postgres: "{url}" }}
steps:
  - id: say
    sql: {{ target: db, query: "SELECT {f}({{{{ secrets.x }}}}) AS n" }}
  - id: v
    check: {{ value: "{{{{ steps.say.result.rows[0].n }}}}", critical: "> 5" }}
"#,
            url = super::common::PG_URL
        ),
    );
    let cases: [(&str, &[&str], Option<&str>); 5] = [
        ("run", &["run", "runbook.yaml"], None),
        (
            "run --log-format json",
            &["run", "runbook.yaml", "--log-format", "json"],
            None,
        ),
        (
            "run with CAIRN_LOG=info",
            &["run", "runbook.yaml"],
            Some("info"),
        ),
        ("check", &["check", "runbook.yaml"], None),
        (
            "check with CAIRN_LOG=debug",
            &["check", "runbook.yaml"],
            Some("debug"),
        ),
    ];
    let mut seen_warning = 0;
    for (what, args, log) in cases {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.current_dir(sb.path())
            .args(args)
            .env("CAIRN_TEST_CANARY", CANARY)
            .env("NO_COLOR", "1")
            .env_remove("CAIRN_STATE")
            .env_remove("CAIRN_LOG")
            .stdin(std::process::Stdio::null());
        if args[0] == "run" {
            c.arg("--state").arg(sb.path().join("state.db"));
        }
        if let Some(level) = log {
            c.env("CAIRN_LOG", level);
        }
        let out = c.output().expect("run cairn");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}\n{stderr}");
        assert_absent(&format!("{what}: stderr"), &out.stderr);
        assert_absent(&format!("{what}: stdout"), &out.stdout);
        // The warning itself is still said, masked: the test sees the stream it guards.
        if stderr.contains("leaked ***") {
            seen_warning += 1;
        }
    }
    super::common::pg(&format!("DROP FUNCTION {f}(text)"));
    assert_eq!(seen_warning, 5, "every case prints the warning, masked");
}

/// Runs `yaml` with core files allowed, kills `cairn` with SIGABRT once its step has started,
/// and gives the core files it left in the sandbox (the kernel names them `core` or
/// `core.PID` there when `core_pattern` is a plain name).
fn core_files_of_a_crash(sb: &Sandbox, yaml: &str) -> Vec<std::path::PathBuf> {
    sb.write("runbook.yaml", yaml);
    let mut c = std::process::Command::new("bash");
    c.current_dir(sb.path())
        .args(["-c", r#"ulimit -c unlimited && exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "run",
            "runbook.yaml",
            "--log-format",
            "json",
            "--state",
            "memory:",
        ])
        .env("CAIRN_TEST_CANARY", CANARY)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .env_remove("CAIRN_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut live = super::common::Live::spawn(c);
    live.wait_for(|e| e["event"] == "step_started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(live.pid()),
        nix::sys::signal::Signal::SIGABRT,
    )
    .expect("signal cairn");
    let _ = live.child().wait();
    std::fs::read_dir(sb.path())
        .expect("sandbox")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("core"))
        })
        .collect()
}

/// Once a run has read a secret, `cairn` is not dumpable: a crash leaves no core file holding
/// the secret. The same crash without a secret does leave one, which shows that this machine
/// writes core files where the test looks.
#[test]
fn a_crash_after_secrets_are_read_leaves_no_core_dump() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    // A machine that sends core files elsewhere cannot show this test anything: it fails
    // rather than pass without looking.
    assert!(
        !pattern.starts_with('|') && !pattern.contains('/'),
        "core files go to {pattern:?}, outside the test's reach: set kernel.core_pattern to a plain name (`core`)"
    );
    let runbook = |secrets: &str, shell: &str| {
        format!("cairn: 1\nname: crash\n{secrets}steps:\n  - id: wait\n    shell: {shell}\n")
    };
    let control = Sandbox::new();
    let cores = core_files_of_a_crash(&control, &runbook("", "sleep 5"));
    assert!(
        !cores.is_empty(),
        "a crash without secrets leaves a core file"
    );
    let sb = Sandbox::new();
    let cores = core_files_of_a_crash(
        &sb,
        &runbook(
            "secrets:\n  x: { env: CAIRN_TEST_CANARY }\n",
            "echo {{ secrets.x }} > /dev/null; sleep 5",
        ),
    );
    assert!(
        cores.is_empty(),
        "a core file of a process holding a secret: {cores:?}"
    );
}

/// `cairn plan ARGS` in the sandbox, stopped after 20 s: (exit code, stdout, stderr).
fn plan(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.current_dir(sb.path())
        .arg("plan")
        .args(args)
        .env("NO_COLOR", "1")
        .env("CAIRN_TEST_CANARY", CANARY)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (status, stdout, stderr) =
        super::common::process::capture(c, std::time::Duration::from_secs(20));
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    )
}

/// `cairn plan` reads secret files with the run's reader: a FIFO does not block it, a device
/// does not fill its memory, a file over the 1 MiB cap is refused; each is a warning of the
/// plan, as the run would refuse it.
#[test]
fn plan_reads_secret_files_with_the_runs_reader() {
    let sb = Sandbox::new();
    let fifo = sb.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    sb.write("big", "x".repeat(2 * 1024 * 1024));
    for (what, path, says) in [
        ("a FIFO", fifo.display().to_string(), "not a regular file"),
        ("a device", "/dev/zero".to_string(), "not a regular file"),
        ("a 2 MB file", sb.file("big"), "MiB"),
    ] {
        sb.write(
            "runbook.yaml",
            format!(
                "cairn: 1\nname: p\nsecrets:\n  k: {{ file: \"{path}\" }}\nsteps:\n  - id: s\n    shell: echo {{{{ secrets.k }}}}\n"
            ),
        );
        let started = std::time::Instant::now();
        let (code, stdout, stderr) = plan(&sb, &["runbook.yaml"]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{what}: blocked"
        );
        assert_eq!(code, 0, "{what}: {stdout}\n{stderr}");
        let warning = stdout
            .lines()
            .chain(stderr.lines())
            .find(|l| l.contains("secret `k`") && l.contains("a run would refuse to start"))
            .unwrap_or_else(|| panic!("{what}: no warning in\n{stdout}\n{stderr}"));
        assert!(warning.contains(says), "{what}: {warning}");
    }
}

/// A password written in an http target's URL is masked in the plan as in a run, and a secret
/// the plan can read is masked wherever it shows.
#[test]
fn plan_masks_a_password_written_in_a_target_url() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: p
secrets:
  x: { env: CAIRN_TEST_CANARY }
targets:
  api: { http: "http://admin:hunter2-in-url@127.0.0.1:9/" }
steps:
  - id: get
    http: { target: api, get: /status }
  - id: say
    shell: echo {{ env.CAIRN_TEST_CANARY }} {{ secrets.x }}
"#,
    );
    for format in ["text", "json"] {
        let (code, stdout, stderr) = plan(&sb, &["runbook.yaml", "--output", format]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        for stream in [&stdout, &stderr] {
            assert!(!stream.contains("hunter2-in-url"), "{format}: {stream}");
        }
        assert_absent(&format!("plan --output {format}"), stdout.as_bytes());
        assert!(stdout.contains("127.0.0.1:9"), "{format}: {stdout}");
    }
}

/// A value cannot move a request that carries a secret header to another host or port: the
/// runbook is refused before anything runs, and the other server hears nothing.
#[test]
fn a_value_cannot_move_a_secret_header_to_another_port() {
    let other = HttpServer::start();
    let sb = Sandbox::new();
    let mut c = sb.command(
        "runbook.yaml",
        &["--set", &format!("base={}", other.url(""))],
    );
    c.env("CAIRN_TEST_CANARY", CANARY);
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: moved
secrets:
  x: { env: CAIRN_TEST_CANARY }
inputs:
  base: { type: string }
steps:
  - id: call
    http: { get: "{{ inputs.base }}/api", headers: { Authorization: "Bearer {{ secrets.x }}" } }
"#,
    );
    let run = sb.run_with(c);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains("a value decides where this request goes"),
        "{}",
        run.stderr
    );
    assert!(other.requests().is_empty());
}
