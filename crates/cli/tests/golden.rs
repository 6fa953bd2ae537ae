//! Golden files for `plan` (text and JSON) and `graph` (dot and mermaid), under tests/golden/.
//! Regenerate with `CAIRN_BLESS=1 cargo test -p cairn-cli --test golden`, then review the diff.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Run cairn from the repository root with a fixed clock and none of the runbooks' env knobs.
fn cairn(args: &[&str]) -> String {
    let out = Command::cargo_bin("cairn")
        .expect("binary")
        .current_dir(root())
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1795000000")
        .env("NO_COLOR", "1")
        .env_remove("DB_USER")
        .env_remove("DB_HOST")
        .env_remove("DB_PORT")
        .env_remove("DB_NAME")
        .env_remove("CHROMA_URL")
        .env_remove("MIXED_API_TOKEN")
        .env_remove("PGPASSWORD_MEMORY")
        .output()
        .expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `run.dir` is the runbook's absolute folder: write the checkout's root as `<repo>`.
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .replace(&root().display().to_string(), "<repo>")
}

fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("CAIRN_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}: run with CAIRN_BLESS=1", path.display()));
    assert!(
        expected == actual,
        "{} differs from the output:\n{actual}",
        path.display()
    );
}

fn stem(p: &str) -> String {
    Path::new(p)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(p)
        .to_string()
}

const RUNBOOKS: &[(&str, &[&str])] = &[
    ("tests/golden/mixed.yaml", &["--set", "actor_id=client_42"]),
    ("runbooks/backup/backup.yaml", &[]),
    ("runbooks/monitoring/health-check.yaml", &[]),
];

#[test]
fn plan_text() {
    for (file, extra) in RUNBOOKS {
        let mut args = vec!["plan", file];
        args.extend_from_slice(extra);
        golden(&format!("{}.plan.txt", stem(file)), &cairn(&args));
    }
}

#[test]
fn plan_json() {
    for (file, extra) in RUNBOOKS {
        let mut args = vec!["plan", file, "--output", "json"];
        args.extend_from_slice(extra);
        let out = cairn(&args);
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("plan JSON parses");
        assert!(parsed["steps"].is_array());
        golden(&format!("{}.plan.json", stem(file)), &out);
    }
}

#[test]
fn graphs() {
    for (file, _) in RUNBOOKS {
        golden(
            &format!("{}.dot", stem(file)),
            &cairn(&["graph", file, "--format", "dot"]),
        );
        golden(
            &format!("{}.mmd", stem(file)),
            &cairn(&["graph", file, "--format", "mermaid"]),
        );
    }
}

#[test]
fn plan_json_is_stable_between_runs() {
    let a = cairn(&[
        "plan",
        "tests/golden/mixed.yaml",
        "--set",
        "actor_id=client_1",
        "--output",
        "json",
    ]);
    let b = cairn(&[
        "plan",
        "tests/golden/mixed.yaml",
        "--set",
        "actor_id=client_1",
        "--output",
        "json",
    ]);
    assert_eq!(a, b);
}

/// Every runbook under runbooks/ validates and plans with its default inputs.
#[test]
fn every_shipped_runbook_validates_and_plans() {
    let dir = root().join("runbooks");
    let mut books = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("runbooks/") {
        let path = entry.expect("entry").path();
        let files: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path)
                .expect("folder")
                .map(|e| e.expect("entry").path())
                .collect()
        } else {
            vec![path]
        };
        books.extend(
            files
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                // A runbook's test file (`NAME.test.yaml`) is `cairn test`'s, not a runbook.
                .filter(|p| !p.to_string_lossy().ends_with(".test.yaml")),
        );
    }
    assert!(books.len() >= 6, "{books:?}");
    for book in &books {
        let rel = book.strip_prefix(root()).expect("under the root");
        let rel = rel.to_str().expect("utf-8 path");
        cairn(&["validate", rel]);
        // The game days take the servers' addresses from gameday.sh: one inputs file for all.
        let plan = if rel.starts_with("runbooks/gameday/") {
            cairn(&[
                "plan",
                rel,
                "--inputs",
                "tests/golden/gameday-inputs.yaml",
                "--inputs-ignore-unknown",
            ])
        } else {
            cairn(&["plan", rel])
        };
        assert!(plan.starts_with("plan: "), "{rel}: {plan}");
    }
}

/// `cairn schema` goes through the buffered JSON writer of `plan --output json`: it prints the
/// schema kept in the repository, byte for byte.
#[test]
fn schema_output_is_the_kept_schema() {
    let kept =
        std::fs::read_to_string(root().join("schemas/runbook.schema.json")).expect("kept schema");
    assert!(
        cairn(&["schema"]) == kept,
        "`cairn schema` differs from schemas/runbook.schema.json"
    );
}

/// Completions are written through a buffer: the script arrives whole, up to its last line.
#[test]
fn completions_are_written_whole() {
    let script = cairn(&["completions", "bash"]);
    assert!(
        script.ends_with("    complete -F _cairn -o bashdefault -o default cairn\nfi\n"),
        "the bash completion script is cut short:\n{}",
        &script[script.len().saturating_sub(300)..]
    );
}
