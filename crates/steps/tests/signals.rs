//! A step's process starts with every signal at its default action and none blocked, whatever
//! Cairn inherited: its own test binary, so that this test's process is the one the spawner is
//! forked from, with the dispositions and mask set here first.

use cairn_steps::shell::{Command, ShellSpec, run};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
use tokio_util::sync::CancellationToken;

/// The `Sig*` masks of a step's process, as it read them from /proc/self/status.
async fn masks(command: Command) -> Vec<(String, u64)> {
    let v = run(&ShellSpec::new(command), &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("step failed: {e} {:?}", e.result()));
    let out = v["stdout"].as_str().expect("stdout").to_string();
    let masks: Vec<(String, u64)> = out
        .lines()
        .filter_map(|l| {
            let (name, hex) = l.split_once(':')?;
            if !["SigPnd", "SigBlk", "SigIgn", "SigCgt"].contains(&name) {
                return None;
            }
            let value = u64::from_str_radix(hex.trim(), 16).ok()?;
            Some((name.to_string(), value))
        })
        .collect();
    let names: Vec<&str> = masks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["SigPnd", "SigBlk", "SigIgn", "SigCgt"], "{out}");
    masks
}

#[tokio::test(flavor = "current_thread")]
async fn a_step_starts_with_default_signals_and_an_empty_mask() {
    // What a hostile parent leaves: ignored signals (`nohup`, `trap '' …`), handled ones (the
    // runtime's), blocked ones. Set before the first step starts the spawner from this thread.
    // SAFETY: SIG_IGN only, no handler code.
    unsafe {
        for s in [
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGINT,
            Signal::SIGPIPE,
            Signal::SIGWINCH,
            Signal::SIGALRM,
        ] {
            signal(s, SigHandler::SigIgn).expect("ignore");
        }
    }
    let _term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    let _chld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .expect("a SIGCHLD handler");
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGUSR2);
    blocked.add(Signal::SIGQUIT);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).expect("block");

    // `cat`, which installs no handler of its own (grep catches SIGSEGV).
    for command in [
        // The program itself, and a process the step's shell starts.
        Command::Argv(["cat", "/proc/self/status"].map(String::from).to_vec()),
        Command::Shell("cat /proc/self/status; true".to_string()),
    ] {
        for (name, value) in masks(command.clone()).await {
            assert_eq!(value, 0, "{name} of a step's process is {value:#x}");
        }
    }
}
