//! PostgreSQL: scripts, maintenance statements, timeouts, cancel, read-only, error messages.

use std::time::{Duration, Instant};

use cairn_steps::StepError;
use cairn_steps::sql::{Pools, SqlSpec, run};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::postgres::{URL, drop_schema, pg, schema};
use super::{fails, query, rows, target, unique};

#[tokio::test]
async fn maintenance_statements_and_scripts_run() {
    let pools = Pools::new();
    let s = schema(&pools).await;
    let t = format!("{s}.m");
    query(
        &pools,
        &pg(),
        &format!("CREATE TABLE {t} (id int4)"),
        vec![],
    )
    .await;
    for sql in [
        format!("VACUUM ANALYZE {t}"),
        format!("VACUUM {t}"),
        format!("CREATE INDEX CONCURRENTLY m_id ON {t} (id)"),
        format!("REINDEX TABLE {t}"),
    ] {
        query(&pools, &pg(), &sql, vec![]).await;
    }
    let script = format!(
        "INSERT INTO {t} VALUES (1); INSERT INTO {t} VALUES (2), (3);\nSELECT count(*) AS n, max(id) AS top FROM {t};"
    );
    let v = query(&pools, &pg(), &script, vec![]).await;
    assert_eq!(v["rows"], json!([{"n": 3, "top": 3}]));
    // 1 + 2 inserted, and PostgreSQL counts the one row the SELECT returned.
    assert_eq!(v["rows_affected"], 4);
    // A script travels as text: the same mapping, except arrays stay in PostgreSQL's text form.
    let v = query(
        &pools,
        &pg(),
        "SELECT 1; SELECT 1::int8 AS i, 0.5::float8 AS f, 1.50::numeric AS n, true AS b, NULL::text AS z, \
         '2024-05-01 03:04:05+00'::timestamptz AS tz, '2024-05-01'::date AS d, '1 day 02:00:00'::interval AS iv, \
         '{\"a\": 1}'::jsonb AS j, '\\xdead'::bytea AS by, ARRAY[1, 2] AS a",
        vec![],
    )
    .await;
    assert_eq!(
        v["rows"][1],
        json!({"i": 1, "f": 0.5, "n": "1.50", "b": true, "z": null, "tz": "2024-05-01T03:04:05+00:00", "d": "2024-05-01", "iv": "1 day 02:00:00", "j": {"a": 1}, "by": "3q0=", "a": "{1,2}"})
    );
    // A script inside a read-only run is still refused by the server.
    let mut spec = SqlSpec::new(format!("SELECT 1; INSERT INTO {t} VALUES (4)"));
    spec.read_only = true;
    let e = fails(&pools, &pg(), &spec).await;
    assert!(
        e.to_string()
            .contains("read-only transaction (SQLSTATE 25006)"),
        "{e}"
    );
    drop_schema(&pools, &s).await;
}

#[tokio::test]
async fn statement_timeout_stops_the_query_on_the_server() {
    let pools = Pools::new();
    let mut spec = SqlSpec::new("SELECT pg_sleep(5)");
    spec.timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let e = fails(&pools, &pg(), &spec).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert!(
        matches!(e, StepError::Timeout { after, .. } if after == Duration::from_secs(1)),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "timeout after 1 s");
    // The connection went back clean: no leftover timeout on the next step.
    let got = rows(&pools, &pg(), "SHOW statement_timeout", vec![]).await;
    assert_eq!(got, vec![json!({"statement_timeout": "0"})]);
    pools.close().await;
}

#[tokio::test]
async fn cancel_aborts_the_query_on_the_server() {
    let pools = Pools::new();
    let marker = unique("cancel_me");
    let spec = SqlSpec::new(format!("SELECT pg_sleep(20) AS {marker}"));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let e = run(&pools, &pg(), &spec, &cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(e, StepError::Cancelled { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let running = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    );
    let mut n = json!(-1);
    for _ in 0..50 {
        n = rows(&pools, &pg(), &running, vec![]).await[0]["n"].clone();
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n, 0, "the backend still runs the query");
    pools.close().await;
}

#[tokio::test]
async fn read_only_refuses_writes() {
    let pools = Pools::new();
    let s = schema(&pools).await;
    let t = format!("{s}.r");
    query(&pools, &pg(), &format!("CREATE TABLE {t} (v int4)"), vec![]).await;
    let mut spec = SqlSpec::new(format!("INSERT INTO {t} VALUES ($1)")).with_params(vec![json!(1)]);
    spec.read_only = true;
    let e = fails(&pools, &pg(), &spec).await;
    assert!(matches!(e, StepError::Failed { .. }));
    assert_eq!(
        e.to_string(),
        format!("cannot execute INSERT in a read-only transaction (SQLSTATE 25006) on {URL}")
    );
    let mut read = SqlSpec::new(format!("SELECT count(*) AS n FROM {t}"));
    read.read_only = true;
    let v = run(&pools, &pg(), &read, &CancellationToken::new())
        .await
        .expect("a read works");
    assert_eq!(v["rows"], json!([{"n": 0}]));
    // The pooled connection is not left inside the read-only transaction.
    query(
        &pools,
        &pg(),
        &format!("INSERT INTO {t} VALUES (2)"),
        vec![],
    )
    .await;
    drop_schema(&pools, &s).await;
}

#[tokio::test]
async fn errors_name_the_cause_and_the_masked_target() {
    let pools = Pools::new();
    let refused = target("postgres://memory:hunter2@127.0.0.1:1/memory");
    let started = Instant::now();
    let e = fails(&pools, &refused, &SqlSpec::new("SELECT 1")).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no silent retrying: {:?}",
        started.elapsed()
    );
    assert!(matches!(e, StepError::Setup { .. }));
    assert_eq!(
        e.to_string(),
        "connection refused (postgres://memory:***@127.0.0.1:1/memory)"
    );

    let mut separate = target("postgres://memory@127.0.0.1:1/memory");
    separate.password = Some("hunter2".into());
    let e = fails(&pools, &separate, &SqlSpec::new("SELECT 1")).await;
    assert!(!e.to_string().contains("hunter2"));

    let nodb = target("postgres://postgres@127.0.0.1:5432/cairn_no_such_db");
    let e = fails(&pools, &nodb, &SqlSpec::new("SELECT 1")).await;
    assert_eq!(
        e.to_string(),
        r#"database "cairn_no_such_db" does not exist (postgres://postgres@127.0.0.1:5432/cairn_no_such_db)"#
    );

    let e = fails(
        &pools,
        &pg(),
        &SqlSpec::new("SELECT count(*) FROM memory_entities_missing"),
    )
    .await;
    assert!(matches!(e, StepError::Failed { .. }));
    assert_eq!(
        e.to_string(),
        format!(r#"relation "memory_entities_missing" does not exist (SQLSTATE 42P01) on {URL}"#)
    );

    let e = fails(
        &pools,
        &pg(),
        &SqlSpec::new("SELECT query, calls FROM pg_stat_statements"),
    )
    .await;
    assert!(
        e.to_string().contains("needs shared_preload_libraries")
            && e.to_string()
                .contains("CREATE EXTENSION pg_stat_statements"),
        "{e}"
    );

    let e = fails(&pools, &pg(), &SqlSpec::new("SELEC 1")).await;
    assert!(
        e.to_string()
            .starts_with(r#"syntax error at or near "SELEC" (SQLSTATE 42601)"#),
        "{e}"
    );
    pools.close().await;
}
