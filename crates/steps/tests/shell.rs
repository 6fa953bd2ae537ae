//! The shell step against real processes.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_steps::StepError;
use cairn_steps::shell::{Command, ShellSpec, run};
use tokio_util::sync::CancellationToken;

fn sh(script: &str) -> ShellSpec {
    ShellSpec::new(Command::Shell(script.to_string()))
}

fn argv(args: &[&str]) -> ShellSpec {
    ShellSpec::new(Command::Argv(args.iter().map(|s| s.to_string()).collect()))
}

async fn ok(spec: &ShellSpec) -> serde_json::Value {
    match run(spec, &CancellationToken::new()).await {
        Ok(v) => v,
        Err(e) => panic!("step failed: {e} {:?}", e.result()),
    }
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn live_in_group(pgid: i32) -> Vec<String> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.get(2).and_then(|p| p.parse::<i32>().ok()) == Some(pgid) && fields[0] != "Z" {
            live.push(stat.clone());
        }
    }
    live
}

/// Reads the pid a script wrote (its own `$$`, which is its process group id).
fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

#[tokio::test]
async fn captures_stdout_stderr_and_exit_code() {
    let v = ok(&sh("echo out; echo err >&2")).await;
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["stdout"], "out\n");
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["stdout_truncated"], false);
    assert!(v["duration_ms"].is_u64());

    let e = run(
        &sh("echo partial; echo 'first' >&2; echo '  the real cause  ' >&2; echo >&2; exit 3"),
        &CancellationToken::new(),
    )
    .await
    .expect_err("exit 3 fails");
    assert_eq!(e.to_string(), "exit code 3: the real cause");
    let r = e.result().expect("result kept");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stdout"], "partial\n");
}

#[tokio::test]
async fn env_and_cwd_are_applied_and_stdin_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("echo \"$GREETING\"; pwd; cat");
    spec.env = vec![("GREETING".into(), "hello there".into())];
    spec.cwd = Some(dir.path().to_path_buf());
    let v = ok(&spec).await;
    let canonical = dir.path().canonicalize().expect("canonical");
    assert_eq!(
        v["stdout"],
        format!("hello there\n{}\n", canonical.display())
    );

    let mut missing = sh("true");
    missing.cwd = Some(dir.path().join("nope"));
    let e = run(&missing, &CancellationToken::new())
        .await
        .expect_err("missing cwd");
    assert!(matches!(e, StepError::Setup { .. }), "{e:?}");
    assert!(
        e.to_string().contains("working directory") && e.to_string().contains("nope"),
        "{e}"
    );
}

#[tokio::test]
async fn bash_runs_with_euo_pipefail() {
    let e = run(
        &sh("false | true; echo not reached"),
        &CancellationToken::new(),
    )
    .await
    .expect_err("pipefail");
    assert_eq!(e.result().expect("result")["exit_code"], 1);
    assert_eq!(e.result().expect("result")["stdout"], "");

    let e = run(
        &sh("echo \"$UNSET_VARIABLE_XYZ\""),
        &CancellationToken::new(),
    )
    .await
    .expect_err("nounset");
    assert!(
        e.to_string()
            .contains("UNSET_VARIABLE_XYZ: unbound variable"),
        "{e}"
    );

    let e = run(&sh("false; echo not reached"), &CancellationToken::new())
        .await
        .expect_err("errexit");
    assert_eq!(e.to_string(), "exit code 1");
}

#[tokio::test]
async fn argv_passes_arguments_untouched() {
    let tricky = [
        "two words",
        "it's \"quoted\"",
        "$(touch /tmp/cairn-pwned)",
        "*",
        "$HOME",
        "",
    ];
    let mut args = vec!["printf", "[%s]\\n"];
    args.extend(tricky);
    let v = ok(&argv(&args)).await;
    let expected: String = tricky.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(v["stdout"], expected);
    assert!(!Path::new("/tmp/cairn-pwned").exists());
}

#[tokio::test]
async fn capture_keeps_the_tail_and_the_log_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("logs/deeper/step.log");
    let mut spec = sh("for i in $(seq 1 1000); do echo \"line $i\"; done; echo oops >&2");
    spec.capture_limit = 100;
    spec.log_path = Some(log.clone());
    let v = ok(&spec).await;
    let stdout = v["stdout"].as_str().expect("stdout");
    assert_eq!(stdout.len(), 100);
    assert!(stdout.ends_with("line 999\nline 1000\n"), "{stdout}");
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stderr"], "oops\n");
    assert_eq!(v["stderr_truncated"], false);

    let logged = std::fs::read_to_string(&log).expect("log");
    let expected: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(logged.replace("oops\n", ""), expected);
    assert!(logged.contains("oops\n"));

    // A second run replaces the log (an attempt's log is its own); one that prints nothing
    // leaves the older file alone (the engine removes it).
    ok(&spec).await;
    let again = std::fs::read_to_string(&log).expect("log");
    assert_eq!(again.len(), logged.len());
    spec.command = cairn_steps::shell::Command::Shell("true".into());
    ok(&spec).await;
    assert_eq!(std::fs::read_to_string(&log).expect("log"), again);
}

/// A line reaches the log while the command still runs (a live log), a line not ended yet
/// after a pause too, and a line longer than the cap is written in pieces, not held whole.
#[tokio::test]
async fn the_log_grows_line_by_line_while_the_command_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("step.log");
    let mut spec = sh(
        "echo first; printf 'no end yet'; sleep 1.5; echo; head -c 200000 /dev/zero | tr '\\0' x; echo",
    );
    spec.log_path = Some(log.clone());
    let task = tokio::spawn(async move { run(&spec, &CancellationToken::new()).await });
    let started = Instant::now();
    let mut seen = String::new();
    while started.elapsed() < Duration::from_secs(1) {
        seen = std::fs::read_to_string(&log).unwrap_or_default();
        if seen.contains("no end yet") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, "first\nno end yet", "after {:?}", started.elapsed());
    assert!(!task.is_finished());
    let v = task.await.expect("join").expect("run");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        logged,
        format!("first\nno end yet\n{}\n", "x".repeat(200_000))
    );
    assert_eq!(v["stdout"], logged);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut spec = sh(&format!(
        "echo $$ > {}; sleep 30 & sleep 30 & echo started; wait",
        pid_file.display()
    ));
    spec.timeout = Some(Duration::from_millis(500));
    let started = Instant::now();
    let e = run(&spec, &CancellationToken::new())
        .await
        .expect_err("timeout");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500) + Duration::from_secs(3),
        "{elapsed:?}"
    );
    let StepError::Timeout {
        after,
        result: Some(result),
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(*after, Duration::from_millis(500));
    assert_eq!(result["stdout"], "started\n");
    assert_eq!(result["exit_code"], 128 + 15);
    assert_eq!(e.to_string(), "timeout after 0.5 s");
    let pgid = read_pid(&pid_file);
    assert!(live_in_group(pgid).is_empty(), "{:?}", live_in_group(pgid));
}

#[tokio::test]
async fn sigterm_ignored_means_sigkill_after_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut spec = sh(&format!(
        "trap '' TERM; echo $$ > {}; sleep 30 & wait; sleep 30",
        pid_file.display()
    ));
    spec.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let e = run(&spec, &CancellationToken::new())
        .await
        .expect_err("timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, StepError::Timeout { .. }));
    assert!(live_in_group(read_pid(&pid_file)).is_empty());
}

#[tokio::test]
async fn cancel_stops_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let spec = sh(&format!(
        "echo $$ > {}; sleep 30 & wait",
        pid_file.display()
    ));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let e = run(&spec, &cancel).await.expect_err("cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(e, StepError::Cancelled { result: Some(_) }),
        "{e:?}"
    );
    assert!(live_in_group(read_pid(&pid_file)).is_empty());
}

#[tokio::test]
async fn a_background_grandchild_is_killed_when_the_main_process_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    // The grandchild keeps stdout open: reading it must not wait 30 s.
    // (The pause lets the job's shell become `sleep`, so that the name below is known.)
    let spec = sh(&format!(
        "echo $$ > {}; sleep 30 & sleep 0.3; echo done",
        pid_file.display()
    ));
    let started = Instant::now();
    let v = ok(&spec).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v["stdout"], "done\n");
    assert!(live_in_group(read_pid(&pid_file)).is_empty());
    // What was stopped is named: its pid and its program.
    let stopped = v["stopped"].as_array().expect("stopped listed");
    assert_eq!(stopped.len(), 1, "{v}");
    assert_eq!(stopped[0]["command"], "sleep");
    assert_eq!(
        cairn_steps::shell::leftovers_note(&v).as_deref(),
        Some(
            format!(
                "stopped what it left running: pid {} (sleep)",
                stopped[0]["pid"]
            )
            .as_str()
        )
    );
    // A step that leaves nothing says nothing about it.
    let v = ok(&sh("sleep 0.01 & wait")).await;
    assert!(v.get("stopped").is_none(), "{v}");
    assert_eq!(cairn_steps::shell::leftovers_note(&v), None);
}

#[tokio::test]
async fn command_not_found_both_ways() {
    let e = run(
        &argv(&["cairn-no-such-tool", "--x"]),
        &CancellationToken::new(),
    )
    .await
    .expect_err("enoent");
    assert!(matches!(e, StepError::Setup { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "command not found: `cairn-no-such-tool` (is it installed and on PATH?)"
    );

    let e = run(&sh("cairn-no-such-tool --x"), &CancellationToken::new())
        .await
        .expect_err("127");
    assert!(matches!(e, StepError::Failed { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "command not found: `cairn-no-such-tool` (is it installed and on PATH?)"
    );
    assert_eq!(e.result().expect("result")["exit_code"], 127);

    let e = run(&argv(&[]), &CancellationToken::new())
        .await
        .expect_err("empty");
    assert!(matches!(e, StepError::Setup { .. }));
}

#[tokio::test]
async fn non_utf8_output_is_lossy_and_long_lines_are_trimmed() {
    let v = ok(&sh("printf 'a\\377b'")).await;
    assert_eq!(v["stdout"], "a\u{FFFD}b");
    let e = run(
        &sh("printf 'x%.0s' $(seq 1 500) >&2; exit 2"),
        &CancellationToken::new(),
    )
    .await
    .expect_err("exit 2");
    let message = e.to_string();
    assert!(
        message.starts_with("exit code 2: xxx") && message.ends_with('…'),
        "{message}"
    );
    assert!(message.chars().count() < 220);
}

/// Polls until `check` holds or two seconds pass.
async fn eventually(check: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn dropping_the_step_future_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let spec = sh(&format!(
        "echo $$ > {}; sleep 30 & wait",
        pid_file.display()
    ));
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        run(&spec, &CancellationToken::new()),
    )
    .await;
    assert!(dropped.is_err(), "the step should still have been running");
    let pgid = read_pid(&pid_file);
    assert!(
        eventually(|| live_in_group(pgid).is_empty()).await,
        "{:?}",
        live_in_group(pgid)
    );
}

/// Not a test by itself: run by `the_child_dies_with_cairn` in a separate process that is
/// then SIGKILLed, leaving the kernel's parent-death signal as the only thing that can act.
#[tokio::test]
#[ignore = "a helper process, run by `the_child_dies_with_cairn`"]
async fn pdeathsig_helper() {
    let Ok(pid_file) = std::env::var("CAIRN_PDEATHSIG_PID_FILE") else {
        return;
    };
    let spec = sh(&format!("echo $$ > {pid_file}; exec sleep 30"));
    // Spawned from a task on another runtime thread that goes away: the dedicated spawner
    // thread must keep the child alive until the whole process dies.
    let _ = run(&spec, &CancellationToken::new()).await;
}

#[tokio::test]
async fn the_child_dies_with_cairn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut helper = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["pdeathsig_helper", "--exact", "--ignored", "--nocapture"])
        .env("CAIRN_PDEATHSIG_PID_FILE", &pid_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("helper");
    assert!(
        eventually(|| std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))).await
    );
    let pid = read_pid(&pid_file);
    // Still alive while its parent lives, whatever thread spawned it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!live_in_group(pid).is_empty());
    helper.kill().expect("SIGKILL the helper");
    let _ = helper.wait();
    assert!(
        eventually(|| live_in_group(pid).is_empty()).await,
        "child outlived cairn"
    );
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    cairn_procfs::stat(pid).is_some_and(|s| s.live())
}

/// Waits until the script has written a pid to `path` (a whole line).
async fn pid_written(path: &Path) -> i32 {
    assert!(
        eventually(|| std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))).await,
        "no pid in {}",
        path.display()
    );
    read_pid(path)
}

/// `set -m` puts a background job in a process group of its own: killing the step's group
/// does not reach it. It stays in the step's session, below the spawner.
#[tokio::test]
async fn a_job_in_its_own_group_is_killed_at_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut spec = sh(&format!(
        "set -m; sleep 100 & echo $! > {}; sleep 30",
        pid_file.display()
    ));
    spec.timeout = Some(Duration::from_millis(500));
    let e = run(&spec, &CancellationToken::new())
        .await
        .expect_err("timeout");
    assert!(matches!(e, StepError::Timeout { .. }), "{e:?}");
    let escaped = read_pid(&pid_file);
    assert!(
        !alive(escaped),
        "the `set -m` job {escaped} outlived the timeout"
    );
}

#[tokio::test]
async fn a_job_in_its_own_group_is_killed_at_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let spec = sh(&format!(
        "set -m; sleep 100 & echo $! > {}; sleep 30",
        pid_file.display()
    ));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let watched = pid_file.clone();
    tokio::spawn(async move {
        pid_written(&watched).await;
        trigger.cancel();
    });
    let e = run(&spec, &cancel).await.expect_err("cancelled");
    assert!(matches!(e, StepError::Cancelled { .. }), "{e:?}");
    let escaped = read_pid(&pid_file);
    assert!(
        !alive(escaped),
        "the `set -m` job {escaped} outlived the cancel"
    );
}

#[tokio::test]
async fn a_job_in_its_own_group_is_killed_when_the_main_process_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let spec = sh(&format!(
        "set -m; sleep 100 & echo $! > {}; echo done",
        pid_file.display()
    ));
    let started = Instant::now();
    let v = ok(&spec).await;
    // Not the DRAIN wait for a pipe held open: the job was found and stopped.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v["stdout"], "done\n");
    let escaped = read_pid(&pid_file);
    assert!(
        !alive(escaped),
        "the `set -m` job {escaped} outlived its step"
    );
}

/// `setsid` leaves the session too; while its parent lives it is still the step's descendant.
#[tokio::test]
async fn a_new_session_is_killed_at_timeout_while_its_parent_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut spec = sh(&format!(
        "setsid sleep 100 & echo $! > {}; sleep 30",
        pid_file.display()
    ));
    spec.timeout = Some(Duration::from_millis(500));
    run(&spec, &CancellationToken::new())
        .await
        .expect_err("timeout");
    let escaped = read_pid(&pid_file);
    assert!(
        !alive(escaped),
        "the setsid process {escaped} outlived the timeout"
    );
}

/// Run by `an_orphaned_new_session_is_killed_when_no_other_step_runs` in a process of its own:
/// the test binary's other tests would count as other steps running.
#[tokio::test]
#[ignore = "a helper process, run by `an_orphaned_new_session_is_killed_when_no_other_step_runs`"]
async fn orphaned_session_helper() {
    let Ok(pid_file) = std::env::var("CAIRN_ORPHAN_PID_FILE") else {
        return;
    };
    // The subshell exits at once: the setsid sleep is orphaned, reparented to the spawner.
    let spec = sh(&format!(
        "(setsid sleep 100 & echo $! > {pid_file}); echo done"
    ));
    let v = ok(&spec).await;
    assert_eq!(v["stdout"], "done\n");
    let escaped = read_pid(Path::new(&pid_file));
    assert!(!alive(escaped), "the orphan {escaped} outlived its step");
    std::fs::write(format!("{pid_file}.ok"), "ok").expect("mark");
}

#[tokio::test]
async fn an_orphaned_new_session_is_killed_when_no_other_step_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "orphaned_session_helper",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("CAIRN_ORPHAN_PID_FILE", &pid_file)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("helper");
    assert!(status.success(), "the helper failed");
    assert!(dir.path().join("pid.ok").exists(), "the helper did not run");
    let escaped = read_pid(&pid_file);
    assert!(!alive(escaped), "the orphan {escaped} outlived its step");
}

/// Run by `everything_below_dies_with_cairn`: a step whose job left its group, in a process
/// that is then SIGKILLed.
#[tokio::test]
#[ignore = "a helper process, run by `everything_below_dies_with_cairn`"]
async fn sigkill_helper() {
    let Ok(dir) = std::env::var("CAIRN_SIGKILL_DIR") else {
        return;
    };
    let spec = sh(&format!(
        "set -m; sleep 100 & echo $! > {dir}/job; (setsid sleep 100 & echo $! > {dir}/orphan); \
         echo $$ > {dir}/leader; exec sleep 30"
    ));
    let _ = run(&spec, &CancellationToken::new()).await;
}

#[tokio::test]
async fn everything_below_dies_with_cairn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut helper = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["sigkill_helper", "--exact", "--ignored", "--nocapture"])
        .env("CAIRN_SIGKILL_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("helper");
    let leader = pid_written(&dir.path().join("leader")).await;
    let job = read_pid(&dir.path().join("job"));
    let orphan = read_pid(&dir.path().join("orphan"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for pid in [leader, job, orphan] {
        assert!(alive(pid), "{pid} should run while its parent lives");
    }
    helper.kill().expect("SIGKILL the helper");
    let _ = helper.wait();
    for pid in [leader, job, orphan] {
        assert!(eventually(|| !alive(pid)).await, "{pid} outlived cairn");
    }
}

/// The spawner receives arguments and environment through a memfd: far more than a datagram.
#[tokio::test]
async fn large_arguments_and_environment_pass_whole() {
    let big = "x".repeat(100_000);
    let mut spec = argv(&["bash", "-c", "printf '%s' \"${#1} ${#BIG}\"", "_", &big]);
    spec.env.push(("BIG".into(), big.clone()));
    let v = ok(&spec).await;
    assert_eq!(v["stdout"], "100000 100000");
    // Beyond the kernel's limit for one string: refused by exec, reported, nothing hangs.
    let mut spec = argv(&["true"]);
    spec.env.push(("HUGE".into(), "y".repeat(1 << 20)));
    let e = run(&spec, &CancellationToken::new())
        .await
        .expect_err("E2BIG");
    assert!(matches!(e, StepError::Setup { .. }), "{e:?}");
    assert!(e.to_string().contains("too long"), "{e}");
}

/// Run by `a_detached_daemon_outlives_the_step_and_cairn`: a detached step starting daemons,
/// then an ordinary step (which stops orphans when no other step runs), in a process that is
/// then SIGKILLed.
#[tokio::test]
#[ignore = "a helper process, run by `a_detached_daemon_outlives_the_step_and_cairn`"]
async fn detach_helper() {
    let Ok(dir) = std::env::var("CAIRN_DETACH_DIR") else {
        return;
    };
    // A job in the step's session with a worker of its own, and a classic daemon (fork,
    // setsid, the parent exits: `pg_ctl start` does so).
    let mut spec = sh(&format!(
        "nohup bash -c 'sleep 300 & echo $! > {dir}/worker; env > {dir}/env; exec sleep 300' \
         >{dir}/daemon.log 2>&1 & echo $! > {dir}/daemon; \
         (setsid bash -c 'echo $$ > {dir}/session; exec sleep 300' </dev/null >/dev/null 2>&1 &); \
         echo started"
    ));
    spec.detach = true;
    spec.env = vec![("STEP_VAR".into(), "given".into())];
    let v = run(&spec, &CancellationToken::new())
        .await
        .expect("detached");
    std::fs::write(format!("{dir}/result"), v.to_string()).expect("result");
    // An ordinary step after it: what it leaves is stopped, the released daemons are not.
    let v = run(
        &sh(&format!("sleep 300 & echo $! > {dir}/ordinary; sleep 0.3")),
        &CancellationToken::new(),
    )
    .await
    .expect("ordinary");
    std::fs::write(format!("{dir}/ordinary_result"), v.to_string()).expect("result");
    // A step still running when Cairn dies.
    let _ = run(
        &sh(&format!("echo $$ > {dir}/running; exec sleep 30")),
        &CancellationToken::new(),
    )
    .await;
}

#[tokio::test]
async fn a_detached_daemon_outlives_the_step_and_cairn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut helper = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["detach_helper", "--exact", "--ignored", "--nocapture"])
        .env("CAIRN_DETACH_DIR", dir.path())
        .env("CAIRN_TEST_TOKEN", "s3cret-from-cairns-environment")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("helper");
    let running = pid_written(&dir.path().join("running")).await;
    let daemon = read_pid(&dir.path().join("daemon"));
    let worker = pid_written(&dir.path().join("worker")).await;
    let session = read_pid(&dir.path().join("session"));
    let _cleanup = KillOnDrop(vec![daemon, worker, session]);
    let ordinary = read_pid(&dir.path().join("ordinary"));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("result")).expect("result"))
            .expect("json");
    assert_eq!(result["stdout"], "started\n");
    let mut detached: Vec<i64> = result["detached"]
        .as_array()
        .expect("detached listed")
        .iter()
        .map(|d| d["pid"].as_i64().expect("pid"))
        .collect();
    detached.sort();
    // The daemons (and whatever they were running at that moment: the worker, `env`, unless
    // not started yet; what starts later is below them, released with them).
    assert!(
        detached.contains(&i64::from(daemon)) && detached.contains(&i64::from(session)),
        "{result}"
    );
    assert!(
        cairn_steps::shell::leftovers_note(&result)
            .is_some_and(|n| n.starts_with("left running: pids ")),
        "{result}"
    );
    // The ordinary step's job was stopped, and named; the daemons were not taken for its own.
    let ordinary_result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("ordinary_result")).expect("result"),
    )
    .expect("json");
    assert_eq!(
        ordinary_result["stopped"],
        serde_json::json!([{"pid": ordinary, "command": "sleep"}])
    );
    assert!(!alive(ordinary));
    // The daemon's environment: the step's own and the allowlist, not Cairn's secret.
    let env = std::fs::read_to_string(dir.path().join("env")).expect("env");
    assert!(env.contains("STEP_VAR=given\n"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert!(!env.contains("s3cret"), "{env}");
    helper.kill().expect("SIGKILL the helper");
    let _ = helper.wait();
    assert!(
        eventually(|| !alive(running)).await,
        "a running step outlived cairn"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for pid in [daemon, worker, session] {
        assert!(alive(pid), "detached {pid} died with cairn");
    }
}

/// SIGKILLs the processes a test released, however the test ends.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test]
async fn a_detached_process_holding_the_output_is_stopped_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    // `nohup` does not redirect an output that is not a terminal: the daemon keeps the pipe.
    let mut spec = sh(&format!(
        "nohup sleep 300 & echo $! > {}; echo started",
        pid_file.display()
    ));
    spec.detach = true;
    let started = Instant::now();
    let e = run(&spec, &CancellationToken::new())
        .await
        .expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let pid = read_pid(&pid_file);
    assert_eq!(
        e.to_string(),
        format!(
            "pid {pid} (sleep) left running still holds the step's output, so it cannot run on \
             after the step: stopped; redirect its stdout and stderr (`nohup CMD >FILE 2>&1 &`)"
        )
    );
    let result = e.result().expect("result");
    assert_eq!(result["stdout"], "started\n");
    assert_eq!(result["stopped"][0]["pid"], pid);
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_detached_step_that_fails_stops_what_it_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut spec = sh(&format!(
        "sleep 300 >/dev/null 2>&1 & echo $! > {}; exit 3",
        pid_file.display()
    ));
    spec.detach = true;
    let e = run(&spec, &CancellationToken::new())
        .await
        .expect_err("exit 3");
    let pid = read_pid(&pid_file);
    assert_eq!(e.result().expect("result")["stopped"][0]["pid"], pid);
    assert!(!alive(pid));
    // Nothing left running: said so.
    let mut spec = sh("echo nothing");
    spec.detach = true;
    let v = ok(&spec).await;
    assert_eq!(v["detached"], serde_json::json!([]));
    assert_eq!(
        cairn_steps::shell::leftovers_note(&v).as_deref(),
        Some("left nothing running")
    );
}

/// Two detached steps ending together: each releases its own daemon, never the other's.
#[tokio::test]
async fn two_detached_steps_at_once_release_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = |name: &str| {
        let mut s = sh(&format!(
            "sleep 300 >/dev/null 2>&1 & echo $! > {}; sleep 0.3",
            dir.path().join(name).display()
        ));
        s.detach = true;
        s
    };
    let (a, b) = (spec("a"), spec("b"));
    let cancel = CancellationToken::new();
    let (ra, rb) = tokio::join!(run(&a, &cancel), run(&b, &cancel));
    let (pa, pb) = (
        read_pid(&dir.path().join("a")),
        read_pid(&dir.path().join("b")),
    );
    let _cleanup = KillOnDrop(vec![pa, pb]);
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!(
        ra["detached"],
        serde_json::json!([{"pid": pa, "command": "sleep"}])
    );
    assert_eq!(
        rb["detached"],
        serde_json::json!([{"pid": pb, "command": "sleep"}])
    );
    // A later ordinary step does not take them for its own.
    let v = ok(&sh("true")).await;
    assert!(v.get("stopped").is_none(), "{v}");
    assert!(alive(pa) && alive(pb));
}
