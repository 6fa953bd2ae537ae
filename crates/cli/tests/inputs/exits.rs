//! Exit codes apart from the runbook's verdict: 4 for the infrastructure (a state store that is
//! down or lost mid-run), 2 for what was asked wrongly; and no colour codes in captured logs.

use super::common::Sandbox;

#[test]
fn a_state_store_that_is_down_exits_4() {
    let sb = Sandbox::new();
    sb.write("ok.yaml", super::common::VALID);
    // Nothing listens on port 1.
    let down = "postgres://postgres@127.0.0.1:1/test";
    for args in [
        &["runs", "--state", down][..],
        &["show", "01NOSUCHRUN", "--state", down],
        &["run", "ok.yaml", "--state", down],
    ] {
        sb.cairn(args)
            .expect(4)
            .stderr_has("error: cannot open state database postgres://postgres@127.0.0.1:1/test");
    }
}

#[test]
fn a_state_store_lost_mid_run_stops_the_run_with_exit_4() {
    let sb = Sandbox::new();
    let state = sb.join("state.db").display().to_string();
    sb.write(
        "lose.yaml",
        format!(
            "cairn: 1\nname: lose\nsteps:\n  - id: break_store\n    shell: sqlite3 -cmd '.timeout 10000' {state} 'DROP TABLE cairn_steps'\n  - id: after\n    needs: [break_store]\n    shell: touch after-ran\n"
        ),
    );
    let out = sb.cairn(&["run", "lose.yaml", "--state", &state]);
    out.expect(4)
        .stderr_has("error: the run stopped because its state could not be recorded: cannot record step `break_store`");
    assert!(
        !sb.join("after-ran").exists(),
        "a step ran after the store was lost\n{out}"
    );
}

/// A step removes the SQLite state file (or puts a copy in its place) while the run has it
/// open: the next checkpoint notices that the path no longer names the open file and the run
/// stops with exit 4, instead of committing into an unlinked file and leaving nothing behind.
fn state_file_swapped_mid_run(how: &str, said: &str) {
    let sb = Sandbox::new();
    let state = sb.join("state.db").display().to_string();
    sb.write(
        "swap.yaml",
        format!(
            "cairn: 1\nname: swap\nsteps:\n  - id: swap_store\n    shell: {how}\n  - id: after\n    needs: [swap_store]\n    shell: touch after-ran\n"
        ),
    );
    let out = sb.cairn(&["run", "swap.yaml", "--state", &state]);
    out.expect(4)
        .stderr_has("error: the run stopped because its state could not be recorded: ")
        .stderr_has(&format!(
            "state database {state} was {said} while this process had it open"
        ));
    assert!(
        !sb.join("after-ran").exists(),
        "a step ran after the store was lost\n{out}"
    );
}

#[test]
fn a_state_file_deleted_mid_run_stops_the_run_with_exit_4() {
    state_file_swapped_mid_run("rm state.db", "deleted");
}

#[test]
fn a_state_file_replaced_mid_run_stops_the_run_with_exit_4() {
    state_file_swapped_mid_run(
        "cp state.db copy.db && mv copy.db state.db",
        "replaced by another file",
    );
}

/// A runbook whose path is not UTF-8 (here its folder's name) is refused before anything is
/// recorded: the store keeps paths as text, and a lossy copy could never be resumed.
#[test]
fn a_runbook_path_that_is_not_utf8_is_refused_before_anything_is_recorded() {
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::new();
    let dir = sb.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("ok.yaml"), super::common::VALID).expect("write runbook");
    let state = sb.join("state.db").display().to_string();
    sb.cairn_in(&dir, &["run", "ok.yaml", "--state", &state])
        .expect(2)
        .stderr_has("ok.yaml\" is not valid UTF-8")
        .stderr_has("nothing was run");
    let listed = sb.cairn(&["runs", "--output", "json", "--state", &state]);
    listed.expect(0);
    assert_eq!(listed.stdout.trim(), "[]", "nothing was recorded\n{listed}");
}

#[test]
fn usage_mistakes_still_exit_2() {
    let sb = Sandbox::new();
    sb.cairn(&["validate", "nope.yaml"])
        .expect(2)
        .stderr_has("error: nope.yaml: no such file or folder\n");
    sb.cairn(&["runs", "--state", "mysql://x/y"])
        .expect(2)
        .stderr_has("unsupported state URL `mysql://x/y`");
    // A password with a `/` in it is still a password: never printed.
    let out = sb.cairn(&["runs", "--state", "foo://u:se/cretpw@h/db"]);
    out.expect(2)
        .stderr_has("unsupported state URL `foo://u:***@h/db`");
    assert!(!out.stderr.contains("cretpw"), "{}", out.stderr);
    sb.write("ok.yaml", super::common::VALID);
    sb.write("inputs.yaml", "[1, 2]\n");
    sb.cairn(&["plan", "ok.yaml", "--inputs", "inputs.yaml"])
        .expect(2)
        .stderr_has("inputs.yaml: expected a map of input names to values");
}

#[test]
fn clicolor_force_colours_a_pipe_and_no_color_wins_over_it() {
    let sb = Sandbox::new();
    sb.write(
        "bad.yaml",
        "cairn: 1\nname: t\nsteps:\n  - id: a\n    needs: [b]\n    shell: 'true'\n",
    );
    let run = |no_color: bool| {
        let mut c = sb.command(&["validate", "bad.yaml"]);
        c.env_remove("NO_COLOR").env("CLICOLOR_FORCE", "1");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = super::common::finish(c);
        out.expect(2);
        out
    };
    let forced = run(false);
    assert!(
        forced.stderr.contains("\x1b[") && forced.stderr.contains("error"),
        "CLICOLOR_FORCE=1 colours the diagnostics even in a pipe\n{forced}"
    );
    let plain = run(true);
    assert!(
        !plain.stderr.contains('\x1b') && plain.stderr.contains("error"),
        "NO_COLOR wins\n{plain}"
    );
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let sb = Sandbox::new();
    sb.write("ok.yaml", super::common::VALID);
    let state = sb.join("state.db").display().to_string();
    // Without NO_COLOR: a pipe alone must be enough.
    let mut c = sb.command(&["run", "ok.yaml", "--state", &state]);
    c.env_remove("NO_COLOR").env("CAIRN_LOG", "debug");
    let out = super::common::finish(c);
    out.expect(0);
    assert!(
        out.stderr.lines().any(|l| l.contains("DEBUG")),
        "debug logs expected on stderr\n{out}"
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "colour codes in captured stderr\n{out}"
    );
}
