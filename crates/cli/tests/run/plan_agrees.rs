//! A plan CI can trust: what `validate` accepts, `plan` shows and `run` runs; what a plan cannot
//! know is shown as unknown, never decided; a render error names the step, field and line.

use super::common::Sandbox;
use std::process::{Command, Stdio};

/// `cairn ARGS` in the sandbox: exit code, stdout, stderr.
fn cairn(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(args)
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", "1795000000")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FOR_EACH_OVER_OUTPUT: &str = r#"
cairn: 1
name: ports
steps:
  - id: a
    shell: "echo '[{\"port\": 5432}, {\"port\": 5433}]'"
    outputs: { list: "{{ result.stdout | from_json }}" }
  - id: b
    needs: [a]
    for_each: "{{ steps.a.outputs.list }}"
    shell: echo {{ item.port }} {{ index }} >> ports
"#;

#[test]
fn plan_shows_a_for_each_over_a_step_output_that_validate_accepts() {
    let sb = Sandbox::new();
    sb.write("runbook.yaml", FOR_EACH_OVER_OUTPUT);
    assert_eq!(cairn(&sb, &["validate", "runbook.yaml"]).0, 0);
    let (code, stdout, stderr) = cairn(&sb, &["plan", "runbook.yaml", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect("plan json");
    let b = &plan["steps"][1];
    assert_eq!(b["for_each"], "<steps.a.outputs.list>");
    assert_eq!(
        b["actions"][0]["command"],
        "echo \"$CAIRN_V1\" \"$CAIRN_V2\" >> ports"
    );
    assert_eq!(
        b["actions"][0]["values"],
        serde_json::json!({ "CAIRN_V1": "<b.item.port>", "CAIRN_V2": "<b.index>" })
    );
    // And the run does what the plan said, per item.
    sb.run("runbook.yaml", &[]).expect_code(0);
    assert_eq!(sb.read("ports"), "5432 0\n5433 1\n");
}

#[test]
fn plan_never_decides_a_condition_on_an_unknown_value() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        r#"
cairn: 1
name: replicas
steps:
  - id: a
    shell: echo 2
    outputs: { n: "{{ result.stdout | trim }}" }
  - id: gate
    needs: [a]
    approval:
      message: "{% if steps.a.outputs.n == '3' %}all three replicas in sync{% else %}replicas missing{% endif %}"
  - id: note
    needs: [a]
    shell: "echo {{ 'ok' if steps.a.outputs.n | int > 1 else 'alone' }}"
"#,
    );
    assert_eq!(cairn(&sb, &["validate", "runbook.yaml"]).0, 0);
    let (code, stdout, stderr) = cairn(&sb, &["plan", "runbook.yaml", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect("plan json");
    let message = plan["steps"][1]["actions"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.starts_with("<at run time (depends on steps.a.outputs.n): {% if"),
        "{message}"
    );
    assert!(!message.contains("replicas missing}") && message.ends_with("{% endif %}>"));
    let command = plan["steps"][2]["actions"][0]["command"]
        .as_str()
        .expect("command");
    assert!(
        command.starts_with("<at run time (depends on steps.a.outputs.n): echo"),
        "{command}"
    );
    let (_, text, _) = cairn(&sb, &["plan", "runbook.yaml"]);
    assert!(!text.contains("? replicas missing"), "{text}");
    assert!(!text.contains("? all three"), "{text}");
}

#[test]
fn if_without_else_is_refused_by_validate_not_by_the_run() {
    let sb = Sandbox::new();
    sb.write(
        "runbook.yaml",
        "cairn: 1\nname: join\nvars:\n  names: [x, y]\nsteps:\n  - id: a\n    shell: \"echo {% for n in vars.names %}{{ n }}{{ ', ' if not loop.last }}{% endfor %}\"\n",
    );
    let (code, _, stderr) = cairn(&sb, &["validate", "runbook.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("runbook.yaml:7:53")
            && stderr.contains("without `else`")
            && stderr.contains("add an `else`: `', ' if not loop.last else ''`"),
        "{stderr}"
    );
    // With the `else` the same loop validates, plans and runs.
    sb.write(
        "runbook.yaml",
        "cairn: 1\nname: join\nvars:\n  names: [x, y]\nsteps:\n  - id: a\n    shell: \"echo {% for n in vars.names %}{{ n }}{{ ', ' if not loop.last else '' }}{% endfor %} > joined\"\n",
    );
    assert_eq!(cairn(&sb, &["validate", "runbook.yaml"]).0, 0);
    let (code, stdout, _) = cairn(&sb, &["plan", "runbook.yaml"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("$ echo \"$CAIRN_V1\"\"$CAIRN_V2\"\"$CAIRN_V3\"\"$CAIRN_V4\" > joined")
            && stdout.contains("$CAIRN_V2 = \", \""),
        "{stdout}"
    );
    sb.run("runbook.yaml", &[]).expect_code(0);
    assert_eq!(sb.read("joined"), "x, y\n");
}

#[test]
fn a_render_error_names_step_field_and_line() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: render-error
steps:
  - id: a
    shell: "echo '{\"x\": 1}'"
    outputs: { d: "{{ result.stdout | from_json }}" }
  - id: b
    needs: [a]
    shell: |
      echo start
      echo {{ steps.a.outputs.d.x + 'a' }}
"#,
        &[],
    );
    run.expect_code(1);
    let b = run.finished("b");
    assert_eq!(b["status"], "failed");
    let error = b["error"]
        .as_str()
        .or(b["note"].as_str())
        .unwrap_or_default();
    assert!(
        error.starts_with("shell (line 12): tried to use + operator"),
        "{b}"
    );
}
