//! `cairn plan --probe` against the real PostgreSQL server: reads run for real and their
//! results flow on; everything else is shown, never run; the database is unchanged (checked by
//! checksums), and no read-looking statement that calls a function off the allowlist runs.

use super::common::{PG_URL, Sandbox, pg, unique};
use serde_json::Value;
use std::process::{Command, Stdio};

struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        pg(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

/// Rows, sequence, tables and functions of the schema, as one text.
fn checksum(schema: &str) -> String {
    let q = format!(
        "SELECT concat_ws(' | ', \
           (SELECT md5(coalesce(string_agg(e::text, ',' ORDER BY id), '')) FROM {schema}.entities e), \
           (SELECT last_value::text || '/' || is_called::text FROM {schema}.s), \
           (SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = '{schema}'), \
           (SELECT count(*)::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '{schema}'), \
           (SELECT setting FROM pg_settings WHERE name = 'work_mem'))"
    );
    pg(&q)[0][0].clone().expect("checksum")
}

/// Read-looking statements that must never run, each with the reason the probe must give.
fn hostile(schema: &str) -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "terminate",
            "SELECT pg_terminate_backend(pg_backend_pid())".into(),
            "calls `pg_terminate_backend`",
        ),
        (
            "cancel",
            "SELECT pg_cancel_backend(pg_backend_pid())".into(),
            "calls `pg_cancel_backend`",
        ),
        (
            "reload",
            "SELECT pg_reload_conf()".into(),
            "calls `pg_reload_conf`",
        ),
        (
            "setting",
            "SELECT set_config('work_mem', '1MB', false)".into(),
            "calls `set_config`",
        ),
        (
            "advisory",
            "SELECT pg_advisory_lock(42)".into(),
            "calls `pg_advisory_lock`",
        ),
        (
            "advisory_xact",
            "SELECT pg_try_advisory_xact_lock(42)".into(),
            "calls `pg_try_advisory_xact_lock`",
        ),
        (
            "lo_export",
            "SELECT lo_export(1, '/tmp/cairn-probe-lo')".into(),
            "calls `lo_export`",
        ),
        (
            "dblink",
            format!("SELECT * FROM dblink_exec('dbname=test', 'DROP SCHEMA {schema} CASCADE')"),
            "calls `dblink_exec`",
        ),
        (
            "nextval",
            format!("SELECT nextval('{schema}.s')"),
            "calls `nextval`",
        ),
        (
            "setval",
            format!("SELECT x FROM (SELECT pg_catalog.SETVAL('{schema}.s', 1000) AS x) t"),
            "calls `pg_catalog.setval`",
        ),
        (
            "notify",
            "SELECT pg_notify('cairn', 'probe')".into(),
            "calls `pg_notify`",
        ),
        (
            "select_into",
            format!("SELECT * INTO {schema}.copied FROM {schema}.entities"),
            "`SELECT ... INTO` creates a table",
        ),
        (
            "copy_program",
            format!("COPY {schema}.entities TO PROGRAM 'touch /tmp/cairn-probe-copy'"),
            "`COPY` is not a read",
        ),
        (
            "cte_delete",
            format!("WITH d AS (DELETE FROM {schema}.entities RETURNING *) SELECT count(*) FROM d"),
            "writes",
        ),
        (
            "for_update",
            format!("SELECT * FROM {schema}.entities FOR UPDATE"),
            "locks rows",
        ),
        (
            "explain_analyze",
            format!("EXPLAIN ANALYZE DELETE FROM {schema}.entities"),
            "`EXPLAIN ANALYZE` runs the statement",
        ),
        (
            "two",
            format!("SELECT 1; DELETE FROM {schema}.entities"),
            "holds more than one statement",
        ),
        (
            "query_to_xml",
            "SELECT query_to_xml('SELECT pg_terminate_backend(pg_backend_pid())', true, false, '')"
                .into(),
            "calls `query_to_xml`",
        ),
        (
            "xpath",
            "SELECT xpath('/row', query_to_xml('SELECT pg_terminate_backend(pg_backend_pid())', \
             true, false, ''))"
                .into(),
            "calls `xpath`",
        ),
        (
            "dblink_delete",
            format!("SELECT dblink_exec('dbname=test', 'DELETE FROM {schema}.entities')"),
            "calls `dblink_exec`",
        ),
        (
            "unicode_terminate",
            r#"SELECT U&"pg_terminate\005Fbackend"(pg_backend_pid())"#.into(),
            "calls `pg_terminate_backend`",
        ),
        (
            "unicode_dblink",
            format!(
                r#"SELECT U&"\0064blink_exec"('dbname=test', 'DELETE FROM {schema}.entities')"#
            ),
            "calls `dblink_exec`",
        ),
        (
            "own_function",
            format!("SELECT {schema}.sneaky()"),
            "calls `",
        ),
    ]
}

#[test]
fn a_dr_rehearsal_leaves_the_database_unchanged() {
    let schema = Schema(unique("cairn_probe"));
    let s = &schema.0;
    pg(&format!(
        "CREATE SCHEMA {s}; \
         CREATE TABLE {s}.entities (id serial PRIMARY KEY, actor text, note text); \
         INSERT INTO {s}.entities (actor, note) SELECT 'client_' || g, 'note ' || g FROM generate_series(1, 50) g; \
         CREATE SEQUENCE {s}.s; SELECT nextval('{s}.s')::text; \
         CREATE FUNCTION {s}.sneaky() RETURNS int LANGUAGE sql VOLATILE AS \
           $$ INSERT INTO {s}.entities (actor, note) VALUES ('sneaky', 'x'); SELECT 1 $$;"
    ));
    let before = checksum(s);

    let mut steps = format!(
        r#"
  - id: latest
    sql: {{ target: db, query: "SELECT max(id) AS max_id, count(*) AS n FROM {s}.entities" }}
    outputs: {{ max_id: "{{{{ result.rows[0].max_id }}}}", n: "{{{{ result.rows[0].n }}}}" }}
  - id: disk
    needs: [latest]
    readonly: true
    shell: echo {{{{ steps.latest.outputs.n }}}} rows
  - id: empty_restore
    needs: [latest]
    when: steps.latest.outputs.n == 0
    sql: {{ target: db, query: "TRUNCATE {s}.entities" }}
  - id: trim
    needs: [latest]
    sql: {{ target: db, query: "DELETE FROM {s}.entities WHERE id > {{{{ steps.latest.outputs.max_id }}}} - 10" }}
  - id: restore
    needs: [latest]
    shell: echo restoring {{{{ steps.latest.outputs.n }}}} rows > restored
  - id: flagged
    needs: []
    readonly: false
    sql: {{ target: db, query: "SELECT 1" }}
"#
    );
    for (id, sql, _) in hostile(s) {
        steps.push_str(&format!(
            "  - id: h_{id}\n    needs: []\n    sql: {{ target: db, query: {} }}\n",
            serde_json::to_string(&sql).expect("json")
        ));
    }
    let yaml = format!(
        "cairn: 1\nname: dr-rehearsal\ntargets:\n  db: {{ postgres: \"{PG_URL}\" }}\n  down: {{ postgres: \"postgres://postgres@127.0.0.1:1/test\" }}\nsteps:{steps}"
    );
    let sb = Sandbox::new();
    sb.write("dr.yaml", &yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(["plan", "dr.yaml", "--probe", "--output", "json"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A target is down.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan json");
    let step = |id: &str| -> &Value {
        plan["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .unwrap_or_else(|| panic!("no step {id}"))
    };
    let probe = |id: &str| step(id)["probe"].clone();

    // Reads ran, and their results flowed on.
    assert_eq!(probe("latest")["outcome"], "ran");
    assert_eq!(
        probe("latest")["outputs"],
        serde_json::json!({"max_id": 50, "n": 50})
    );
    assert_eq!(probe("disk")["outcome"], "ran");
    assert_eq!(probe("disk")["result"]["stdout"], "50 rows\n");
    assert_eq!(probe("empty_restore")["outcome"], "skipped");
    assert_eq!(step("empty_restore")["when"]["decision"], "skip");
    assert_eq!(probe("trim")["outcome"], "shown");
    assert_eq!(
        step("trim")["actions"][0]["params"],
        serde_json::json!([50])
    );
    assert_eq!(probe("restore")["outcome"], "shown");
    assert_eq!(
        step("restore")["actions"][0]["command"],
        "echo restoring \"$CAIRN_V1\" rows > restored"
    );
    assert_eq!(
        step("restore")["actions"][0]["values"],
        serde_json::json!({"CAIRN_V1": "50"})
    );
    assert!(!sb.exists("restored"));
    assert_eq!(probe("flagged")["outcome"], "shown");
    assert_eq!(probe("flagged")["why"], "marked `readonly: false`");
    for (id, sql, why) in hostile(s) {
        let p = probe(&format!("h_{id}"));
        assert_eq!(p["outcome"], "shown", "{sql}: {p}");
        let got = p["why"].as_str().unwrap_or_default();
        assert!(
            got.starts_with("not probed: ") && got.contains(why),
            "{sql}: {got}"
        );
    }
    let reach = plan["reachability"].as_array().expect("reachability");
    assert_eq!(reach[0]["target"], "db");
    assert_eq!(reach[0]["reachable"], true);
    assert_eq!(reach[1]["target"], "down");
    assert_eq!(reach[1]["reachable"], false);

    assert_eq!(checksum(s), before, "the rehearsal changed the database");
    assert!(!std::path::Path::new("/tmp/cairn-probe-copy").exists());
}
