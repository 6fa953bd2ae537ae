//! tests/e2e/mixed-run.yaml, a runbook written apart from these tests, run end to end: every
//! side effect is checked where it landed (rows in PostgreSQL, files, requests the HTTP
//! server received).

use super::common::{HttpServer, Sandbox, Table, pg};
use std::path::PathBuf;

fn runbook() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/e2e/mixed-run.yaml")
        .canonicalize()
        .expect("tests/e2e/mixed-run.yaml")
        .display()
        .to_string()
}

#[test]
fn mixed_run_end_to_end() {
    let server = HttpServer::start();
    let table = Table::new("mixed");
    let sb = Sandbox::new();
    let out_dir = sb.file("out");
    let mut cmd = sb.command(
        &runbook(),
        &[
            "--set",
            &format!("api={}", server.url("")),
            "--set",
            &format!("table={}", table.0),
            "--set",
            &format!("out_dir={out_dir}"),
        ],
    );
    for var in ["DB_USER", "DB_HOST", "DB_PORT", "DB_NAME"] {
        cmd.env_remove(var);
    }
    let run = sb.run_with(cmd);
    run.expect_code(0);
    let run_id = run.run_finished()["run_id"]
        .as_str()
        .expect("run id")
        .to_string();

    // PostgreSQL: one row per region, each with the probe's status and the API's version.
    let rows = pg(&format!(
        "SELECT region, status::text, version FROM {} ORDER BY region",
        table.0
    ));
    let row = |r: &str| {
        vec![
            Some(r.to_string()),
            Some("200".into()),
            Some("1.2.3".into()),
        ]
    };
    assert_eq!(rows, vec![row("ap-south"), row("eu-west"), row("us-east")]);

    // Files: the retry counter, the summary (its `when` held), the finally marker; no archive.
    assert_eq!(sb.read("out/warm.attempts"), "2\n");
    let summary = run.outputs()["summary"]
        .as_str()
        .expect("summary path")
        .to_string();
    assert!(
        summary.starts_with(&format!("{out_dir}/summary_")),
        "{summary}"
    );
    assert_eq!(
        std::fs::read_to_string(&summary).expect("summary written"),
        "3 rows in 3 regions, version 1.2.3, cache warm\n"
    );
    assert_eq!(sb.read("out/done"), "succeeded succeeded\n");
    assert!(!sb.exists("out/archived"));
    assert_eq!(
        run.finished("archive")["note"],
        "when inputs.archive is false"
    );

    // HTTP: exactly the requests the runbook makes, with the target's header on each.
    assert_eq!(server.hits("/health"), 1);
    assert_eq!(server.hits("/json"), 1);
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-runbook") == Some("mixed-run")),
        "{requests:?}"
    );
    let echo: Vec<_> = requests.iter().filter(|r| r.path == "/echo").collect();
    let gets = echo.iter().filter(|r| r.method == "GET").count();
    let posts: Vec<_> = echo.iter().filter(|r| r.method == "POST").collect();
    assert_eq!((gets, posts.len()), (3, 1), "{echo:?}");
    let body: serde_json::Value = serde_json::from_slice(&posts[0].body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({ "rows": 3, "version": "1.2.3", "run": run_id })
    );

    // The retry, the fan-out and the outputs, as the events tell them.
    assert_eq!(run.finished("warm_cache")["attempts"], 2);
    assert_eq!(run.all("step_retrying", "warm_cache").len(), 1);
    for step in ["probe_regions", "record"] {
        let items = run
            .all("step_finished", step)
            .iter()
            .filter(|e| e.get("item").is_some())
            .count();
        assert_eq!(items, 3, "{step}");
    }
    let out = run.outputs();
    assert_eq!(out["rows"], 3);
    assert_eq!(out["version"], "1.2.3");
    assert_eq!(out["statuses"], serde_json::json!([200, 200, 200]));
    assert_eq!(
        out["tagged"],
        serde_json::json!(["mixed-run", "mixed-run", "mixed-run"])
    );
    assert_eq!(run.outcome(), "succeeded");
}
