//! Data flows between steps with its type, and values stay data: a hostile input is bound in
//! SQL and quoted in shell, never executed.

use super::common::{PG_URL, Sandbox, Table, pg};

#[test]
fn sql_outputs_flow_typed_into_shell_and_sql() {
    let t = Table::new("flow");
    let table = &t.0;
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: flow
targets:
  db: {{ postgres: "{PG_URL}" }}
steps:
  - id: setup
    sql:
      target: db
      query: CREATE TABLE {table} (id bigint PRIMARY KEY, note text); INSERT INTO {table} VALUES (41, 'first'), (42, 'second')
  - id: q
    sql: {{ target: db, query: "SELECT max(id) AS max_id, count(*) AS n FROM {table}" }}
    outputs: {{ max_id: "{{{{ result.rows[0].max_id }}}}", n: "{{{{ result.rows[0].n }}}}" }}
  - id: shell_reads
    shell: echo {{{{ steps.q.outputs.max_id }}}} {{{{ steps.q.outputs.n + 1 }}}} > from_sql.txt
  - id: typed
    sql:
      target: db
      query: SELECT pg_typeof({{{{ steps.q.outputs.max_id }}}})::text AS t, {{{{ steps.q.outputs.max_id }}}} + 1 AS next, note FROM {table} WHERE id = {{{{ steps.q.outputs.max_id }}}}
    outputs: {{ t: "{{{{ result.rows[0].t }}}}", next: "{{{{ result.rows[0].next }}}}", note: "{{{{ result.rows[0].note }}}}" }}
outputs:
  max_id: "{{{{ steps.q.outputs.max_id }}}}"
  rows: "{{{{ steps.q.outputs.n }}}}"
  bound_as: "{{{{ steps.typed.outputs.t }}}}"
  next: "{{{{ steps.typed.outputs.next }}}}"
  note: "{{{{ steps.typed.outputs.note }}}}"
  label: "max={{{{ steps.q.outputs.max_id }}}}"
"#
        ),
        &[],
    );
    run.expect_code(0);
    assert_eq!(sb.read("from_sql.txt"), "42 3\n");
    let want = serde_json::json!({
        "max_id": 42, "rows": 2, "bound_as": "bigint", "next": 43, "note": "second", "label": "max=42",
    });
    assert_eq!(run.outputs(), &want, "{run}");
    // The SQL step's event shows the bound placeholders, not pasted values.
    let what = run.all("step_started", "typed")[0]["what"].clone();
    assert!(
        what.as_str().is_some_and(|w| w.contains("pg_typeof($1)")),
        "{what}"
    );
}

/// Quotes, a statement terminator, a comment, command substitution, backticks, a newline,
/// a backslash and a `%`: everything an attacker would try.
fn hostile(table: &str) -> String {
    format!(
        "x'; DROP TABLE {table}; --\n$(touch PWNED) `touch PWNED2` \"dq\" 'sq' \\ 100% ${{HOME}}"
    )
}

#[test]
fn a_hostile_input_stays_data_in_sql_and_shell() {
    let t = Table::new("inject");
    let table = &t.0;
    let value = hostile(table);
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        format!(
            r#"
cairn: 1
name: inject
inputs:
  note: {{ type: string, required: true }}
targets:
  db: {{ postgres: "{PG_URL}" }}
steps:
  - id: create
    sql: {{ target: db, query: "CREATE TABLE {table} (id serial PRIMARY KEY, note text)" }}
  - id: insert
    sql: {{ target: db, query: "INSERT INTO {table} (note) VALUES ({{{{ inputs.note }}}})" }}
  - id: read
    sql: {{ target: db, query: "SELECT note, length(note) AS len FROM {table} WHERE note = {{{{ inputs.note }}}}" }}
    outputs: {{ note: "{{{{ result.rows[0].note }}}}", len: "{{{{ result.rows[0].len }}}}" }}
  - id: echo_input
    shell: printf '%s' {{{{ inputs.note }}}} > echoed.txt
  - id: echo_roundtrip
    shell: printf '%s' {{{{ steps.read.outputs.note }}}} > roundtrip.txt
  - id: argv
    argv: [python3, -c, "import sys; open('argv.txt', 'w').write(sys.argv[1])", "{{{{ inputs.note }}}}"]
outputs:
  note: "{{{{ steps.read.outputs.note }}}}"
  len: "{{{{ steps.read.outputs.len }}}}"
"#
        ),
    );
    let run = sb.run("runbook.yaml", &["--set", &format!("note={value}")]);
    run.expect_code(0);

    let rows = pg(&format!("SELECT note FROM {table}"));
    assert_eq!(
        rows,
        vec![vec![Some(value.clone())]],
        "the table holds the value, once"
    );
    assert_eq!(
        pg(&format!("SELECT to_regclass('{table}')::text"))[0][0].as_deref(),
        Some(table.as_str()),
        "the table still exists"
    );
    assert_eq!(run.outputs()["note"], value.as_str());
    assert_eq!(run.outputs()["len"], value.chars().count());
    for file in ["echoed.txt", "roundtrip.txt", "argv.txt"] {
        let bytes = std::fs::read(sb.path().join(file)).expect("written");
        assert_eq!(bytes, value.as_bytes(), "{file} differs from the input");
    }
    for marker in ["PWNED", "PWNED2"] {
        assert!(!sb.exists(marker), "{marker} exists: a value was executed");
    }
}
