//! `cairn runs` and `cairn show`: history, filters, captured logs, and secrets kept out.

use crate::common::Sandbox;
use serde_json::Value;

fn ids(runs: &[Value]) -> Vec<String> {
    runs.iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn runs_are_listed_newest_first_and_filtered() {
    let sb = Sandbox::new();
    sb.write(
        "alpha.yaml",
        "cairn: 1\nname: alpha\nsteps:\n  - id: a\n    shell: \"true\"\n",
    );
    sb.write(
        "beta.yaml",
        "cairn: 1\nname: beta\nsteps:\n  - id: b\n    shell: exit 4\n",
    );
    let a1 = sb.run("alpha.yaml", &[]).expect(0).run_id();
    let b1 = sb.run("beta.yaml", &[]).expect(1).run_id();
    let a2 = sb.run("alpha.yaml", &[]).expect(0).run_id();

    let all = sb.runs(&[]);
    assert_eq!(ids(&all), [a2.as_str(), &b1, &a1]);
    for r in &all {
        for key in ["id", "runbook", "status", "started_at"] {
            assert!(!r[key].is_null(), "`{key}` in {r:#}");
        }
    }
    assert_eq!(ids(&sb.runs(&["--runbook", "alpha"])), [a2.as_str(), &a1]);
    assert_eq!(ids(&sb.runs(&["--status", "failed"])), [b1.as_str()]);
    assert_eq!(
        ids(&sb.runs(&["--runbook", "alpha", "--status", "failed"])),
        Vec::<String>::new()
    );
    assert_eq!(ids(&sb.runs(&["--limit", "1"])), [a2.as_str()]);

    let text = sb.cairn(&["runs"]);
    text.expect(0);
    let rows: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.contains("alpha") || l.contains("beta"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].contains(&a2) && rows[0].contains("succeeded"),
        "{text}"
    );
    assert!(
        rows[1].contains(&b1) && rows[1].contains("failed"),
        "{text}"
    );

    sb.cairn(&["runs", "--status", "exploded"]).expect(2);
}

/// A run carries its runbook's labels (a sub-run its own runbook's); `cairn runs --label`
/// keeps the runs having all of them, given as a comma list or the option repeated.
#[test]
fn runs_carry_their_runbooks_labels_and_are_filtered_by_them() {
    let sb = Sandbox::new();
    sb.write(
        "backup.yaml",
        "cairn: 1\nname: backup\nlabels: { team: memory, kind: backup }\nsteps:\n  - id: a\n    shell: \"true\"\n",
    );
    sb.write(
        "restore.yaml",
        "cairn: 1\nname: restore\nlabels: { team: memory, kind: restore }\nsteps:\n  - id: child\n    uses: child.yaml\n",
    );
    sb.write(
        "child.yaml",
        "cairn: 1\nname: child\nlabels: { team: storage }\nsteps:\n  - id: c\n    shell: \"true\"\n",
    );
    sb.write(
        "plain.yaml",
        "cairn: 1\nname: plain\nsteps:\n  - id: p\n    shell: \"true\"\n",
    );
    let backup = sb.run("backup.yaml", &[]).expect(0).run_id();
    let restore = sb.run("restore.yaml", &[]).expect(0).run_id();
    let plain = sb.run("plain.yaml", &[]).expect(0).run_id();

    let all = sb.runs(&[]);
    let labels_of = |id: &str| {
        all.iter()
            .find(|r| r["id"] == id)
            .map(|r| r["labels"].clone())
            .unwrap_or_else(|| panic!("run {id} listed: {all:#?}"))
    };
    assert_eq!(
        labels_of(&backup),
        serde_json::json!({ "team": "memory", "kind": "backup" })
    );
    assert_eq!(labels_of(&plain), serde_json::json!({}));
    let child = all
        .iter()
        .find(|r| r["parent_run"] == restore.as_str())
        .unwrap_or_else(|| panic!("the sub-run is listed: {all:#?}"));
    assert_eq!(child["labels"], serde_json::json!({ "team": "storage" }));
    let child = child["id"].as_str().expect("id").to_string();

    assert_eq!(
        ids(&sb.runs(&["--label", "team=memory"])),
        [restore.as_str(), &backup]
    );
    assert_eq!(
        ids(&sb.runs(&["--label", "team=storage"])),
        [child.as_str()]
    );
    assert_eq!(
        ids(&sb.runs(&["--label", "team=memory,kind=backup"])),
        [backup.as_str()]
    );
    assert_eq!(
        ids(&sb.runs(&["--label", "team=memory", "--label", "kind=restore"])),
        [restore.as_str()]
    );
    assert_eq!(
        ids(&sb.runs(&["--label", "team=memory", "--runbook", "backup"])),
        [backup.as_str()]
    );
    assert!(sb.runs(&["--label", "team=Memory"]).is_empty());
    let bad = sb.cairn(&["runs", "--label", "team"]);
    bad.expect(2);
    assert!(bad.stderr.contains("KEY=VALUE"), "{bad}");
}

#[test]
fn show_step_prints_the_captured_log() {
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        "cairn: 1\nname: chatty\nsteps:\n  - id: talk\n    shell: |\n      echo to-stdout-1\n      echo to-stdout-2\n      echo to-stderr >&2\n  - id: fail\n    shell: echo last words; exit 7\n",
    );
    let run = sb.run("rb.yaml", &[]).expect(1).run_id();

    let talk = sb.cairn(&["show", &run, "--step", "talk"]);
    talk.expect(0);
    assert!(
        talk.stdout.starts_with("talk: succeeded (attempt 1)\n"),
        "{talk}"
    );
    let log_at = talk
        .stdout
        .find("  log (")
        .unwrap_or_else(|| panic!("no log\n{talk}"));
    let log = &talk.stdout[log_at..];
    assert!(
        log.contains("--- stdout ---\nto-stdout-1\nto-stdout-2\n"),
        "{talk}"
    );
    assert!(log.contains("--- stderr ---\nto-stderr\n"), "{talk}");

    let fail = sb.cairn(&["show", &run, "--step", "fail"]);
    fail.expect(0);
    assert!(fail.stdout.contains("fail: failed (attempt 1)"), "{fail}");
    assert!(fail.stdout.contains("error: exit code 7"), "{fail}");
    assert!(fail.stdout.contains("last words"), "{fail}");

    let whole = sb.cairn(&["show", &run]);
    whole.expect(0);
    assert!(
        whole.stdout.contains(&format!("run {run}  chatty  failed")),
        "{whole}"
    );
    assert!(
        whole.stdout.contains("error: step `fail`: exit code 7"),
        "{whole}"
    );

    sb.cairn(&["show", &run, "--step", "nope"])
        .expect(2)
        .says("has no step `nope`");
    sb.cairn(&["show", "01NOSUCHRUN"]).expect(2);
}

/// A canary secret printed by a step, put in its env, its outputs and its error never reaches
/// `show`, `runs`, the step logs or the state file.
#[test]
fn secrets_are_masked_everywhere_show_looks() {
    const CANARY: &str = "canary-Zq7x/P+w=s3cr3t";
    let sb = Sandbox::new();
    sb.write(
        "rb.yaml",
        "cairn: 1
name: secretive
secrets:
  token: { env: CAIRN_TEST_CANARY }
steps:
  - id: leak
    shell: |
      echo \"token={{ secrets.token }}\"
      echo \"env=$TOKEN\" >&2
    env: { TOKEN: \"{{ secrets.token }}\" }
    outputs: { said: \"{{ result.stdout | trim }}\" }
  - id: die
    shell: echo \"dying with {{ secrets.token }}\" >&2; exit 3
",
    );
    let mut cmd = sb.command(&["run", "rb.yaml", "--log-format", "json"]);
    cmd.env("CAIRN_TEST_CANARY", CANARY);
    let ran = crate::common::finish(cmd);
    ran.expect(1);
    let run = ran.run_id();
    let encoded = urlencoding::encode(CANARY).into_owned();
    let leaks = |what: &str, text: &str| {
        assert!(
            !text.contains(CANARY) && !text.contains(&encoded),
            "{what} shows the secret:\n{text}"
        );
    };
    leaks("cairn run", &format!("{}{}", ran.stdout, ran.stderr));
    let shown = sb.cairn(&["show", &run]);
    shown.expect(0);
    assert!(
        shown.stdout.contains("***"),
        "masked, not dropped:\n{shown}"
    );
    leaks("show", &shown.stdout);
    leaks("show --output json", &sb.show(&run).to_string());
    for step in ["leak", "die"] {
        let s = sb.cairn(&["show", &run, "--step", step]);
        s.expect(0);
        assert!(s.stdout.contains("***"), "{s}");
        leaks("show --step", &s.stdout);
        let j = sb.cairn(&["show", &run, "--step", step, "--output", "json"]);
        leaks("show --step --output json", &j.stdout);
    }
    leaks("runs", &serde_json::to_string(&sb.runs(&[])).expect("json"));
    // The bytes at rest: the database (and its WAL, if any) and the step logs.
    for entry in walk(sb.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        if entry.ends_with("rb.yaml") {
            continue;
        }
        leaks(&entry.display().to_string(), &text);
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
