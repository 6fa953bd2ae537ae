//! Invalid inputs are refused with exit 2 before anything runs.

use super::common::Sandbox;

const STRICT: &str = r#"
cairn: 1
name: strict
inputs:
  actor_id: { type: string, required: true, pattern: "client_[0-9]+" }
steps:
  - id: touch
    shell: touch touched
"#;

fn assert_nothing_ran(sb: &Sandbox, run: &super::common::Run) {
    assert!(
        run.events.iter().all(|e| e["event"] != "step_started"),
        "{run}"
    );
    assert!(!sb.exists("touched"));
}

#[test]
fn an_unknown_input_exits_2() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        STRICT,
        &["--set", "actor_id=client_1", "--set", "unknown=1"],
    );
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`strict` has no input `unknown` (inputs: actor_id)"),
        "{run}"
    );
    assert_nothing_ran(&sb, &run);
}

#[test]
fn a_pattern_mismatch_exits_2() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(STRICT, &["--set", "actor_id=client_1; rm -rf /"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "input `actor_id` = \"client_1; rm -rf /\" does not match the pattern `client_[0-9]+`"
        ),
        "{run}"
    );
    assert_nothing_ran(&sb, &run);
}

#[test]
fn a_missing_required_input_exits_2() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(STRICT, &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("input `actor_id` is required"), "{run}");
    assert_nothing_ran(&sb, &run);
}

#[test]
fn a_valid_input_runs() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(STRICT, &["--set", "actor_id=client_42"]);
    run.expect_code(0);
    assert!(sb.exists("touched"));
}

/// One environment file for several runbooks: without the flag its unknown key is refused like a
/// `--set`; with `--inputs-ignore-unknown` it is dropped with a warning naming it, the declared
/// keys are taken, and a `--set` of an unknown name is still refused.
#[test]
fn an_inputs_file_may_carry_keys_of_other_runbooks_when_asked() {
    let sb = Sandbox::new();
    let env = sb.write(
        "env.yaml",
        "actor_id: client_7\nchroma_url: http://127.0.0.1:8000\n",
    );
    let env = env.to_str().expect("utf-8 path");

    let refused = sb.run_yaml(STRICT, &["--inputs", env]);
    refused.expect_code(2);
    assert!(
        refused
            .stderr
            .contains("`strict` has no input `chroma_url` (inputs: actor_id)"),
        "{refused}"
    );
    assert_nothing_ran(&sb, &refused);

    let typed = sb.run_yaml(
        STRICT,
        &[
            "--inputs",
            env,
            "--inputs-ignore-unknown",
            "--set",
            "chroma=x",
        ],
    );
    typed.expect_code(2);
    assert!(
        typed.stderr.contains("`strict` has no input `chroma`"),
        "{typed}"
    );
    assert_nothing_ran(&sb, &typed);

    let run = sb.run_yaml(STRICT, &["--inputs", env, "--inputs-ignore-unknown"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains(&format!(
            "warning: {env}: `strict` has no input `chroma_url`; ignored (--inputs-ignore-unknown)"
        )),
        "{run}"
    );
    assert!(sb.exists("touched"), "{run}");
}
