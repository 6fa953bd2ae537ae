//! Reports checked by their real consumers: JUnit XML by xmllint against the published JUnit
//! schema, metrics by promtool, Mermaid (the report's graph and `cairn graph --run`) by the
//! Mermaid parser under Node. A missing consumer fails the test: `.ci/consumers.sh` installs them.

use super::common::Sandbox;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a consumer tool; panics (never skips) when it is not installed.
fn consumer(program: &str, args: &[&str], stdin: Option<&Path>) -> (bool, String) {
    let mut c = Command::new(program);
    c.args(args);
    if let Some(p) = stdin {
        c.stdin(std::fs::File::open(p).expect("open input"));
    } else {
        c.stdin(Stdio::null());
    }
    if program == "node" {
        let modules = std::env::var("CAIRN_NODE_MODULES").unwrap_or_else(|_| {
            format!(
                "{}/.cache/cairn/node/node_modules",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        assert!(
            Path::new(&modules).join("mermaid").is_dir(),
            "the Mermaid parser is not installed in {modules}: run .ci/consumers.sh"
        );
        c.env("NODE_PATH", modules);
    }
    let out = c.output().unwrap_or_else(|e| {
        panic!("{program} is needed to check this format ({e}): run .ci/consumers.sh")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn xmllint(file: &Path) {
    // The published schema (windyroad/JUnit-Schema, Apache-2.0), kept in the repository so a
    // clean checkout validates against it.
    let schema = repo().join("tests/consumers/JUnit.xsd");
    assert!(schema.exists(), "{} is missing", schema.display());
    let (ok, text) = consumer(
        "xmllint",
        &[
            "--noout",
            "--schema",
            &schema.display().to_string(),
            &file.display().to_string(),
        ],
        None,
    );
    assert!(ok, "xmllint refused {}:\n{text}", file.display());
}

fn promtool(file: &Path) {
    let (ok, text) = consumer("promtool", &["check", "metrics"], Some(file));
    assert!(ok, "promtool refused {}:\n{text}", file.display());
}

fn mermaid(file: &Path) -> String {
    let script = repo().join("tests/consumers/mermaid-parse.mjs");
    let (ok, text) = consumer(
        "node",
        &[&script.display().to_string(), &file.display().to_string()],
        None,
    );
    assert!(ok, "Mermaid refused {}:\n{text}", file.display());
    text
}

fn cairn(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Success, failure with hostile captured output, items, a skip, a check, a step named after
/// a Mermaid keyword, a secret, and `finally`.
const HOSTILE: &str = r#"
cairn: 1
name: hostile-report
rto: 30m
rpo: 6h
secrets:
  token: { env: REPORT_TOKEN }
inputs:
  off: { type: bool, default: false }
steps:
  - id: list
    shell: "echo '[\"a\", \"b&<c>\"]'"
    outputs: { items: "{{ result.stdout | from_json }}" }
  - id: end
    needs: [list]
    for_each: "{{ steps.list.outputs.items }}"
    shell: echo {{ item }}
  - id: gated
    needs: [list]
    when: inputs.off
    shell: echo no
  - id: pool
    needs: [list]
    check: { value: "42", warning: "> 40", critical: ">= 95", unit: conn }
    on_failure: continue
  - id: bad
    needs: [pool]
    shell: |
      head -c 300000 /dev/zero | tr '\0' 'x'
      echo
      echo "token={{ secrets.token }}"
      printf 'ctl:\001\002 ]]> <x> & "q" \033[31m\n'
      exit 3
finally:
  - id: cleanup
    shell: echo bye
"#;

fn hostile_run(sb: &Sandbox) -> String {
    sb.write("runbook.yaml", HOSTILE);
    let mut c = sb.command(
        "runbook.yaml",
        &[
            "--junit",
            "out/junit.xml",
            "--report",
            "out/report.md",
            "--metrics-file",
            "out/cairn.prom",
        ],
    );
    c.env("REPORT_TOKEN", "hunter2-report-secret");
    std::fs::create_dir_all(sb.path().join("out")).expect("out dir");
    let run = sb.run_with(c);
    run.expect_code(1);
    run.run_finished()["run_id"]
        .as_str()
        .expect("run id")
        .to_string()
}

#[test]
fn junit_of_a_hostile_run_is_valid_by_the_junit_schema() {
    let sb = Sandbox::new();
    let id = hostile_run(&sb);
    let path = sb.path().join("out/junit.xml");
    xmllint(&path);
    let xml = sb.read("out/junit.xml");
    assert!(!xml.contains("hunter2-report-secret"), "secret in JUnit");
    for case in [
        "name=\"list\"",
        "name=\"end[0]\"",
        "name=\"end[1]\"",
        "name=\"gated\"",
        "name=\"pool\"",
        "name=\"bad\"",
        "name=\"cleanup\"",
    ] {
        assert!(xml.contains(case), "{case} missing:\n{xml}");
    }
    assert!(
        xml.contains("tests=\"7\" failures=\"1\" errors=\"0\" skipped=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("<failure message=\"exit code 3\" type=\"failed\">"));
    assert!(xml.contains("token=***"), "{xml}");
    // The captured output is cut to its last 64 KiB, and says so.
    assert!(xml.contains(" bytes before]"), "{xml}");
    assert!(xml.len() < 100_000, "{}", xml.len());
    assert!(xml.contains("ctl:\u{FFFD}\u{FFFD} ]]&gt; &lt;x&gt; &amp; \"q\" \u{FFFD}[31m"));
    // The same report later, from the history.
    let (code, _, err) = cairn(
        &sb,
        &["show", &id, "--state", "state.db", "--junit", "later.xml"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(sb.read("later.xml"), xml);
}

#[test]
fn metrics_file_passes_promtool_and_is_replaced_whole() {
    let sb = Sandbox::new();
    let id = hostile_run(&sb);
    let path = sb.path().join("out/cairn.prom");
    promtool(&path);
    let m = sb.read("out/cairn.prom");
    let runbook = "runbook=\"hostile-report\"";
    for line in [
        format!("cairn_run_status{{{runbook},status=\"failed\"}} 1"),
        format!("cairn_run_success{{{runbook}}} 0"),
        format!("cairn_run_rto_seconds{{{runbook}}} 1800"),
        format!("cairn_check_value{{{runbook},check=\"pool\",unit=\"conn\"}} 42"),
        format!("cairn_check_state{{{runbook},check=\"pool\"}} 1"),
        format!("cairn_check_status{{{runbook},check=\"pool\",state=\"warning\"}} 1"),
    ] {
        assert!(m.lines().any(|l| l == line), "{line} missing:\n{m}");
    }
    assert!(m.contains("# TYPE cairn_step_duration_seconds gauge"));
    assert!(m.contains(&format!(
        "cairn_step_duration_seconds{{{runbook},step=\"bad\"}} "
    )));
    // Written by rename: no temp file is left beside it.
    let names: Vec<String> = std::fs::read_dir(sb.path().join("out"))
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".cairn-")), "{names:?}");
    // Rewritten from the history: same content.
    let (code, _, err) = cairn(
        &sb,
        &[
            "show",
            &id,
            "--state",
            "state.db",
            "--metrics-file",
            "out/cairn.prom",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(sb.read("out/cairn.prom"), m);
    // A path that is not a regular file is refused, and left as it was.
    std::fs::create_dir_all(sb.path().join("adir")).expect("dir");
    let (code, _, err) = cairn(
        &sb,
        &["show", &id, "--state", "state.db", "--metrics-file", "adir"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("not a regular file"), "{err}");
    assert!(sb.path().join("adir").is_dir());
}

#[test]
fn markdown_report_has_the_verdicts_and_a_graph_mermaid_parses() {
    let sb = Sandbox::new();
    let id = hostile_run(&sb);
    let md = sb.read("out/report.md");
    assert!(md.contains("- RTO 30m: **met**"), "{md}");
    assert!(md.contains("- RPO 6h: declared"), "{md}");
    assert!(md.contains("| bad | shell | failed | 1 |"), "{md}");
    assert!(
        md.contains("\"items\": [\n    \"a\",\n    \"b&<c>\"\n  ]"),
        "{md}"
    );
    assert!(
        md.contains("class s1 succeeded") && md.contains("class s4 failed"),
        "{md}"
    );
    assert!(!md.contains("hunter2-report-secret"));
    let parsed = mermaid(&sb.path().join("out/report.md"));
    assert!(parsed.contains("flowchart"), "{parsed}");
    let (code, _, err) = cairn(
        &sb,
        &["show", &id, "--state", "state.db", "--report", "later.md"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(sb.read("later.md"), md);
}

#[test]
fn graph_of_a_run_is_coloured_by_status_in_dot_and_mermaid() {
    let sb = Sandbox::new();
    let id = hostile_run(&sb);
    let (code, mmd, err) = cairn(
        &sb,
        &[
            "graph", "--run", &id, "--state", "state.db", "--format", "mermaid",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(mmd.contains("  s1[\"end (shell): succeeded\"]"), "{mmd}");
    assert!(mmd.contains("  s3[\"pool (check): succeeded\"]"), "{mmd}");
    assert!(mmd.contains("  s2[\"gated (shell): skipped\"]"), "{mmd}");
    assert!(
        mmd.contains("classDef failed fill:#ffcdd2,stroke:#c62828"),
        "{mmd}"
    );
    sb.write("run.mmd", &mmd);
    mermaid(&sb.path().join("run.mmd"));
    let (code, dot, err) = cairn(&sb, &["graph", "--run", &id, "--state", "state.db"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        dot.contains("\"bad\" [label=\"bad\\nshell\\nfailed\", style=filled, fillcolor=\"#ffcdd2\", color=\"#c62828\"];"),
        "{dot}"
    );
    // The plain graph of a runbook with a step named `end` parses too.
    let (code, plain, _) = cairn(&sb, &["graph", "runbook.yaml", "--format", "mermaid"]);
    assert_eq!(code, 0);
    sb.write("plain.mmd", &plain);
    mermaid(&sb.path().join("plain.mmd"));
}

#[test]
fn golden_mermaid_graphs_parse() {
    let golden = repo().join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&golden)
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "mmd"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        mermaid(&f);
    }
}
