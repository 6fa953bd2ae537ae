//! The hostile-value corpus (`tests/corpus/hostile.json`, 90 values, plus a 1 MiB value)
//! driven through every hole context `cairn validate` accepts, by `cairn run`, against real
//! bash, PostgreSQL, MariaDB and SQLite: no command or statement of a value ever runs (canary
//! files and a canary table survive or never appear) and every value arrives byte for byte
//! (written back by the shell, selected back from the database).
//!
//! NUL is decided apart: shell refuses it (no environment variable can carry one); SQL binds it
//! (PostgreSQL then refuses it in text, which is the server's own rule).

use super::common::*;
use serde_json::json;

/// The corpus, with `PWNED` standing for the canary (a file in shell, a table in SQL).
fn corpus(canary: &str) -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpus/hostile.json"
    );
    let text = std::fs::read_to_string(path).expect("corpus");
    let values: Vec<String> = serde_json::from_str(&text).expect("corpus is a JSON list");
    assert!(values.len() >= 60, "the corpus shrank to {}", values.len());
    values
        .into_iter()
        .map(|v| v.replace("PWNED", canary))
        .collect()
}

/// A 1 MiB value full of quotes, expansions, newlines and heredoc delimiters.
fn megabyte() -> String {
    "x'; DROP TABLE PWNED; -- $(touch PWNED) `touch PWNED` \"${HOME}\" a[$(touch PWNED)]\nEOF\nü"
        .chars()
        .cycle()
        .take(1 << 20)
        .collect()
}

/// Every context a shell hole may be in (all but arithmetic, which takes integers only), each
/// writing the value to `out/<context>_<index>`.
const SHELL_STEP: &str = r#"
      mkdir -p out
      printf '%s' {{ item }} > out/word_{{ index }}
      printf '%s' "{{ item }}" > out/dq_{{ index }}
      printf '%s' x{{ item }}y > out/glued_{{ index }}
      printf '%s' "<{{ item }}>" > out/dqglued_{{ index }}
      cat > out/heredoc_{{ index }} <<EOF
      {{ item }}
      EOF
      cat > out/heredoc_tabs_{{ index }} <<-END
      	{{ item }}
      	END
      printf '%s' "$(printf '%s' {{ item }})" > out/subst_{{ index }}
      printf '%s' "`printf '%s' {{ item }}`" > out/backtick_{{ index }}
      cat <<< {{ item }} > out/herestring_{{ index }}
      x={{ item }}; printf '%s' "$x" > out/assign_{{ index }}
      : # {{ item }}
      if [[ {{ item }} == {{ item }} ]]; then printf ok > out/test_{{ index }}; fi
      ( printf '%s' {{ item }} ) > out/subshell_{{ index }}
"#;

/// (context, what the file must hold for value `v`).
fn shell_expected(v: &str) -> Vec<(&'static str, String)> {
    let stripped = v.trim_end_matches('\n').to_string();
    vec![
        ("word", v.to_string()),
        ("dq", v.to_string()),
        ("glued", format!("x{v}y")),
        ("dqglued", format!("<{v}>")),
        ("heredoc", format!("{v}\n")),
        ("heredoc_tabs", format!("{v}\n")),
        ("subst", stripped.clone()),
        ("backtick", stripped),
        ("herestring", format!("{v}\n")),
        ("assign", v.to_string()),
        ("test", "ok".to_string()),
        ("subshell", v.to_string()),
        ("argv", v.to_string()),
        ("sh", v.to_string()),
    ]
}

#[test]
fn hostile_values_stay_data_in_every_shell_context() {
    let sb = Sandbox::new();
    let mut values = corpus("PWNED");
    values.push(megabyte());
    sb.write("inputs.json", json!({ "values": values }).to_string());
    sb.write(
        "runbook.yaml",
        format!(
            r#"cairn: 1
name: hostile-shell
inputs:
  values: {{ type: list }}
steps:
  - id: contexts
    for_each: "{{{{ inputs.values }}}}"
    shell: |{SHELL_STEP}
  - id: argv
    needs: [contexts]
    for_each: "{{{{ inputs.values }}}}"
    argv: [bash, -c, "printf '%s' {{{{ item }}}} > out/argv_{{{{ index }}}}"]
  - id: sh
    needs: [contexts]
    for_each: "{{{{ inputs.values }}}}"
    argv: [sh, -ec, "printf '%s' \"{{{{ item }}}}\" > out/sh_{{{{ index }}}}"]
"#
        ),
    );
    let run = sb.run("runbook.yaml", &["--inputs", "inputs.json"]);
    run.expect_code(0);
    let mut checked = 0;
    for (i, v) in values.iter().enumerate() {
        for (context, want) in shell_expected(v) {
            let path = sb.path().join(format!("out/{context}_{i}"));
            let got = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{context} of value {i} ({v:.40?}): {e}"));
            assert!(
                got == want.as_bytes(),
                "{context} of value {i} ({v:.60?}) arrived as {:.60?}",
                String::from_utf8_lossy(&got)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, values.len() * 14);
    // Nothing but the outputs, the state and the runbook: no canary, no stray file.
    for entry in std::fs::read_dir(sb.path()).expect("sandbox") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            [
                "out",
                "logs",
                "runbook.yaml",
                "inputs.json",
                "state.db",
                ".cairn"
            ]
            .contains(&name.as_str())
                || name.starts_with("state.db"),
            "a value created `{name}`"
        );
    }
    let out_files = std::fs::read_dir(sb.path().join("out"))
        .expect("out")
        .count();
    assert_eq!(out_files, checked, "a value created a file in out/");
}

/// The same corpus as bind parameters and inserted rows, on one database.
fn sql_round_trip(kind: &str, url: &str, table: &str, canary: &str, values: &[String]) -> Run {
    let sb = Sandbox::new();
    sb.write(
        "inputs.json",
        json!({ "values": values, "table": table }).to_string(),
    );
    let column = if kind == "mysql" {
        "LONGTEXT CHARACTER SET utf8mb4"
    } else {
        "text"
    };
    sb.write(
        "runbook.yaml",
        format!(
            r#"cairn: 1
name: hostile-sql
inputs:
  values: {{ type: list }}
  table: {{ type: string }}
targets:
  db: {{ {kind}: "{url}" }}
steps:
  - id: create
    sql: {{ target: db, query: "CREATE TABLE {{{{ inputs.table | ident }}}} (i int, v {column})" }}
  - id: insert
    needs: [create]
    for_each: "{{{{ inputs.values }}}}"
    sql: {{ target: db, query: "INSERT INTO {{{{ inputs.table | ident }}}} (i, v) VALUES ({{{{ index }}}}, {{{{ item }}}})" }}
  - id: echo
    needs: [insert]
    for_each: "{{{{ inputs.values }}}}"
    sql: {{ target: db, query: "SELECT {{{{ item }}}} AS v, {{{{ item }}}} = {{{{ item }}}} AS same" }}
    expect: ["result.rows[0].v == item"]
"#
        ),
    );
    let run = sb.run("runbook.yaml", &["--inputs", "inputs.json"]);
    run.expect_code(0);
    let _ = canary;
    run
}

fn values_for_sql(canary: &str) -> Vec<String> {
    let mut values = corpus(canary);
    values.push(megabyte().replace("PWNED", canary));
    values
}

#[test]
fn hostile_values_stay_data_in_postgresql() {
    let canary = Table::new("canary");
    pg(&format!("CREATE TABLE {} (id int)", canary.0));
    let t = Table::new("hostile");
    let values = values_for_sql(&canary.0);
    sql_round_trip("postgres", PG_URL, &t.0, &canary.0, &values);
    let rows = pg(&format!("SELECT v FROM {} ORDER BY i", t.0));
    let got: Vec<String> = rows
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(got.len(), values.len());
    for (i, (g, v)) in got.iter().zip(&values).enumerate() {
        assert!(g == v, "value {i} ({v:.60?}) came back as {g:.60?}");
    }
    assert!(
        pg(&format!("SELECT to_regclass('{}')::text", canary.0))[0][0].is_some(),
        "the canary table was dropped"
    );
}

const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn mysql(sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::{Connection, Row};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::MySqlConnection::connect(MYSQL_URL)
            .await
            .unwrap_or_else(|e| panic!("connect to {MYSQL_URL}: {e}"));
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<Option<String>, _>(i).ok().flatten())
                    .collect()
            })
            .collect()
    })
}

#[test]
fn hostile_values_stay_data_in_mariadb() {
    let canary = unique("cairn_it_canary");
    let table = unique("cairn_it_hostile");
    mysql(&format!("CREATE TABLE {canary} (id int)"));
    let values = values_for_sql(&canary);
    let result = std::panic::catch_unwind(|| {
        sql_round_trip("mysql", MYSQL_URL, &table, &canary, &values);
        let rows = mysql(&format!("SELECT v FROM {table} ORDER BY i"));
        let got: Vec<String> = rows
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect();
        assert_eq!(got.len(), values.len());
        for (i, (g, v)) in got.iter().zip(&values).enumerate() {
            assert!(g == v, "value {i} ({v:.60?}) came back as {g:.60?}");
        }
        let left = mysql(&format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'test' AND table_name = '{canary}'"
        ));
        assert_eq!(left.len(), 1, "the canary table was dropped");
    });
    mysql(&format!("DROP TABLE IF EXISTS {table}"));
    mysql(&format!("DROP TABLE IF EXISTS {canary}"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn hostile_values_stay_data_in_sqlite() {
    let dir = Sandbox::new();
    let db = dir.file("hostile.db");
    let url = format!("sqlite://{db}?mode=rwc");
    let canary = "cairn_canary";
    let values = values_for_sql(canary);
    {
        use sqlx::Connection;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {canary} (id int)"
            )))
            .execute(&mut conn)
            .await
            .expect("canary");
        });
    }
    sql_round_trip("sqlite", &url, "hostile", canary, &values);
    use sqlx::{Connection, Row};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe("SELECT v FROM hostile ORDER BY i"))
            .fetch_all(&mut conn)
            .await
            .expect("select");
        assert_eq!(rows.len(), values.len());
        for (i, (r, v)) in rows.iter().zip(&values).enumerate() {
            let g: String = r.try_get(0).expect("text");
            assert!(&g == v, "value {i} ({v:.60?}) came back as {g:.60?}");
        }
        let left = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM sqlite_master WHERE name = '{canary}'"
        )))
        .fetch_all(&mut conn)
        .await
        .expect("master");
        assert_eq!(left.len(), 1, "the canary table was dropped");
    });
}

/// NUL, decided: a shell step refuses it (no environment variable can carry one), SQLite binds
/// and stores it byte for byte, PostgreSQL's own rule refuses it in text.
#[test]
fn nul_is_refused_by_shell_and_bound_by_sql() {
    let sb = Sandbox::new();
    let db = sb.file("nul.db");
    sb.write(
        "inputs.json",
        json!({ "v": "a\u{0}b; touch PWNED" }).to_string(),
    );
    sb.write(
        "runbook.yaml",
        format!(
            r#"cairn: 1
name: nul
inputs:
  v: {{ type: string }}
targets:
  lite: {{ sqlite: "sqlite://{db}?mode=rwc" }}
  pg: {{ postgres: "{PG_URL}" }}
steps:
  - id: shell
    shell: printf '%s' {{{{ inputs.v }}}} > nul.txt
    on_failure: continue
  - id: lite
    sql: {{ target: lite, query: "SELECT {{{{ inputs.v }}}} AS v, length(CAST({{{{ inputs.v }}}} AS blob)) AS n" }}
    outputs: {{ n: "{{{{ result.rows[0].n }}}}" }}
  - id: pg
    needs: [lite]
    sql: {{ target: pg, query: "SELECT {{{{ inputs.v }}}}::text AS v" }}
    on_failure: continue
outputs:
  n: "{{{{ steps.lite.outputs.n }}}}"
"#
        ),
    );
    let run = sb.run("runbook.yaml", &["--inputs", "inputs.json"]);
    assert_eq!(run.status("shell"), "failed", "{run}");
    assert!(
        run.finished("shell")["error"]
            .to_string()
            .contains("NUL byte"),
        "{run}"
    );
    assert!(!sb.exists("nul.txt") && !sb.exists("PWNED"));
    assert_eq!(run.status("lite"), "succeeded", "{run}");
    assert_eq!(run.outputs()["n"], 16, "{run}");
    assert_eq!(run.status("pg"), "failed", "{run}");
}
