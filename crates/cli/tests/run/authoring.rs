//! What runbook authors read from a run: step timing (`steps.X.started_at`, `finished_at`,
//! `duration`), thresholds given as templates, and `run.dir` (the runbook's folder).

use super::common::Sandbox;
use std::process::Command;

#[test]
fn step_timing_is_readable_in_later_steps() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: timing
steps:
  - id: nap
    shell: sleep 0.3
  - id: never
    when: "false"
    shell: "true"
  - id: read
    needs: [nap, never]
    shell: "true"
outputs:
  duration: "{{ steps.nap.duration }}"
  started: "{{ steps.nap.started_at }}"
  finished: "{{ steps.nap.finished_at }}"
  skipped: "{{ [steps.never.started_at, steps.never.finished_at, steps.never.duration] }}"
"#,
        &[],
    );
    run.expect_code(0);
    let out = run.outputs();
    let d = out["duration"].as_f64().expect("duration is a number");
    assert!((0.3..10.0).contains(&d), "{out}");
    let parse = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(out[k].as_str().expect(k)).expect("RFC 3339")
    };
    let (s, f) = (parse("started"), parse("finished"));
    let between = (f - s).num_milliseconds() as f64 / 1000.0;
    assert!((between - d).abs() < 0.002, "{out}");
    assert!(
        out["started"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{out}"
    );
    assert_eq!(out["skipped"], serde_json::json!([null, null, null]));
}

const THRESHOLDS: &str = r#"
cairn: 1
name: thresholds
inputs:
  warn: { type: string, default: "50" }
steps:
  - id: pool
    check: { value: 60, warning: "> {{ inputs.warn }}", critical: ">= {{ inputs.warn | int * 2 }}", unit: "%" }
outputs:
  warning: "{{ steps.pool.result.warning }}"
  critical: "{{ steps.pool.result.critical }}"
"#;

#[test]
fn thresholds_may_be_templates() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(THRESHOLDS, &[]);
    run.expect_code(0);
    assert_eq!(run.finished("pool")["note"], "warning: 60 %");
    assert_eq!(run.outputs()["warning"], "> 50");
    assert_eq!(run.outputs()["critical"], ">= 100");

    let run = sb.run_yaml(THRESHOLDS, &["--set", "warn=70"]);
    run.expect_code(0);
    assert_eq!(run.finished("pool")["note"], "ok: 60 %");

    let run = sb.run_yaml(THRESHOLDS, &["--set", "warn=30"]);
    run.expect_code(1);
    assert_eq!(run.finished("pool")["note"], "critical: 60 %");

    // A value that does not make a threshold fails the step, naming the field.
    let run = sb.run_yaml(THRESHOLDS, &["--set", "warn=1; rm -rf /"]);
    run.expect_code(1);
    let err = run.finished("pool")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("check.critical") || err.contains("check.warning"),
        "{err}"
    );
}

#[test]
fn a_templated_threshold_is_checked_by_validate_and_rendered_by_plan() {
    let sb = Sandbox::new();
    let bad = sb.write(
        "bad.yaml",
        "cairn: 1\nname: t\nsteps:\n  - id: c\n    check: { value: 1, warning: \"> {{ inputs.nope }}\" }\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["validate"])
        .arg(&bad)
        .output()
        .expect("cairn validate");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("undefined name `inputs.nope`"), "{err}");

    let good = sb.write("good.yaml", THRESHOLDS);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["plan"])
        .arg(&good)
        .args(["--set", "warn=80"])
        .output()
        .expect("cairn plan");
    assert_eq!(out.status.code(), Some(0));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("warning > 80; critical >= 160"), "{plan}");
}

#[test]
fn run_dir_is_the_runbooks_folder_wherever_cairn_runs() {
    let sb = Sandbox::new();
    sb.write("book/beside.txt", "found me\n");
    sb.write(
        "book/read.yaml",
        "cairn: 1\nname: dir\nsteps:\n  - id: read\n    shell: cat {{ run.dir }}/beside.txt\n    outputs: { text: \"{{ result.stdout | trim }}\" }\noutputs: { text: \"{{ steps.read.outputs.text }}\" }\n",
    );
    std::fs::create_dir_all(sb.path().join("elsewhere")).expect("mkdir");
    let mut cmd = sb.command(&sb.file("book/read.yaml"), &[]);
    cmd.current_dir(sb.path().join("elsewhere"));
    let run = sb.run_with(cmd);
    run.expect_code(0);
    assert_eq!(run.outputs()["text"], "found me");
}

/// `cairn validate FILE`: exit code and stderr.
fn validate(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env("NO_COLOR", "1")
        .args(["validate"])
        .arg(path)
        .output()
        .expect("cairn validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_statement_that_cannot_run_in_a_transaction_is_refused_in_a_script_and_runs_alone() {
    let sb = Sandbox::new();
    let table = super::common::Table::new("cairn_lone");
    let t = &table.0;
    super::common::pg(&format!(
        "CREATE TABLE {t} (a int); INSERT INTO {t} SELECT generate_series(1, 100)"
    ));
    let script = sb.write(
        "script.yaml",
        format!(
            "cairn: 1\nname: lone\ntargets:\n  db: {{ postgres: \"{}\" }}\nsteps:\n  - id: tidy\n    sql:\n      target: db\n      query: |\n        DELETE FROM {t} WHERE a > 90;\n        -- then reclaim the space; VACUUM in a comment does not count\n        VACUUM (VERBOSE) {t};\n        SELECT 'CREATE INDEX CONCURRENTLY; VACUUM' AS text\n",
            super::common::PG_URL
        ),
    );
    let (code, err) = validate(&script);
    assert_eq!(code, Some(2), "{err}");
    let file = script.display();
    assert!(
        err.contains(&format!(
            "error: `VACUUM` cannot run inside a transaction block, and a query of several statements runs as one\n  --> {file}:12:9\n"
        )),
        "{err}"
    );
    assert!(err.contains("VACUUM (VERBOSE)"), "{err}");
    assert!(
        err.contains("= help: give it a `sql` step of its own, one statement"),
        "{err}"
    );
    // Only the VACUUM: not the one in the comment, nor the words in the string.
    assert!(err.contains("(1 error, 0 warnings)"), "{err}");

    // Split into steps of one statement each, it runs, and VACUUM's statistics are in its result.
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: lone
targets:
  db: {{ postgres: "{url}" }}
steps:
  - id: prune
    sql: {{ target: db, query: "DELETE FROM {t} WHERE a > 90" }}
  - id: vacuum
    sql: {{ target: db, query: "VACUUM (VERBOSE) {t}" }}
    outputs:
      notices: "{{{{ result.notices | length }}}}"
      vacuumed: "{{{{ 'vacuuming' in (result.notices | map(attribute='message') | join(' ')) }}}}"
outputs:
  notices: "{{{{ steps.vacuum.outputs.notices }}}}"
  vacuumed: "{{{{ steps.vacuum.outputs.vacuumed }}}}"
"#,
            url = super::common::PG_URL
        ),
        &[],
    );
    run.expect_code(0);
    assert!(
        run.outputs()["notices"].as_u64().is_some_and(|n| n > 0),
        "{run}"
    );
    assert_eq!(run.outputs()["vacuumed"], true, "{run}");
}

#[test]
fn notices_pass_through_the_masking_door() {
    let sb = Sandbox::new();
    let f = super::common::unique("cairn_say");
    super::common::pg(&format!(
        "CREATE FUNCTION {f}(t text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'said %', t; RETURN 1; END $$"
    ));
    let mut cmd = sb.command("runbook.yaml", &[]);
    cmd.env("CAIRN_TEST_PW", "hunter2-canary");
    sb.write(
        "runbook.yaml",
        format!(
            r#"
cairn: 1
name: said
secrets:
  pw: {{ env: CAIRN_TEST_PW }}
targets:
  db: {{ postgres: "{url}" }}
steps:
  - id: say
    sql: {{ target: db, query: "SELECT {f}({{{{ secrets.pw }}}}) AS n" }}
    outputs: {{ said: "{{{{ result.notices[0].message }}}}" }}
outputs:
  said: "{{{{ steps.say.outputs.said }}}}"
"#,
            url = super::common::PG_URL
        ),
    );
    let run = sb.run_with(cmd);
    super::common::pg(&format!("DROP FUNCTION {f}(text)"));
    run.expect_code(0);
    assert_eq!(run.outputs()["said"], "said ***", "{run}");
    let id = run.run_finished()["run_id"]
        .as_str()
        .expect("id")
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["show", &id, "--step", "say", "--output", "json", "--state"])
        .arg(sb.path().join("state.db"))
        .output()
        .expect("cairn show");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("said ***"), "{shown}");
    assert!(!shown.contains("hunter2-canary"), "{shown}");
    let state = std::fs::read(sb.path().join("state.db")).expect("state.db");
    assert!(
        !state
            .windows(b"hunter2-canary".len())
            .any(|w| w == b"hunter2-canary"),
        "the secret is in the state store"
    );
}

#[test]
fn a_report_after_a_failure_reads_the_failed_and_skipped_steps_with_defaults() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: after-failure
targets:
  db: {{ postgres: "{url}" }}
steps:
  - id: count
    sql: {{ target: db, query: "SELECT count(*) AS n FROM cairn_no_such_table" }}
    outputs: {{ rows: "{{{{ result.rows[0].n }}}}" }}
  - id: verify
    needs: [count]
    shell: echo verified
    outputs: {{ line: "{{{{ result.stdout | trim }}}}" }}
finally:
  - id: report
    report:
      to: report.md
      inline: |
        rows: {{{{ steps.count.outputs.rows | default('n/a') }}}} ({{{{ steps.count.status }}}}: {{{{ steps.count.error }}}})
        verify: {{{{ steps.verify.outputs.line | default('n/a') }}}} ({{{{ steps.verify.status }}}}: {{{{ steps.verify.error }}}})
        verify rows: {{{{ steps.verify.result.rows | default('n/a') }}}}
        count took: {{{{ steps.count.duration is number }}}}, verify took: {{{{ steps.verify.duration }}}}
"#,
            url = super::common::PG_URL
        ),
        &[],
    );
    run.expect_code(1);
    assert_eq!(run.status("report"), "succeeded", "{run}");
    let report = sb.read("report.md");
    assert_eq!(
        report,
        "rows: n/a (failed: relation \"cairn_no_such_table\" does not exist (SQLSTATE 42P01) on postgres://postgres@127.0.0.1:5432/test)\n\
         verify: n/a (skipped: not run: `count` failed)\n\
         verify rows: n/a\n\
         count took: true, verify took: null\n",
        "{run}"
    );
}
