//! The sql step against the real servers on this machine: PostgreSQL, MariaDB, SQLite.

#![recursion_limit = "256"]

mod lexing;
mod mysql;
mod postgres;
mod postgres_ops;
mod sqlite;

use std::sync::atomic::{AtomicU32, Ordering};

use cairn_steps::StepError;
use cairn_steps::sql::{Driver, Pools, SqlSpec, SqlTarget, run};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub fn target(url: &str) -> SqlTarget {
    SqlTarget {
        name: "db".into(),
        url: url.into(),
        password: None,
    }
}

/// A name no other test (or concurrent run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn query(pools: &Pools, target: &SqlTarget, sql: &str, params: Vec<Value>) -> Value {
    let spec = SqlSpec::new(sql).with_params(params);
    match run(pools, target, &spec, &CancellationToken::new()).await {
        Ok(v) => v,
        Err(e) => panic!("`{sql}` failed: {e}"),
    }
}

/// The rows of a successful query.
pub async fn rows(pools: &Pools, target: &SqlTarget, sql: &str, params: Vec<Value>) -> Vec<Value> {
    match query(pools, target, sql, params).await["rows"].clone() {
        Value::Array(rows) => rows,
        other => panic!("rows is not an array: {other}"),
    }
}

pub async fn fails(pools: &Pools, target: &SqlTarget, spec: &SqlSpec) -> StepError {
    match run(pools, target, spec, &CancellationToken::new()).await {
        Ok(v) => panic!("`{}` should have failed, got {v}", spec.query),
        Err(e) => e,
    }
}

#[test]
fn drivers_come_from_the_url_scheme() {
    let cases = [
        ("postgres://u@h/db", Driver::Postgres),
        ("postgresql://u@h/db", Driver::Postgres),
        ("sqlite:///tmp/x.db", Driver::Sqlite),
        ("sqlite::memory:", Driver::Sqlite),
        ("sqlite:x.db", Driver::Sqlite),
        ("mysql://root@h/db", Driver::Mysql),
        ("mariadb://root@h/db", Driver::Mysql),
    ];
    for (url, driver) in cases {
        assert_eq!(Driver::from_url(url).ok(), Some(driver), "{url}");
    }
    let e = Driver::from_url("oracle://scott:tiger@h/db").expect_err("unsupported");
    assert!(matches!(e, StepError::Setup { .. }));
    assert!(
        e.to_string().contains("oracle://scott:***@h/db") && !e.to_string().contains("tiger"),
        "{e}"
    );
    assert!(Driver::Postgres.placeholder_style_is_dollar());
    assert!(!Driver::Mysql.placeholder_style_is_dollar());
    assert!(!Driver::Sqlite.placeholder_style_is_dollar());
}

#[test]
fn urls_are_masked() {
    let target = SqlTarget {
        name: "db".into(),
        url: "postgres://u:pw@h/db".into(),
        password: Some("pw2".into()),
    };
    let debug = format!("{target:?}");
    assert!(!debug.contains("pw@") && !debug.contains("pw2"), "{debug}");
}
