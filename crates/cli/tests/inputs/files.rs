//! Runbooks, `uses` sub-runbooks and report templates that are not regular files, are too big,
//! are empty or are not UTF-8: refused at once with a clear, located error; never a hang.

use super::common::{Sandbox, VALID};

#[test]
fn a_symlink_loop_in_a_folder_ends_the_search() {
    let sb = Sandbox::new();
    sb.write("books/ok.yaml", VALID);
    sb.mkdir("books/sub");
    // Two ways back up the tree, and a loop of file links.
    sb.symlink("..", "books/sub/up");
    sb.symlink(sb.join("books"), "books/again");
    sb.symlink("b.yaml", "books/a.yaml");
    sb.symlink("a.yaml", "books/b.yaml");
    let out = sb.cairn(&["validate", "books"]);
    out.expect(2)
        .stderr_has("√ books/ok.yaml\n")
        .stderr_has("x cannot read books/a.yaml: too many levels of symbolic links\n")
        .stderr_has("x cannot read books/b.yaml: too many levels of symbolic links\n");
    // The runbook is found once, not once per way to reach it.
    assert_eq!(out.stderr.matches("ok.yaml").count(), 1, "{out}");
}

#[test]
fn a_fifo_in_a_folder_is_refused_not_waited_for() {
    let sb = Sandbox::new();
    sb.write("books/ok.yaml", VALID);
    sb.fifo("books/x.yaml");
    sb.cairn(&["validate", "books"])
        .expect(2)
        .stderr_has("√ books/ok.yaml\n")
        .stderr_has("x cannot read books/x.yaml: it is a FIFO (named pipe), not a regular file\n")
        .stderr_has("2 files checked: 1 invalid, 1 error, 0 warnings\n");
    // Named directly, by every command that reads a runbook.
    for cmd in ["validate", "plan", "run", "graph"] {
        sb.cairn(&[cmd, "books/x.yaml", "--state", "memory:"][..if cmd == "run" { 4 } else { 2 }])
            .expect(2)
            .stderr_has("books/x.yaml: it is a FIFO (named pipe), not a regular file");
    }
}

#[test]
fn a_fifo_as_uses_or_report_template_is_refused() {
    let sb = Sandbox::new();
    sb.fifo("child.yaml");
    sb.fifo("report.md.j2");
    sb.write(
        "parent.yaml",
        "cairn: 1\nname: parent\nsteps:\n  - id: sub\n    uses: child.yaml\n  - id: rep\n    report: { template: report.md.j2, to: out.md }\n",
    );
    for cmd in ["validate", "plan", "run"] {
        let out = sb
            .cairn(&[cmd, "parent.yaml", "--state", "memory:"][..if cmd == "run" { 4 } else { 2 }]);
        out.expect(2)
            .stderr_has("error: `uses`: cannot read ")
            .stderr_has("child.yaml: it is a FIFO (named pipe), not a regular file\n")
            .stderr_has(" --> parent.yaml:5:11\n")
            .stderr_has("error: report template: cannot read ")
            .stderr_has("report.md.j2: it is a FIFO (named pipe), not a regular file\n")
            .stderr_has(" --> parent.yaml:7:25\n");
    }
    assert!(!sb.join("out.md").exists());
}

#[test]
fn dev_zero_as_runbook_or_template_is_refused_at_once() {
    let sb = Sandbox::new();
    for cmd in ["validate", "plan", "run"] {
        sb.cairn(&[cmd, "/dev/zero", "--state", "memory:"][..if cmd == "run" { 4 } else { 2 }])
            .expect(2)
            .stderr_has("cannot read /dev/zero: it is a character device, not a regular file");
    }
    sb.write(
        "rep.yaml",
        "cairn: 1\nname: rep\nsteps:\n  - id: rep\n    report: { template: /dev/zero, to: out.md }\n",
    );
    sb.cairn(&["validate", "rep.yaml"])
        .expect(2)
        .stderr_has("error: report template: cannot read /dev/zero: it is a character device, not a regular file\n");
    // `--inputs` may be a pipe (`<(…)`), but is never read past the size cap.
    sb.write("ok.yaml", VALID);
    sb.cairn(&["plan", "ok.yaml", "--inputs", "/dev/zero"])
        .expect(2)
        .stderr_has("error: cannot read /dev/zero: larger than the 16 MiB limit\n");
}

#[test]
fn a_file_over_the_cap_is_refused() {
    let sb = Sandbox::new();
    let big = sb.join("big.yaml");
    // Sparse: the size says 17 MiB, the disk holds nothing.
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(17 * 1024 * 1024))
        .expect("sparse file");
    sb.cairn(&["validate", "big.yaml"])
        .expect(2)
        .stderr_has("x cannot read big.yaml: larger than the 16 MiB limit\n");
}

#[test]
fn empty_and_comment_only_files_are_invalid_everywhere() {
    let sb = Sandbox::new();
    sb.write("empty.yaml", "");
    sb.write("comments.yaml", "# a runbook, one day\n");
    for (file, what) in [
        ("empty.yaml", "the file is empty"),
        ("comments.yaml", "the file holds only comments"),
    ] {
        for cmd in ["validate", "plan", "run"] {
            sb.cairn(&[cmd, file, "--state", "memory:"][..if cmd == "run" { 4 } else { 2 }])
                .expect(2)
                .stderr_has(&format!("error: {what}: a runbook is a YAML map\n"))
                .stderr_has(&format!(" --> {file}:1:1\n"));
        }
    }
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let sb = Sandbox::new();
    sb.write("latin1.yaml", b"cairn: 1\nname: caf\xe9\nsteps: []\n");
    for cmd in ["validate", "plan"] {
        sb.cairn(&[cmd, "latin1.yaml"])
            .expect(2)
            .stderr_has("error: not valid UTF-8 (byte 0xe9)\n")
            .stderr_has(" --> latin1.yaml:2:10\n")
            .stderr_has("2 | name: caf\u{fffd}\n");
    }
}

#[test]
fn a_five_megabyte_line_is_not_echoed_whole() {
    let sb = Sandbox::new();
    let long = "x".repeat(5_000_000);
    sb.write(
        "long.yaml",
        format!("cairn: 1\nname: long\nsteps:\n  - id: a\n    shell: echo\n    timeout: {long}\n"),
    );
    let out = sb.cairn(&["validate", "long.yaml"]);
    out.expect(2).stderr_has(" --> long.yaml:6:14\n");
    assert!(
        out.stderr.len() < 2_000,
        "{} bytes of stderr",
        out.stderr.len()
    );
    let json = sb.cairn(&["validate", "long.yaml", "--output", "json"]);
    json.expect(2);
    assert!(
        json.stdout.len() < 2_000,
        "{} bytes of JSON",
        json.stdout.len()
    );
}

#[test]
fn a_huge_retry_backoff_is_refused_before_anything_runs() {
    let sb = Sandbox::new();
    sb.write(
        "backoff.yaml",
        "cairn: 1\nname: b\nsteps:\n  - id: a\n    shell: 'false'\n    retry: { attempts: 3, delay: 0s, backoff: 1e308 }\n",
    );
    sb.cairn(&["run", "backoff.yaml", "--state", "memory:"])
        .expect(2)
        .stderr_has("error: `backoff` must be from 1.0 to 100\n")
        .stderr_has(" --> backoff.yaml:6:38\n");
}

/// `| indent(n)` with a huge n aborted the process and left the run `running`: now the step
/// fails with a clear error, the run ends `failed`, and a dry-run refuses it too.
#[test]
fn a_huge_indent_fails_the_step_not_the_process() {
    let sb = Sandbox::new();
    sb.write(
        "indent.yaml",
        "cairn: 1\nname: indent\nsteps:\n  - id: first\n    shell: touch first-ran\n  - id: wide\n    shell: \"echo {{ 'a\\nb' | indent(1000000000000) }}\"\n",
    );
    let state = sb.join("state.db").display().to_string();
    let out = sb.cairn(&["run", "indent.yaml", "--state", &state]);
    out.expect(1)
        .stderr_has("indent: the width must be at most 1000");
    assert!(sb.join("first-ran").exists());
    let runs = sb.cairn(&["runs", "--state", &state, "--output", "json"]);
    runs.expect(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("JSON");
    assert_eq!(runs[0]["status"], "failed", "{runs:#}");
    sb.cairn(&["plan", "indent.yaml"])
        .expect(2)
        .stderr_has("indent: the width must be at most 1000");
}

/// `--inputs` may be a pipe (`--inputs <(…)`): read to its end, as given.
#[test]
fn inputs_may_come_from_a_pipe() {
    let sb = Sandbox::new();
    sb.write(
        "greet.yaml",
        "cairn: 1\nname: greet\ninputs:\n  who: { type: string }\nsteps:\n  - id: hi\n    shell: echo {{ inputs.who }}\n",
    );
    let fifo = sb.fifo("inputs.yaml");
    // A real writer process on the other end, as a shell's process substitution would be.
    let mut writer = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo 'who: piped' > '{}'", fifo.display()))
        .spawn()
        .expect("spawn the writer");
    sb.cairn(&["plan", "greet.yaml", "--inputs", "inputs.yaml"])
        .expect(0)
        .stdout_has("who = \"piped\"");
    assert!(writer.wait().expect("writer").success());
}

#[test]
fn a_secret_file_that_is_not_a_regular_file_or_too_large_is_refused_at_once() {
    let sb = Sandbox::new();
    let fifo = sb.fifo("token.fifo");
    let big = sb.write("big.pem", vec![b'k'; 1024 * 1024 + 1]);
    let binary = sb.write("binary.key", [0x41, 0x42, 0xff, 0x43]);
    for (path, optional, says) in [
        (
            fifo.display().to_string(),
            false,
            "it is a FIFO (named pipe), not a regular file",
        ),
        // Optional does not make a FIFO absent: it is still a mistake, and it must not block.
        (
            fifo.display().to_string(),
            true,
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            "/dev/zero".to_string(),
            false,
            "it is a character device, not a regular file",
        ),
        (
            big.display().to_string(),
            false,
            "larger than the 1 MiB limit",
        ),
        (
            binary.display().to_string(),
            false,
            "is not valid UTF-8 text",
        ),
    ] {
        sb.write(
            "s.yaml",
            format!(
                "cairn: 1\nname: s\nsecrets:\n  k: {{ file: \"{path}\", optional: {optional} }}\nsteps:\n  - id: a\n    shell: \"true\"\n"
            ),
        );
        let out = sb.cairn(&["run", "s.yaml", "--state", "memory:"]);
        out.expect(2).stderr_has("secret `k`: ").stderr_has(says);
        // The offending byte of a binary secret is not quoted.
        assert!(!out.stderr.contains("0xff"), "{out}");
    }
}

#[test]
fn show_reads_a_step_log_only_if_it_is_a_regular_file() {
    let sb = Sandbox::new();
    sb.write(
        "l.yaml",
        "cairn: 1\nname: l\nsteps:\n  - id: talk\n    shell: echo hello-from-the-step\n  - id: gate\n    approval: Go?\n",
    );
    let paused = sb.cairn(&["run", "l.yaml", "--state", "state.db"]);
    paused.expect(3);
    // The run id is the first line of stdout.
    let run = paused
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let log = sb.join(&format!("logs/{run}/talk.log"));
    sb.cairn(&["show", &run, "--step", "talk", "--state", "state.db"])
        .expect(0)
        .stdout_has("hello-from-the-step");
    // A FIFO in the log's place: `show` says so instead of waiting for a writer.
    std::fs::remove_file(&log).expect("remove log");
    sb.fifo(&format!("logs/{run}/talk.log"));
    sb.cairn(&["show", &run, "--step", "talk", "--state", "state.db"])
        .expect(0)
        .stdout_has("not a regular file");
}
