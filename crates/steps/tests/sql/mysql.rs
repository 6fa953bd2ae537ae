//! MariaDB at mysql://root@127.0.0.1:3306/test (root, empty password).

use std::time::{Duration, Instant};

use cairn_steps::StepError;
use cairn_steps::sql::{Pools, SqlSpec, SqlTarget, run};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{fails, query, rows, target, unique};

const URL: &str = "mysql://root@127.0.0.1:3306/test";

fn my() -> SqlTarget {
    target(URL)
}

#[tokio::test]
async fn every_type_maps_faithfully() {
    let pools = Pools::new();
    let t = unique("cairn_types");
    query(
        &pools,
        &my(),
        &format!(
            "CREATE TABLE {t} (ti TINYINT, flag TINYINT(1), si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED, \
             dec_ DECIMAL(20,4), f FLOAT, dbl DOUBLE, vc VARCHAR(20), tx TEXT, ch CHAR(3), en ENUM('a','b'), \
             dt DATETIME(6), ts TIMESTAMP(3) NULL, d DATE, tm TIME, yr YEAR, js JSON, bl BLOB, vb VARBINARY(4), nul INT)"
        ),
        vec![],
    )
    .await;
    query(
        &pools,
        &my(),
        &format!(
            "INSERT INTO {t} VALUES (-128, 1, -32768, 8388607, 2147483647, -9223372036854775808, 18446744073709551615, \
             12345678901234.5678, 1.5, 0.1, 'vc', 'text', 'ab', 'b', '2024-05-01 03:04:05.123456', '2024-05-01 03:04:05.5', \
             '2024-05-01', '-01:02:03', 2024, '{{\"a\": [1, null]}}', x'DEADBEEF', x'0001', NULL)"
        ),
        vec![],
    )
    .await;
    let want = json!({
        "ti": -128, "flag": 1, "si": -32768, "mi": 8388607, "i": 2147483647, "bi": i64::MIN, "ubi": u64::MAX,
        "dec_": "12345678901234.5678", "f": 1.5, "dbl": 0.1, "vc": "vc", "tx": "text", "ch": "ab", "en": "b",
        "dt": "2024-05-01T03:04:05.123456", "ts": "2024-05-01T03:04:05.500+00:00", "d": "2024-05-01", "tm": "-1:02:03",
        "yr": 2024, "js": "{\"a\": [1, null]}", "bl": "3q2+7w==", "vb": "AAE=", "nul": null,
    });
    // The binary protocol (a parameter) and the text protocol (a script) agree.
    let prepared = rows(
        &pools,
        &my(),
        &format!("SELECT * FROM {t} WHERE 1 = ?"),
        vec![json!(1)],
    )
    .await;
    assert_eq!(prepared, vec![want.clone()]);
    let script = query(
        &pools,
        &my(),
        &format!("SELECT 1; SELECT * FROM {t}"),
        vec![],
    )
    .await;
    assert_eq!(script["rows"][1], want);
    query(&pools, &my(), &format!("DROP TABLE {t}"), vec![]).await;
    pools.close().await;
}

#[tokio::test]
async fn parameters_bind_and_injection_stays_data() {
    let pools = Pools::new();
    let got = rows(
        &pools,
        &my(),
        "SELECT ? AS n, ? AS b, ? AS i, ? AS u, ? AS f, ? AS s, JSON_EXTRACT(?, '$.k') AS k",
        vec![
            json!(null),
            json!(true),
            json!(-5),
            json!(u64::MAX),
            json!(2.5),
            json!("hi"),
            json!({"k": [1, 2]}),
        ],
    )
    .await;
    assert_eq!(
        got,
        vec![
            json!({"n": null, "b": 1, "i": -5, "u": u64::MAX, "f": 2.5, "s": "hi", "k": "[1, 2]"})
        ]
    );

    let t = unique("cairn_inj");
    query(&pools, &my(), &format!("CREATE TABLE {t} (v TEXT)"), vec![]).await;
    let evil = "'; DROP TABLE t; --";
    query(
        &pools,
        &my(),
        &format!("INSERT INTO {t} VALUES (?)"),
        vec![json!(evil)],
    )
    .await;
    assert_eq!(
        rows(
            &pools,
            &my(),
            &format!("SELECT v FROM {t} WHERE v = ?"),
            vec![json!(evil)]
        )
        .await,
        vec![json!({"v": evil})]
    );
    query(&pools, &my(), &format!("DROP TABLE {t}"), vec![]).await;
    pools.close().await;
}

#[tokio::test]
async fn read_only_refuses_writes_and_timeout_stops_the_statement() {
    let pools = Pools::new();
    let t = unique("cairn_ro");
    query(&pools, &my(), &format!("CREATE TABLE {t} (v INT)"), vec![]).await;
    let mut spec = SqlSpec::new(format!("INSERT INTO {t} VALUES (1)"));
    spec.read_only = true;
    let e = fails(&pools, &my(), &spec).await;
    assert!(
        e.to_string()
            .starts_with("Cannot execute statement in a READ ONLY transaction (MySQL error 1792"),
        "{e}"
    );
    query(
        &pools,
        &my(),
        &format!("INSERT INTO {t} VALUES (2)"),
        vec![],
    )
    .await;
    query(&pools, &my(), &format!("DROP TABLE {t}"), vec![]).await;

    let mut spec = SqlSpec::new("SELECT SLEEP(5)");
    spec.timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let e = fails(&pools, &my(), &spec).await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, StepError::Timeout { .. }), "{e:?}");
    pools.close().await;
}

#[tokio::test]
async fn cancel_stops_the_statement() {
    let pools = Pools::new();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let e = run(&pools, &my(), &SqlSpec::new("SELECT SLEEP(20)"), &cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(e, StepError::Cancelled { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    pools.close().await;
}

#[tokio::test]
async fn errors_name_the_cause_and_the_masked_target() {
    let pools = Pools::new();
    let e = fails(
        &pools,
        &target("mysql://root:hunter2@127.0.0.1:1/test"),
        &SqlSpec::new("SELECT 1"),
    )
    .await;
    assert_eq!(
        e.to_string(),
        "connection refused (mysql://root:***@127.0.0.1:1/test)"
    );

    let mut bad = my();
    bad.password = Some("definitely-wrong".into());
    let e = fails(&pools, &bad, &SqlSpec::new("SELECT 1")).await;
    assert!(matches!(e, StepError::Setup { .. }));
    assert!(
        e.to_string()
            .starts_with("authentication failed: Access denied for user 'root'"),
        "{e}"
    );
    assert!(
        e.to_string().ends_with(&format!("({URL})")) && !e.to_string().contains("definitely-wrong"),
        "{e}"
    );

    let e = fails(
        &pools,
        &target("mysql://root@127.0.0.1:3306/cairn_no_such_db"),
        &SqlSpec::new("SELECT 1"),
    )
    .await;
    assert_eq!(
        e.to_string(),
        "Unknown database 'cairn_no_such_db' (mysql://root@127.0.0.1:3306/cairn_no_such_db)"
    );

    let e = fails(
        &pools,
        &my(),
        &SqlSpec::new("SELECT * FROM memory_entities_missing"),
    )
    .await;
    assert_eq!(
        e.to_string(),
        format!(
            "Table 'test.memory_entities_missing' doesn't exist (MySQL error 1146, SQLSTATE 42S02) on {URL}"
        )
    );
    pools.close().await;
}

#[tokio::test]
async fn warnings_of_the_statement_are_kept_as_notices() {
    let pools = Pools::new();
    let t = unique("cairn_warn");
    query(
        &pools,
        &my(),
        &format!("CREATE TABLE {t} (c VARCHAR(2))"),
        vec![],
    )
    .await;
    // Truncation is a warning outside strict mode (a session setting of its own here).
    let r = query(
        &pools,
        &my(),
        &format!("SET SESSION sql_mode = ''; INSERT INTO {t} VALUES ('abcdef')"),
        vec![],
    )
    .await;
    let notices = r["notices"].as_array().cloned().unwrap_or_default();
    assert_eq!(notices.len(), 1, "{r}");
    assert_eq!(notices[0]["severity"], "WARNING", "{r}");
    assert!(
        notices[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Data truncated")),
        "{r}"
    );
    let note = query(
        &pools,
        &my(),
        &format!("DROP TABLE IF EXISTS {t}_nope"),
        vec![],
    )
    .await;
    assert_eq!(note["notices"][0]["severity"], "NOTE", "{note}");
    let quiet = query(&pools, &my(), "SELECT 1 AS n", vec![]).await;
    assert_eq!(quiet["notices"], json!([]));
    query(&pools, &my(), &format!("DROP TABLE {t}"), vec![]).await;
    pools.close().await;
}
