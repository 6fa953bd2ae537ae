//! SQLite in a temporary file.

use std::time::{Duration, Instant};

use cairn_steps::StepError;
use cairn_steps::sql::{Pools, SqlSpec, SqlTarget, run};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{fails, query, rows, target};

/// A new database file (created by SQLite itself) in a temp dir kept alive by the caller.
async fn fresh() -> (tempfile::TempDir, SqlTarget, Pools) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cairn.db");
    let db = target(&format!("sqlite://{}?mode=rwc", path.display()));
    (dir, db, Pools::new())
}

/// Endless unless interrupted.
const FOREVER: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[tokio::test]
async fn storage_classes_map_faithfully() {
    let (_dir, db, pools) = fresh().await;
    let got = rows(
        &pools,
        &db,
        "SELECT 42 AS i, -9007199254740993 AS big, 2.5 AS r, 9e999 AS inf, 'héllo' AS t, x'DEADBEEF' AS bl, NULL AS n, 1 = 1 AS truth",
        vec![],
    )
    .await;
    assert_eq!(
        got,
        vec![
            json!({"i": 42, "big": -9007199254740993_i64, "r": 2.5, "inf": "Infinity", "t": "héllo", "bl": "3q2+7w==", "n": null, "truth": 1})
        ]
    );
    pools.close().await;
}

#[tokio::test]
async fn parameters_bind_each_json_type_and_injection_stays_data() {
    let (_dir, db, pools) = fresh().await;
    query(&pools, &db, "CREATE TABLE t (a, b, c, d, e, f)", vec![]).await;
    let v = query(
        &pools,
        &db,
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            json!(null),
            json!(true),
            json!(-7),
            json!(0.25),
            json!("'; DROP TABLE t; --"),
            json!({"k": [1]}),
        ],
    )
    .await;
    assert_eq!(v["rows_affected"], 1);
    let got = rows(
        &pools,
        &db,
        "SELECT a, b, c, d, e, f, json_extract(f, '$.k[0]') AS k FROM t WHERE e = ?",
        vec![json!("'; DROP TABLE t; --")],
    )
    .await;
    assert_eq!(
        got,
        vec![
            json!({"a": null, "b": 1, "c": -7, "d": 0.25, "e": "'; DROP TABLE t; --", "f": "{\"k\":[1]}", "k": 1})
        ]
    );
    let got = rows(&pools, &db, "SELECT count(*) AS n FROM t", vec![]).await;
    assert_eq!(got, vec![json!({"n": 1})]);

    let spec = SqlSpec::new("SELECT ?").with_params(vec![json!(u64::MAX)]);
    let e = fails(&pools, &db, &spec).await;
    assert!(e.to_string().contains("does not fit"), "{e}");
    pools.close().await;
}

#[tokio::test]
async fn scripts_and_vacuum_run() {
    let (_dir, db, pools) = fresh().await;
    let v = query(&pools, &db, "CREATE TABLE s (v INTEGER); INSERT INTO s VALUES (1), (2); INSERT INTO s VALUES (3); SELECT sum(v) AS total FROM s;", vec![]).await;
    assert_eq!(v["rows"], json!([{"total": 6}]));
    assert_eq!(v["rows_affected"], 3);
    query(&pools, &db, "VACUUM", vec![]).await;
    query(
        &pools,
        &db,
        "CREATE INDEX s_v ON s (v); REINDEX s_v; ANALYZE",
        vec![],
    )
    .await;
    pools.close().await;
}

#[tokio::test]
async fn read_only_refuses_writes() {
    let (_dir, db, pools) = fresh().await;
    query(&pools, &db, "CREATE TABLE r (v)", vec![]).await;
    let mut spec = SqlSpec::new("INSERT INTO r VALUES (1)");
    spec.read_only = true;
    let e = fails(&pools, &db, &spec).await;
    assert!(matches!(e, StepError::Failed { .. }));
    assert!(
        e.to_string()
            .starts_with("attempt to write a readonly database (SQLite error 8)"),
        "{e}"
    );
    // query_only is switched off again for the next step on the same connection.
    query(&pools, &db, "INSERT INTO r VALUES (2)", vec![]).await;
    assert_eq!(
        rows(&pools, &db, "SELECT count(*) AS n FROM r", vec![]).await,
        vec![json!({"n": 1})]
    );
    pools.close().await;
}

#[tokio::test]
async fn timeout_and_cancel_interrupt_the_statement() {
    let (_dir, db, pools) = fresh().await;
    let mut spec = SqlSpec::new(FOREVER);
    spec.timeout = Some(Duration::from_millis(500));
    let started = Instant::now();
    let e = fails(&pools, &db, &spec).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, StepError::Timeout { .. }), "{e:?}");

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let e = run(&pools, &db, &SqlSpec::new(FOREVER), &cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(e, StepError::Cancelled { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The interrupted connection is still good.
    assert_eq!(
        rows(&pools, &db, "SELECT 1 AS ok", vec![]).await,
        vec![json!({"ok": 1})]
    );
    pools.close().await;
}

#[tokio::test]
async fn errors_name_the_cause() {
    let (dir, db, pools) = fresh().await;
    let e = fails(&pools, &db, &SqlSpec::new("SELECT * FROM memory_entities")).await;
    assert_eq!(
        e.to_string(),
        format!(
            "no such table: memory_entities (SQLite error 1) on {}",
            db.url
        )
    );

    let missing = target(&format!(
        "sqlite://{}",
        dir.path().join("absent.db").display()
    ));
    let e = fails(&pools, &missing, &SqlSpec::new("SELECT 1")).await;
    assert!(matches!(e, StepError::Setup { .. }), "{e:?}");
    assert!(
        e.to_string().contains("unable to open database file")
            && e.to_string().contains("absent.db"),
        "{e}"
    );

    let memory = target("sqlite::memory:");
    query(&pools, &memory, "CREATE TABLE m (v)", vec![]).await;
    query(&pools, &memory, "INSERT INTO m VALUES (1)", vec![]).await;
    assert_eq!(
        rows(&pools, &memory, "SELECT v FROM m", vec![]).await,
        vec![json!({"v": 1})]
    );
    pools.close().await;
}
