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
            format!(
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
        format!(
            "cairn: 1\nname: inject\ninputs:\n  t: {{ type: string }}\ntargets:\n  db: {{ postgres: \"{PG_URL}\" }}\nsteps:\n  - id: q\n    sql:\n      target: db\n      query: >-\n        SELECT {{% for i in [1, 2] %}}{{{{ inputs.t | ident }}}} {{% if loop.first %}}'{{% endif %}}{{% endfor %}}'\n"
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

/// Shell: where the author's own script changed the context (a heredoc body, double quotes,
/// `argv: [bash, -c, ...]`), quoting used to be bypassed. With references, each value arrives
/// whole and nothing of it runs.
#[test]
fn shell_values_stay_data_in_heredocs_double_quotes_and_bash_dash_c() {
    let sb = Sandbox::new();
    let value = "$(touch PWNED)\"; touch PWNED2; \"`touch PWNED3`\nEOF\ntouch PWNED4\n'";
    sb.write(
        "runbook.yaml",
        format!(
            r#"cairn: 1
name: inject-shell
inputs:
  s: {{ type: string }}
targets:
  db: {{ postgres: "{PG_URL}" }}
steps:
  - id: fetch
    sql: {{ target: db, query: "SELECT {{{{ inputs.s }}}}::text AS body" }}
    outputs: {{ body: "{{{{ result.rows[0].body }}}}" }}
  - id: heredoc
    shell: |
      cat > heredoc.txt <<EOF
      {{{{ steps.fetch.outputs.body }}}}
      EOF
  - id: double_quotes
    shell: printf '%s' "{{{{ inputs.s }}}}" > dq.txt
  - id: bash_c
    argv: [bash, -c, "printf '%s' {{{{ inputs.s }}}} > argv.txt"]
  - id: sh_c
    argv: [/bin/sh, -ec, "printf '%s' \"{{{{ inputs.s }}}}\" > sh.txt"]
"#
        ),
    );
    let (code, out) = validate(&sb, "runbook.yaml");
    assert_eq!(code, 0, "{out}");
    let run = sb.run("runbook.yaml", &["--set", &format!("s={value}")]);
    run.expect_code(0);
    assert_eq!(sb.read("heredoc.txt"), format!("{value}\n"));
    for file in ["dq.txt", "argv.txt", "sh.txt"] {
        assert_eq!(sb.read(file), value, "{file}");
    }
    for canary in ["PWNED", "PWNED2", "PWNED3", "PWNED4"] {
        assert!(!sb.exists(canary), "{canary}: a value ran as a command");
    }
}

/// Arithmetic evaluates a variable's value as an expression: `a[$(touch PWNED)]` would run.
/// Only integers may go there: a string input is refused by validate, an `int` input is checked
/// as it is read, and the integer works.
#[test]
fn shell_arithmetic_takes_only_integers() {
    let sb = Sandbox::new();
    let runbook = |ty: &str| {
        format!(
            "cairn: 1\nname: arith\ninputs:\n  n: {{ type: {ty} }}\nsteps:\n  - id: a\n    shell: echo $(( {{{{ inputs.n }}}} + 1 )) > sum.txt\n"
        )
    };
    sb.write("string.yaml", runbook("string"));
    let (code, out) = validate(&sb, "string.yaml");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("a `{{ }}` value is inside shell arithmetic"),
        "{out}"
    );
    assert!(out.contains("string.yaml:7:24"), "{out}");
    let run = sb.run("string.yaml", &["--set", "n=a[$(touch PWNED)]"]);
    assert_eq!(run.code, 2, "{run}");

    sb.write("int.yaml", runbook("int"));
    let (code, out) = validate(&sb, "int.yaml");
    assert_eq!(code, 0, "{out}");
    let run = sb.run("int.yaml", &["--set", "n=a[$(touch PWNED)]"]);
    assert_eq!(run.code, 2, "{run}");
    sb.run("int.yaml", &["--set", "n=41"]).expect_code(0);
    assert_eq!(sb.read("sum.txt"), "42\n");
    assert!(!sb.exists("PWNED"));
}

/// The command line of a step's process is readable by every local user: no value, secret or
/// not, is in it. The script reads its own `/proc/$$/cmdline`.
#[test]
fn no_value_or_secret_is_in_the_child_command_line() {
    let sb = Sandbox::new();
    let secret = "S3cr3t-Canary-7f1d9a";
    let value = "plain-value-81c2e4";
    sb.write(
        "runbook.yaml",
        r#"cairn: 1
name: cmdline
inputs:
  v: { type: string }
secrets:
  tok: { env: CAIRN_TEST_TOK }
steps:
  - id: shell
    shell: |
      test "{{ secrets.tok }}" = "$CAIRN_TEST_TOK"
      test {{ inputs.v }} = "$CAIRN_TEST_V"
      cat /proc/$$/cmdline > shell.cmdline
  - id: argv
    argv: [bash, -c, "test {{ secrets.tok }} = \"$CAIRN_TEST_TOK\" && test {{ inputs.v }} = \"$CAIRN_TEST_V\" && cat /proc/$$/cmdline > argv.cmdline"]
"#,
    );
    let mut c = sb.command("runbook.yaml", &["--set", &format!("v={value}")]);
    c.env("CAIRN_TEST_TOK", secret).env("CAIRN_TEST_V", value);
    sb.run_with(c).expect_code(0);
    for file in ["shell.cmdline", "argv.cmdline"] {
        let bytes = std::fs::read(sb.path().join(file)).expect("cmdline written");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("CAIRN_V1"), "{file}: {text:?}");
        assert!(
            !text.contains(secret),
            "{file}: the secret is in argv: {text:?}"
        );
        assert!(
            !text.contains(value),
            "{file}: the value is in argv: {text:?}"
        );
    }
}
