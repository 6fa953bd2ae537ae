//! runbooks/drill/drill.yaml, the README's main job, run for real: its own PostgreSQL database,
//! its own Chroma server (`$CAIRN_CHROMA_BIN`; required, a missing binary fails), stand-ins for
//! the three APIs on free ports; health check, backup, disaster, recovery plan, verification,
//! teardown. Every claim is checked where it lands: the verdict and counts in the run's outputs,
//! the report file, and the absence afterwards of everything the drill made.

use super::common::{Sandbox, pg};
use std::net::TcpListener;
use std::path::PathBuf;

fn runbook() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../runbooks/drill/drill.yaml")
        .canonicalize()
        .expect("runbooks/drill/drill.yaml")
        .display()
        .to_string()
}

pub fn chroma_bin() -> String {
    let path = std::env::var_os("CAIRN_CHROMA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cairn/chroma-venv/bin/chroma")
        });
    assert!(
        path.is_file(),
        "Chroma binary {} not found: run `bash .ci/chroma-venv.sh` or set CAIRN_CHROMA_BIN",
        path.display()
    );
    path.display().to_string()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn drill_databases(tag: &str) -> usize {
    pg(&format!(
        "SELECT datname::text FROM pg_database WHERE datname = 'cairn_drill_{tag}'"
    ))
    .len()
}

fn drill(sb: &Sandbox, ports: [u16; 4], extra: &[&str]) -> super::common::Run {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let sets = [
        format!("chroma_port={}", ports[0]),
        format!("internal_port={}", ports[1]),
        format!("external_port={}", ports[2]),
        format!("mcp_port={}", ports[3]),
        format!("work_root={}", sb.path().display()),
        format!("report_dir={}", sb.path().display()),
        "entities=300".to_string(),
    ];
    let mut args = vec!["--auto-approve"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    args.extend_from_slice(extra);
    let mut cmd = sb.command(&runbook(), &args);
    cmd.env("CAIRN_CHROMA_BIN", chroma_bin());
    for var in [
        "DB_USER",
        "DB_HOST",
        "DB_PORT",
        "DB_NAME",
        "CHROMA_URL",
        "DB_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    sb.run_with(cmd)
}

fn run_tag(run: &super::common::Run) -> String {
    run.run_finished()["run_id"]
        .as_str()
        .expect("run id")
        .to_lowercase()
}

#[test]
fn the_drill_restores_every_row_and_vector_and_leaves_nothing_behind() {
    let sb = Sandbox::new();
    let run = drill(
        &sb,
        [free_port(), free_port(), free_port(), free_port()],
        &[],
    );
    run.expect_code(0);
    let out = run.outputs();
    let verdict = out["verdict"].as_str().expect("verdict");
    assert!(verdict.starts_with("DRILL PASSED"), "{verdict}");
    // 300 entities, 100 relationships (every third entity), 2 schemas; one vector per entity
    // and per relationship.
    assert_eq!(out["rows"], 402, "{out}");
    assert_eq!(out["vectors"], 400, "{out}");
    assert!(out["rto_s"].as_f64().expect("rto") > 0.0, "{out}");
    assert!(out["backup_age_s"].as_i64().expect("age") >= 0, "{out}");
    // What the drill measures is this recovery's loss; the RPO is judged from the schedule.
    assert_eq!(out["rows_lost"], 0, "{out}");
    assert!(
        verdict.contains("data lost by this recovery: 0 rows, 0 vectors;"),
        "{verdict}"
    );
    assert!(
        verdict.contains("RPO 6 h at worst by the backup schedule (a backup every 6 h)"),
        "{verdict}"
    );

    // The phases ran in order, each once.
    for step in [
        "health_check",
        "backup",
        "disaster_tables",
        "disaster_collection",
        "disaster_confirmed",
        "recover",
        "verify_rows",
        "verify_database",
        "verify_vectors",
        "rpo",
        "verdict",
    ] {
        assert_eq!(run.status(step), "succeeded", "{step}\n{run}");
    }

    // The report: verdict, objectives and both tables of counts.
    let tag = run_tag(&run);
    let report = sb.read(&format!("cairn-drill-{tag}.md"));
    assert!(report.contains("## Verdict: PASSED"), "{report}");
    assert!(report.contains("| memory_entities | 300 |"), "{report}");
    assert!(
        report.contains("| RTO (the recovery plan, start to end) | 4 h |"),
        "{report}"
    );

    // Teardown: the database and the folder are gone; the ports are free again.
    assert_eq!(drill_databases(&tag), 0);
    assert!(!sb.exists(&format!("cairn-drill-{tag}")));
}

#[test]
fn a_port_in_use_stops_the_drill_before_it_touches_anything() {
    let sb = Sandbox::new();
    // Someone else's service on the "Chroma" port: the drill must not use or touch it.
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = other.local_addr().expect("addr").port();
    let run = drill(&sb, [taken, free_port(), free_port(), free_port()], &[]);
    run.expect_code(1);
    assert_eq!(run.status("ports_free"), "failed", "{run}");
    assert!(
        run.finished("ports_free")["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("port {taken} is in use"))),
        "{run}"
    );
    for step in [
        "serve_chroma",
        "create_database",
        "backup",
        "disaster_tables",
        "recover",
    ] {
        assert_eq!(run.status(step), "skipped", "{step}\n{run}");
    }
    let verdict = shown(&sb, &run, "verdict", "stdout");
    // The verdict says which step stopped the drill, and that nothing was measured.
    assert!(
        verdict.contains(&format!(
            "DRILL FAILED: `ports_free` failed (exit code 1: port {taken} is in use"
        )),
        "{verdict}"
    );
    assert!(
        verdict.contains(
            "data lost by this recovery: rows not measured, vectors not measured; \
             RTO not measured (objective 4 h); RPO not judged (objective 6 h)"
        ),
        "{verdict}"
    );
    let tag = run_tag(&run);
    assert_eq!(drill_databases(&tag), 0);
    assert!(!sb.exists(&format!("cairn-drill-{tag}")));
    let report = sb.read(&format!("cairn-drill-{tag}.md"));
    assert!(report.contains("## Verdict: FAILED"), "{report}");
    assert!(report.contains("| ports_free | failed |"), "{report}");
    drop(other);
}

/// Runs the drill with `sql` run on the restored database right after the recovery plan, and
/// returns the run, the failed `verify_database` step's error and the report.
fn drill_with_fault(sb: &Sandbox, sql: &str) -> (super::common::Run, String, String) {
    let fault = format!("fault_after_restore={sql}");
    let run = drill(
        sb,
        [free_port(), free_port(), free_port(), free_port()],
        &["--set", &fault],
    );
    run.expect_code(1);
    for step in [
        "recover",
        "fault_after_restore",
        "verify_rows",
        "verify_vectors",
    ] {
        assert_eq!(run.status(step), "succeeded", "{step}\n{run}");
    }
    assert_eq!(run.status("verify_database"), "failed", "{run}");
    assert!(
        run.finished("verify_database")["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("exit code 1: ")),
        "{run}"
    );
    let error = shown(sb, &run, "verify_database", "stderr");
    let tag = run_tag(&run);
    let report = sb.read(&format!("cairn-drill-{tag}.md"));
    assert!(report.contains("## Verdict: FAILED"), "{report}");
    assert_eq!(drill_databases(&tag), 0);
    (run, error, report)
}

/// The whole of what a step of the run printed (`cairn show --step`): the events cut errors short.
fn shown(sb: &Sandbox, run: &super::common::Run, step: &str, stream: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["show", &run_tag(run).to_uppercase(), "--step", step])
        .args(["--output", "json", "--state"])
        .arg(sb.path().join("state.db"))
        .output()
        .expect("cairn show");
    let attempts: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cairn show: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    attempts[attempts.as_array().map_or(0, |a| a.len().saturating_sub(1))]["result"][stream]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn verdict_error(sb: &Sandbox, run: &super::common::Run) -> String {
    shown(sb, run, "verdict", "stdout")
}

#[test]
fn a_restore_that_loses_indexes_a_foreign_key_and_a_sequence_fails_the_drill() {
    let sb = Sandbox::new();
    let (run, error, report) = drill_with_fault(
        &sb,
        "DROP INDEX idx_entities_actor_created; DROP INDEX idx_entities_type_grade; \
         ALTER TABLE memory_relationships DROP CONSTRAINT memory_relationships_source_id_fkey; \
         SELECT setval('memory_entities_id_seq', 1)",
    );
    // Each loss is named; the rows are all there, so nothing else is.
    assert!(error.contains("\n4 difference(s): "), "{error}");
    for part in [
        "constraint memory_relationships.memory_relationships_source_id_fkey: missing",
        "index idx_entities_actor_created: missing",
        "index idx_entities_type_grade: missing",
        "sequence memory_entities_id_seq: next value 2 collides with max(memory_entities.id) 300",
    ] {
        assert!(error.contains(part), "{part}\n{error}");
    }
    assert!(!error.contains("rows expected"), "{error}");
    let verdict = verdict_error(&sb, &run);
    assert!(
        verdict.starts_with(
            "DRILL FAILED: `verify_database` failed (exit code 1: 4 difference(s): constraint "
        ),
        "{verdict}"
    );
    assert!(
        verdict.contains("data lost by this recovery: 0 rows, 0 vectors (and the database differs"),
        "{verdict}"
    );
    // The report shows what the restore left, although the verification failed.
    assert!(
        report.contains("index idx_entities_type_grade: missing"),
        "{report}"
    );
    let entities = report
        .lines()
        .find(|l| l.starts_with("| memory_entities | 300 |"))
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(entities.matches("| 300 |").count(), 2, "{entities}");
}

#[test]
fn a_restore_that_loses_rows_or_changes_content_fails_the_drill() {
    let sb = Sandbox::new();
    let (run, error, report) = drill_with_fault(
        &sb,
        "DELETE FROM memory_relationships WHERE id IN (1, 2); \
         UPDATE object_schemas SET version = 2 WHERE name = 'entity'",
    );
    for part in [
        "memory_relationships: rows expected 100, got 98",
        "memory_relationships: content differs",
        "object_schemas: content differs",
    ] {
        assert!(error.contains(part), "{part}\n{error}");
    }
    assert!(!error.contains("object_schemas: rows"), "{error}");
    assert_eq!(run.outputs()["rows_lost"], 2, "{}", run.outputs());
    let verdict = verdict_error(&sb, &run);
    assert!(
        verdict.contains("data lost by this recovery: 2 rows, 0 vectors"),
        "{verdict}"
    );
    assert!(
        report.contains("| memory_relationships | 100 |"),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("| memory_relationships | 100 |") && l.contains("| 98 |")),
        "{report}"
    );
}
