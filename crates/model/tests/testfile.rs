//! Runbook test files (`*.test.yaml`): the committed schema is current and accepts every
//! shipped test file; a malformed test file, or one that does not fit its runbook, is refused
//! at the exact line and column with the exact message.
//! Regenerate the schema with `CAIRN_BLESS=1 cargo test -p cairn-model --test testfile`.

use cairn_model::testfile::{check_against, parse};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_test_schema_is_current() {
    let path = repo().join("schemas/runbook-test.schema.json");
    let fresh = serde_json::to_string_pretty(&cairn_model::testfile::schema())
        .expect("schema serializes")
        + "\n";
    if std::env::var_os("CAIRN_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "schemas/runbook-test.schema.json is stale: run `CAIRN_BLESS=1 cargo test -p cairn-model --test testfile`"
    );
}

fn test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            test_files(&path, out);
        } else if path.to_string_lossy().ends_with(".test.yaml") {
            out.push(path);
        }
    }
}

#[test]
fn schema_and_parser_accept_every_shipped_test_file() {
    let v = jsonschema::validator_for(&cairn_model::testfile::schema()).expect("schema compiles");
    let templates = cairn_template::Templates::new();
    let mut files = Vec::new();
    test_files(&repo().join("runbooks"), &mut files);
    assert!(!files.is_empty(), "no shipped test files");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let json = cairn_model::yaml_to_json(&text).expect("valid YAML");
        let errors: Vec<String> = v
            .iter_errors(&json)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let (file, d) = parse(&path, &text);
        assert!(!d.has_errors(), "{}: {:?}", path.display(), d.0);
        let file = file.expect("parsed");
        let (rb, _) = cairn_model::load(&file.runbook_path(), &templates).expect("runbook loads");
        let d = check_against(&file, &rb, &|_, _| None);
        // Nested fixtures need the sub-runbook; the CLI's loader gives it (tests in crates/cli).
        let errors: Vec<_> = d
            .errors()
            .filter(|e| !e.message.contains("does not load"))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn schema_refuses_misspelt_keys() {
    let v = jsonschema::validator_for(&cairn_model::testfile::schema()).expect("schema compiles");
    let json = |y: &str| cairn_model::yaml_to_json(y).expect("yaml");
    let good = "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures: { s: { result: {} } }\n    expect: { status: failed, steps.s.outputs.x: 1 }\n";
    assert!(v.is_valid(&json(good)));
    for bad in [
        "cairn-test: 1\nrunbook: r.yaml\ncase: []\n",
        "cairn-test: 2\nrunbook: r.yaml\ncases: []\n",
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixture: {}\n",
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures: { s: { reslt: {} } }\n",
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    expect: { status: done }\n",
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    expect: { stat: failed }\n",
    ] {
        assert!(!v.is_valid(&json(bad)), "schema accepted:\n{bad}");
    }
}

const RUNBOOK: &str = "cairn: 1\nname: demo\ninputs:\n  size: { type: int, default: 1 }\nsteps:\n  - id: fetch\n    http: { get: http://x }\n    outputs: { code: \"{{ result.status }}\" }\n  - id: gate\n    approval: { message: go? }\n  - id: measure\n    check: { value: 1, critical: \"> 5\" }\n";

/// (test file, line, column, message) for each refusal.
const CASES: &[(&str, u32, u32, &str)] = &[
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures:\n      fecth: { result: { status: 200 } }\n",
        6,
        7,
        "`demo` has no step `fecth`",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures:\n      fetch: { result: { stauts: 200 } }\n",
        6,
        26,
        "a `http` result has no `stauts`",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures:\n      fetch: { result: { status: ok } }\n",
        6,
        34,
        "`status` of a `http` result must be an integer, found a string",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures:\n      fetch: { approve: true }\n",
        6,
        25,
        "`approve` answers a gate; step `fetch` is a `http` step",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures:\n      gate: { result: {} }\n",
        6,
        7,
        "step `gate` is a gate: its fixture is an answer",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures:\n      measure: { result: {} }\n",
        6,
        7,
        "step `measure` takes no fixture: a `check` step is evaluated by the engine from its `value`: give fixtures to the steps it reads",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    fixtures:\n      fetch: { result: {}, attempts: [] }\n",
        6,
        28,
        "a fixture gives one of `result`, `fail`, `approve`, `attempts`, `items`, `fixtures`; this one gives `result` and `attempts`",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    inputs: { sise: 2 }\n",
        5,
        15,
        "`demo` has no input `sise`",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    expect: { steps.fetch.outputs.cod: 200 }\n",
        5,
        15,
        "step `fetch` has no output `cod`",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    expect: { status: sucess }\n",
        5,
        23,
        "unknown status `sucess`",
    ),
    (
        "cairn-test: 1\nrunbook: r.yaml\ncases:\n  - name: a\n    expect: { not_ran: [gat] }\n",
        5,
        25,
        "`demo` has no step `gat`",
    ),
];

#[test]
fn refusals_are_located() {
    let templates = cairn_template::Templates::new();
    let (rb, d) = cairn_model::check("r.yaml".as_ref(), RUNBOOK, &templates);
    assert!(!d.has_errors(), "{:?}", d.0);
    let rb = rb.expect("runbook");
    for (yaml, line, col, message) in CASES {
        let (file, mut d) = parse("r.test.yaml".as_ref(), yaml);
        if let Some(f) = &file
            && !d.has_errors()
        {
            d = check_against(f, &rb, &|_, _| None);
        }
        let first = d
            .errors()
            .next()
            .unwrap_or_else(|| panic!("accepted:\n{yaml}"));
        assert_eq!(
            (first.span.line, first.span.col, first.message.as_str()),
            (*line, *col, *message),
            "{yaml}"
        );
    }
}

#[test]
fn did_you_mean_names_the_step() {
    let templates = cairn_template::Templates::new();
    let (rb, _) = cairn_model::check("r.yaml".as_ref(), RUNBOOK, &templates);
    let yaml = CASES[0].0;
    let (file, _) = parse("r.test.yaml".as_ref(), yaml);
    let d = check_against(&file.expect("parsed"), &rb.expect("rb"), &|_, _| None);
    let first = d.errors().next().expect("an error");
    assert_eq!(first.help.as_deref(), Some("did you mean `fetch`?"));
}
