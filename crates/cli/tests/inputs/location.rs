//! Where the state store is by default, and commands that read or answer runs never creating
//! one: `approve` from another folder used to create an empty store and say "no run".

use super::common::{Out, Sandbox, whoami};

const GATED: &str = "cairn: 1\nname: gated\nsteps:\n  - id: gate\n    approval: { message: Go?, allow_self_approval: true }\n  - id: after\n    needs: [gate]\n    shell: echo after\n";

/// The run id: the first line of `cairn run`'s stdout.
fn run_id(out: &Out) -> String {
    out.stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn user_store(sb: &Sandbox) -> std::path::PathBuf {
    sb.join("home/.local/state/cairn/state.db")
}

#[test]
fn reading_commands_never_create_a_store_and_say_where_they_looked() {
    let sb = Sandbox::new();
    let work = sb.mkdir("work");
    let store = user_store(&sb);
    for args in [
        &["approve", "01ABC", "gate"][..],
        &["reject", "01ABC", "gate"],
        &["resume", "01ABC"],
        &["show", "01ABC"],
        &["runs"],
    ] {
        sb.cairn_in(&work, args)
            .expect(2)
            .stderr_has(&format!(
                "error: no state store at {}: no such file\n",
                store.display()
            ))
            .stderr_has(&format!(
                "(the per-user store: there is no .cairn/ folder in {} or above it;",
                work.display()
            ));
    }
    assert!(!store.exists(), "a store was created");
    assert!(!sb.join("home/.local").exists(), "folders were created");
    assert!(!work.join(".cairn").exists(), "a project store was created");

    // Named with --state: the same, for SQLite.
    sb.cairn_in(&work, &["runs", "--state", "nope.db"])
        .expect(2)
        .stderr_has("error: no state store at nope.db: no such file\n")
        .stderr_has("(given by --state or CAIRN_STATE;");
    assert!(!work.join("nope.db").exists());
}

#[test]
fn without_a_project_folder_runs_go_to_the_per_user_store_seen_from_anywhere() {
    let sb = Sandbox::new();
    let ops = sb.mkdir("ops");
    let elsewhere = sb.mkdir("elsewhere/deep");
    sb.write("ops/gated.yaml", GATED);
    let paused = sb.cairn_in(&ops, &["run", "gated.yaml"]);
    paused.expect(3);
    let run = run_id(&paused);
    assert!(user_store(&sb).is_file(), "{paused}");
    assert!(
        !ops.join(".cairn").exists(),
        "no project store without .cairn/"
    );

    // Another folder, another shell: the same store.
    sb.cairn_in(&elsewhere, &["runs"])
        .expect(0)
        .stdout_has(&run);
    sb.cairn_in(&elsewhere, &["approve", &run, "gate", "--by", "alice"])
        .expect(0)
        // `--by` is a comment: the answer is the uid's.
        .stderr_has(&format!("approved `gate` of run {run} as {}", whoami()));
    sb.cairn_in(&ops, &["resume", &run]).expect(0);
}

#[test]
fn xdg_state_home_moves_the_per_user_store() {
    let sb = Sandbox::new();
    sb.write("ok.yaml", super::common::VALID);
    let xdg = sb.join("xdg");
    let mut c = sb.command(&["run", "ok.yaml"]);
    c.env("XDG_STATE_HOME", &xdg);
    super::common::finish(c).expect(0);
    assert!(xdg.join("cairn/state.db").is_file());
    assert!(!user_store(&sb).exists());
}

#[test]
fn the_nearest_cairn_folder_up_the_tree_holds_the_project_store() {
    let sb = Sandbox::new();
    sb.mkdir("proj/.cairn");
    let sub = sb.mkdir("proj/runbooks/nightly");
    let other = sb.mkdir("proj/docs/deeper");
    sb.write("proj/runbooks/nightly/gated.yaml", GATED);
    let paused = sb.cairn_in(&sub, &["run", "gated.yaml"]);
    paused.expect(3);
    let run = run_id(&paused);
    assert!(sb.join("proj/.cairn/state.db").is_file(), "{paused}");
    assert!(!user_store(&sb).exists(), "the per-user store was used");
    assert!(!sub.join(".cairn").exists());

    sb.cairn_in(&other, &["show", &run])
        .expect(0)
        .stdout_has(&run);
    sb.cairn_in(&other, &["approve", &run, "gate"]).expect(0);
    sb.cairn_in(&other, &["runs"])
        .expect(0)
        .stdout_has("paused");

    // Outside the project: the per-user store, which does not exist.
    sb.cairn_in(&sb.mkdir("outside"), &["show", &run])
        .expect(2)
        .stderr_has("error: no state store at ");
    // An empty .cairn/ nearer than the project's is a project of its own: it has no store yet.
    sb.mkdir("proj/docs/.cairn");
    sb.cairn_in(&other, &["show", &run])
        .expect(2)
        .stderr_has(&format!(
            "error: no state store at {}: no such file\n",
            sb.join("proj/docs/.cairn/state.db").display()
        ))
        .stderr_has(&format!(
            "(the project store: the nearest .cairn/ folder is in {};",
            sb.join("proj/docs").display()
        ));
    assert!(!sb.join("proj/docs/.cairn/state.db").exists());
}

fn psql(sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The same on PostgreSQL: a row whose status no cairn knows is listed as unreadable.
#[test]
fn one_unreadable_run_row_on_postgres_does_not_hide_the_history() {
    let sb = Sandbox::new();
    sb.write("ok.yaml", super::common::VALID);
    let schema = format!("cairn_inputs_rows_{}", std::process::id());
    psql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let url =
        format!("postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}");
    let first = run_id(sb.cairn(&["run", "ok.yaml", "--state", &url]).expect(0));
    let second = run_id(sb.cairn(&["run", "ok.yaml", "--state", &url]).expect(0));
    psql(&format!(
        "UPDATE {schema}.cairn_runs SET status = 'exploded' WHERE id = '{first}'"
    ));
    let out = sb.cairn(&["runs", "--state", &url, "--output", "json"]);
    psql(&format!("DROP SCHEMA {schema} CASCADE"));
    out.expect(0).stderr_has(&format!(
        "warning: run {first} cannot be read from the state store: "
    ));
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let status = |id: &str| {
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["id"] == id))
            .map(|r| r["status"].clone())
    };
    assert_eq!(status(&first), Some("unreadable".into()), "{out}");
    assert_eq!(status(&second), Some("succeeded".into()), "{out}");
}

/// A PostgreSQL database without Cairn's tables is no store: reading commands refuse it and
/// create nothing in it.
#[test]
fn a_postgres_database_without_cairn_tables_is_not_a_store() {
    let sb = Sandbox::new();
    let schema = format!("cairn_inputs_{}", std::process::id());
    psql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let url =
        format!("postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}");
    let out = sb.cairn(&["runs", "--state", &url]);
    let tables = psql(&format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"
    ));
    psql(&format!("DROP SCHEMA {schema} CASCADE"));
    out.expect(2).stderr_has(&format!(
        "error: no state store at {url}: the database holds no Cairn tables (cairn_*) in its search_path\n"
    ));
    assert_eq!(tables, "0", "tables were created\n{out}");
}

#[test]
fn one_unreadable_run_row_does_not_hide_the_history() {
    let sb = Sandbox::new();
    sb.write("ok.yaml", super::common::VALID);
    let state = sb.join("state.db").display().to_string();
    let first = run_id(sb.cairn(&["run", "ok.yaml", "--state", &state]).expect(0));
    let second = run_id(sb.cairn(&["run", "ok.yaml", "--state", &state]).expect(0));
    let broke = std::process::Command::new("sqlite3")
        .arg(&state)
        .arg(format!(
            "UPDATE cairn_runs SET status = 'exploded', started_at = 'yesterday-ish' WHERE id = '{first}'"
        ))
        .status()
        .expect("run sqlite3")
        .success();
    assert!(broke);
    let out = sb.cairn(&["runs", "--state", &state]);
    out.expect(0)
        .stdout_has(&second)
        .stdout_has(&first)
        .stdout_has("unreadable")
        .stderr_has(&format!(
            "warning: run {first} cannot be read from the state store: "
        ));
    let json = sb.cairn(&["runs", "--state", &state, "--output", "json"]);
    json.expect(0);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{json}");
    let bad = rows
        .iter()
        .find(|r| r["id"] == first.as_str())
        .expect("the bad row");
    assert_eq!(bad["status"], "unreadable");
    let good = rows
        .iter()
        .find(|r| r["id"] == second.as_str())
        .expect("the good row");
    assert_eq!(good["status"], "succeeded");
}

/// A damaged step row of a succeeded run (its outcome, "with warnings" or not, is read from its
/// steps) lists that run as unreadable; the rest of the history is shown and the exit code is 0.
fn one_unreadable_step_row_does_not_hide_the_history(state: &str, corrupt: impl Fn(&str)) {
    let sb = Sandbox::new();
    sb.write("ok.yaml", super::common::VALID);
    let first = run_id(sb.cairn(&["run", "ok.yaml", "--state", state]).expect(0));
    let second = run_id(sb.cairn(&["run", "ok.yaml", "--state", state]).expect(0));
    corrupt(&first);
    let out = sb.cairn(&["runs", "--state", state]);
    out.expect(0)
        .stdout_has(&second)
        .stdout_has(&first)
        .stdout_has("unreadable")
        .stderr_has(&format!(
            "warning: run {first} cannot be read from the state store: a step record: "
        ));
    let json = sb.cairn(&["runs", "--state", state, "--output", "json"]);
    json.expect(0);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let status = |id: &str| {
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["id"] == id))
            .map(|r| r["status"].clone())
    };
    assert_eq!(status(&first), Some("unreadable".into()), "{json}");
    assert_eq!(status(&second), Some("succeeded".into()), "{json}");
}

#[test]
fn one_unreadable_step_row_does_not_hide_the_history_on_sqlite() {
    let sb = Sandbox::new();
    let state = sb.join("state.db").display().to_string();
    one_unreadable_step_row_does_not_hide_the_history(&state, |run| {
        let broke = std::process::Command::new("sqlite3")
            .arg(&state)
            .arg(format!(
                "UPDATE cairn_steps SET status = 'exploded' WHERE run_id = '{run}'"
            ))
            .status()
            .expect("run sqlite3")
            .success();
        assert!(broke);
    });
}

#[test]
fn one_unreadable_step_row_does_not_hide_the_history_on_postgres() {
    let schema = format!("cairn_inputs_steps_{}", std::process::id());
    psql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let url =
        format!("postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}");
    one_unreadable_step_row_does_not_hide_the_history(&url, |run| {
        psql(&format!(
            "UPDATE {schema}.cairn_steps SET status = 'exploded' WHERE run_id = '{run}'"
        ));
    });
    psql(&format!("DROP SCHEMA {schema} CASCADE"));
}
