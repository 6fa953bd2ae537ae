//! The committed JSON Schema is generated from the model types; this fails when it is stale.
//! Regenerate with `CAIRN_BLESS=1 cargo test -p cairn-model --test schema` (or `cairn schema`).

use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/runbook.schema.json")
}

#[test]
fn committed_schema_is_current() {
    let fresh =
        serde_json::to_string_pretty(&cairn_model::schema()).expect("schema serializes") + "\n";
    if std::env::var_os("CAIRN_BLESS").is_some() {
        std::fs::write(committed(), &fresh).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(committed()).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "schemas/runbook.schema.json is stale: run `CAIRN_BLESS=1 cargo test -p cairn-model --test schema`"
    );
}

#[test]
fn schema_refuses_unknown_keys_everywhere_it_matters() {
    let s = cairn_model::schema();
    assert_eq!(s["additionalProperties"], false, "runbook");
    let defs = &s["definitions"];
    for name in [
        "Step",
        "Input",
        "Secret",
        "Target",
        "Retry",
        "SqlStep",
        "HttpStep",
        "CheckStep",
        "WaitStep",
        "ReportStep",
        "WebhookNotifier",
        "SlackNotifier",
        "PagerDutyNotifier",
        "EmailNotifier",
        "Notify",
        "NotifyOn",
    ] {
        assert_eq!(defs[name]["additionalProperties"], false, "{name}");
    }
    assert_eq!(s["required"], serde_json::json!(["cairn", "name", "steps"]));
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&cairn_model::schema()).expect("the schema compiles")
}

fn as_json(yaml: &str) -> serde_json::Value {
    cairn_model::yaml_to_json(yaml).expect("valid YAML")
}

#[test]
fn schema_accepts_every_runbook_in_the_repository() {
    let v = validator();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../runbooks");
    let mut seen = 0;
    // runbooks/ and its folders (backup/, recovery/, drill/...).
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("runbooks/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            for sub in std::fs::read_dir(&path).expect("a runbooks folder") {
                paths.push(sub.expect("entry").path());
            }
        } else {
            paths.push(path);
        }
    }
    for path in paths {
        // A runbook's test file has a schema of its own (tests/testfile.rs).
        let test_file = path.to_string_lossy().ends_with(".test.yaml");
        if path.extension().is_some_and(|e| e == "yaml") && !test_file {
            let text = std::fs::read_to_string(&path).expect("read");
            let errors: Vec<String> = v
                .iter_errors(&as_json(&text))
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 6, "expected runbooks in {}", dir.display());
}

#[test]
fn schema_rejects_misspelt_keys_and_wrong_types() {
    let v = validator();
    let good = "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo\n    timeout: 5s\n";
    assert!(v.is_valid(&as_json(good)));
    for bad in [
        "cairn: 1\nname: demo\nstepz: []\nsteps: []\n",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shel: echo\n",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo\n    timeout: [5]\n",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo\n    retry: { attempts: many }\n",
        "cairn: 1\nname: Demo\nsteps: []\n",
        "cairn: 2\nname: demo\nsteps: []\n",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: x, pasword: y }\nsteps: []\n",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    chroma: { target: c, count: { colection: x } }\n",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    check: { value: 1, warning: lots }\n",
        "cairn: 1\nname: demo\nnotifiers:\n  t: { slak: { url: u } }\nsteps: []\n",
        "cairn: 1\nname: demo\nnotifiers:\n  t: { slack: { url: u }, email: { smtp: s, from: f, to: t } }\nsteps: []\n",
        "cairn: 1\nname: demo\nnotifiers:\n  t: { pagerduty: { url: u } }\nsteps: []\n",
        "cairn: 1\nname: demo\nnotify:\n  on: { waitng: [t] }\nsteps: []\n",
    ] {
        assert!(!v.is_valid(&as_json(bad)), "schema accepted:\n{bad}");
    }
}

#[test]
fn schema_accepts_every_notifier_kind() {
    let v = validator();
    let good = r#"cairn: 1
name: demo
notifiers:
  oncall: { pagerduty: { routing_key: "{{ secrets.k }}", url: "http://127.0.0.1:9/v2/enqueue" } }
  team: { slack: { url: "{{ secrets.k }}", timeout: 3s } }
  audit: { webhook: { url: "https://hooks.example/cairn", secret: "{{ secrets.k }}", headers: { X-A: b } } }
  dba: { email: { smtp: "smtp://mail.example:587", starttls: true, from: c@ex, to: [a@ex, b@ex], username: u, password: p } }
  one: { email: { smtp: "smtp://mail.example", from: c@ex, to: a@ex } }
notify:
  on: { waiting: [oncall, team], failed: [oncall], succeeded: [team], paused: [team] }
  renotify: 15m
steps: []
"#;
    let errors: Vec<String> = v
        .iter_errors(&as_json(good))
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// check-jsonschema, the validator editors' pre-commit hooks run: `$CAIRN_CHECK_JSONSCHEMA`, else
/// the cached virtualenv that `.ci/check-jsonschema.sh` installs. A missing tool fails the test.
fn check_jsonschema() -> PathBuf {
    let bin = std::env::var_os("CAIRN_CHECK_JSONSCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cairn/check-jsonschema-venv/bin/check-jsonschema")
        });
    assert!(
        bin.is_file(),
        "check-jsonschema not found at {}: run `bash .ci/check-jsonschema.sh` (it prints the path to \
         put in CAIRN_CHECK_JSONSCHEMA)",
        bin.display()
    );
    bin
}

/// Runs check-jsonschema with the committed schema on `files`: (success, what it printed).
fn check_files(files: &[PathBuf]) -> (bool, String) {
    let out = std::process::Command::new(check_jsonschema())
        .arg("--schemafile")
        .arg(committed())
        .args(files)
        .output()
        .expect("run check-jsonschema");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn yaml_files(dir: &std::path::Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            yaml_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            // A runbook's test file has a schema of its own (tests/testfile.rs).
            && !path.to_string_lossy().ends_with(".test.yaml")
        {
            into.push(path);
        }
    }
}

#[test]
fn check_jsonschema_accepts_every_runbook_and_example() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    yaml_files(&root.join("runbooks"), &mut files);
    yaml_files(&root.join("examples"), &mut files);
    assert!(
        files.len() >= 6,
        "expected runbooks under {}",
        root.display()
    );
    let (ok, said) = check_files(&files);
    assert!(
        ok,
        "check-jsonschema refused a runbook of the repository:\n{said}"
    );
}

#[test]
fn check_jsonschema_refuses_a_step_with_no_kind_or_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = "cairn: 1\nname: demo\nsteps:\n  - id: a\n";
    let cases = [
        ("good.yaml", "    shell: echo hi\n", true),
        (
            "uses.yaml",
            "    uses: other.yaml\n    with: { n: 1 }\n",
            true,
        ),
        (
            "poll.yaml",
            "    wait: { until: \"{{ result.exit_code == 0 }}\", shell: \"true\" }\n",
            true,
        ),
        ("sleep.yaml", "    wait: { duration: 1s }\n", true),
        ("no-kind.yaml", "    name: does nothing\n", false),
        (
            "two-kinds.yaml",
            "    shell: echo hi\n    sql: { target: db, query: SELECT 1 }\n",
            false,
        ),
        (
            "three-kinds.yaml",
            "    shell: a\n    argv: [b]\n    uses: c.yaml\n",
            false,
        ),
        (
            "with-alone.yaml",
            "    shell: echo hi\n    with: { n: 1 }\n",
            false,
        ),
        ("wait-nothing.yaml", "    wait: { interval: 1s }\n", false),
        (
            "wait-two-polls.yaml",
            "    wait: { until: \"{{ true }}\", shell: a, argv: [b] }\n",
            false,
        ),
        ("wait-no-until.yaml", "    wait: { shell: a }\n", false),
        (
            "wait-sleep-and-poll.yaml",
            "    wait: { duration: 1s, until: \"{{ true }}\", shell: a }\n",
            false,
        ),
        (
            "wait-sleep-until.yaml",
            "    wait: { duration: 1s, until: \"{{ true }}\" }\n",
            false,
        ),
    ];
    for (name, step, valid) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{head}{step}")).expect("write");
        let (ok, said) = check_files(std::slice::from_ref(&path));
        assert_eq!(ok, valid, "{name}: check-jsonschema said:\n{said}");
        // The Rust validator reads the schema the same way.
        assert_eq!(
            validator().is_valid(&as_json(&format!("{head}{step}"))),
            valid,
            "{name} (jsonschema crate)"
        );
    }
}
