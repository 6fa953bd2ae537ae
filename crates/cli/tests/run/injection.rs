//! Templated values never become SQL or shell code: the injections an attacker tried, each
//! refused by `cairn validate` at its place, or harmless at run time, against the real peers.

use super::common::*;
use std::process::{Command, Stdio};

/// `cairn validate FILE` in the sandbox: (exit code, stderr).
fn validate(sb: &Sandbox, file: &str) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.current_dir(sb.path())
        .args(["validate", file])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    // Validation is pure and fast: no hang protection needed.
    let out = c.output().expect("cairn validate runs");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

fn table_exists(table: &str) -> bool {
    pg(&format!("SELECT to_regclass('{table}')::text"))[0][0].is_some()
}

/// `| ident` inside a string, a comment or a `$$` body: `--set "t=x'; DROP TABLE victim; --"`
/// used to validate and drop the victim.
#[test]
fn an_sql_ident_outside_code_is_refused_before_anything_runs() {
    let victim = Table::new("victim");
    pg(&format!("CREATE TABLE {} (id int)", victim.0));
    let attack = format!("t=x'; DROP TABLE {}; --", victim.0);
    let queries = [
        (
            "SELECT '{{ inputs.t | ident }}' AS tbl, count(*) FROM {{ inputs.t | ident }}",
            "an `| ident` name is inside a quoted SQL string",
        ),
        (
            "SELECT 1 /* {{ inputs.t | ident }} */",
            "an `| ident` name is inside an SQL comment",
        ),
        (
            "DO $$ BEGIN EXECUTE 'SELECT 1 FROM ' || '{{ inputs.t | ident }}'; END $$",
            "an `| ident` name is inside a dollar-quoted SQL body",
        ),
    ];
    for (query, message) in queries {
        let sb = Sandbox::new();
        sb.write(
            "runbook.yaml",
            &format!(
                "cairn: 1\nname: inject\ninputs:\n  t: {{ type: string }}\ntargets:\n  db: {{ postgres: \"{PG_URL}\" }}\nsteps:\n  - id: q\n    sql:\n      target: db\n      query: >-\n        {query}\n"
            ),
        );
        let (code, out) = validate(&sb, "runbook.yaml");
        assert_eq!(code, 2, "{query}\n{out}");
        assert!(out.contains(message), "{query}\n{out}");
        let col = 9 + query.find("inputs.t | ident").expect("hole");
        assert!(
            out.contains(&format!("runbook.yaml:12:{col}")),
            "{query}: not located at 12:{col}\n{out}"
        );
        let run = sb.run("runbook.yaml", &["--set", &attack]);
        assert_eq!(run.code, 2, "{query}\n{run}");
        assert!(!run.started("q"), "{query}\n{run}");
        assert!(table_exists(&victim.0), "{query}: the victim was dropped");
    }
}

/// A loop can put a hole inside quotes that the template's text does not show: the run
/// refuses it too, before the statement reaches the server.
#[test]
fn an_sql_hole_quoted_by_a_loop_is_refused_at_run_time() {
    let victim = Table::new("victim_loop");
    pg(&format!("CREATE TABLE {} (id int)", victim.0));
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        &format!(
            "cairn: 1\nname: inject\ninputs:\n  t: {{ type: string }}\ntargets:\n  db: {{ postgres: \"{PG_URL}\" }}\nsteps:\n  - id: q\n    sql:\n      target: db\n      query: >-\n        SELECT {{% for i in [1, 2] %}}{{{{ inputs.t | ident }}}}{{% if loop.first %}}'{{% endif %}}{{% endfor %}}'\n"
        ),
    );
    let (code, out) = validate(&sb, "runbook.yaml");
    assert_eq!(code, 0, "the text alone looks fine\n{out}");
    let attack = format!("t=x'; DROP TABLE {}; --", victim.0);
    let run = sb.run("runbook.yaml", &["--set", &attack]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.status("q"), "failed");
    let error = run.finished("q")["error"].to_string();
    assert!(
        error.contains("an `| ident` name is inside a quoted SQL string"),
        "{error}"
    );
    assert!(table_exists(&victim.0), "the victim was dropped");
}
