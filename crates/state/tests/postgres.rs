//! The shared suite against the real PostgreSQL server, each test in a schema of its own,
//! plus what only a shared server can show: racing lockers and racing migrations.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/test`, or `$CAIRN_TEST_POSTGRES`.

#[macro_use]
mod suite;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_state::{LockHolder, RunRecord, SCHEMA_VERSION, StepRecord, Store};
use chrono::TimeDelta;
use sqlx::Row;

fn server() -> String {
    std::env::var("CAIRN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh schema, dropped (with everything in it) when the test ends, even by a panic.
struct Schema {
    name: String,
    admin: sqlx::PgPool,
}

impl Schema {
    async fn new() -> Schema {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&server())
            .await
            .expect("connect to the test PostgreSQL server");
        let name = format!("cairn_t_{}", cairn_state::new_run_id().to_ascii_lowercase());
        // The name is ours, made of [a-z0-9_]: safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .expect("create schema");
        Schema { name, admin }
    }

    /// The server URL with this schema as the search_path.
    fn url(&self) -> String {
        let base = server();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.name)
    }

    async fn drop(self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&self.admin)
        .await
        .expect("drop schema");
        self.admin.close().await;
    }
}

async fn with_pg<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = Schema::new().await;
    let store = cairn_state::open(&schema.url())
        .await
        .expect("open postgres");
    // Run on a task so that a failing assertion still lets the schema be dropped.
    let result = tokio::spawn(test(store.clone())).await;
    store.close().await;
    schema.drop().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

store_tests!(with_pg);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_lockers_on_two_pools_exactly_one_wins() {
    let schema = Schema::new().await;
    let one = cairn_state::open(&schema.url()).await.expect("open one");
    let two = cairn_state::open(&schema.url()).await.expect("open two");
    let a = suite::run("a", TimeDelta::zero());
    let b = suite::run("b", TimeDelta::zero());
    one.create_run(&a, &[]).await.expect("create a");
    two.create_run(&b, &[]).await.expect("create b");
    for round in 0..20 {
        let name = format!("db:prod:{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let race = |store: Arc<dyn Store>, run: RunRecord| {
            let (name, barrier) = (name.clone(), barrier.clone());
            tokio::spawn(async move {
                let holder = LockHolder::this_process(&run.id);
                barrier.wait().await;
                store
                    .try_lock(&name, &holder, Duration::from_secs(60))
                    .await
            })
        };
        let ta = race(one.clone(), a.clone());
        let tb = race(two.clone(), b.clone());
        let ra = ta.await.expect("join a").expect("try_lock a");
        let rb = tb.await.expect("join b").expect("try_lock b");
        let (winner, refusal) = match (&ra, &rb) {
            (Ok(()), Err(info)) => (&a, info),
            (Err(info), Ok(())) => (&b, info),
            _ => panic!("round {round}: exactly one must win: {ra:?} / {rb:?}"),
        };
        // The loser is told who won.
        assert_eq!(refusal.run_id, winner.id, "round {round}");
    }
    one.close().await;
    two.close().await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_opens_migrate_once() {
    let schema = Schema::new().await;
    let url = schema.url();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { cairn_state::open(&url).await })
        })
        .collect();
    for open in opens {
        open.await.expect("join").expect("open").close().await;
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {}.cairn_schema",
        schema.name
    )))
    .fetch_all(&schema.admin)
    .await
    .expect("read cairn_schema");
    let versions: Vec<i64> = rows.iter().map(|r| r.get("version")).collect();
    assert_eq!(versions, [SCHEMA_VERSION]);
    schema.drop().await;
}

#[tokio::test]
async fn nul_characters_do_not_fail_a_checkpoint() {
    let schema = Schema::new().await;
    let store = cairn_state::open(&schema.url()).await.expect("open");
    let run = suite::run("nul", TimeDelta::zero());
    store.create_run(&run, &[]).await.expect("create_run");
    let mut step = StepRecord::new(&run.id, "shell", None, "d");
    step.result = Some(serde_json::json!({ "stdout": "a\u{0}b" }));
    step.error = Some("binary\u{0}output".into());
    store
        .put_step(&run.claim(), &step)
        .await
        .expect("put_step with NUL");
    let got = store.steps(&run.id).await.expect("steps");
    let result = got[0].result.as_ref().expect("result");
    assert_eq!(result["stdout"], "a\u{FFFD}b");
    assert_eq!(got[0].error.as_deref(), Some("binary\u{FFFD}output"));
    store.close().await;
    schema.drop().await;
}

/// The connection checkpoints are written on is killed by the server between two of them (as
/// a server restart or an administrator's `pg_terminate_backend` does): the next checkpoint is
/// written on a new connection, not lost and not failed.
#[tokio::test]
async fn a_checkpoint_after_the_server_killed_its_connection_is_written() {
    let schema = Schema::new().await;
    let url = format!("{}&application_name={}", schema.url(), schema.name);
    let store = cairn_state::open(&url).await.expect("open");
    let run = suite::run("killed", TimeDelta::zero());
    store.create_run(&run, &[]).await.expect("create_run");
    let mut step = StepRecord::new(&run.id, "dump", None, "d");
    step.status = cairn_state::StepStatus::Running;
    store.put_step(&run.claim(), &step).await.expect("first");
    let killed: i64 = sqlx::query(
        "SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) AS t",
    )
    .bind(&schema.name)
    .fetch_one(&schema.admin)
    .await
    .expect("terminate")
    .get("n");
    assert!(killed >= 1, "no connection of the store was found to kill");
    step.status = cairn_state::StepStatus::Succeeded;
    store
        .put_step(&run.claim(), &step)
        .await
        .expect("a checkpoint after the kill");
    let got = store.steps(&run.id).await.expect("steps");
    assert_eq!(got[0].status, cairn_state::StepStatus::Succeeded);
    store.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn connection_errors_are_one_clear_line() {
    let e = cairn_state::open("postgres://cairn:hunter2@127.0.0.1:1/x")
        .await
        .err()
        .expect("nothing listens on port 1");
    assert_eq!(
        e.to_string(),
        "cannot open state database postgres://cairn:***@127.0.0.1:1/x: connection refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_migrates_and_its_runs_resume() {
    let schema = Schema::new().await;
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&schema.url())
        .await
        .expect("raw connect");
    sqlx::raw_sql(include_str!("v1/postgres.sql"))
        .execute(&raw)
        .await
        .expect("version 1 schema");
    sqlx::raw_sql(include_str!("v1/rows.sql"))
        .execute(&raw)
        .await
        .expect("version 1 rows");
    raw.close().await;
    let store = cairn_state::open(&schema.url())
        .await
        .expect("open migrates");
    let versions: Vec<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {}.cairn_schema",
        schema.name
    )))
    .fetch_all(&schema.admin)
    .await
    .expect("read cairn_schema")
    .iter()
    .map(|r| r.get("version"))
    .collect();
    assert_eq!(versions, [SCHEMA_VERSION]);
    let result = tokio::spawn(suite::v1_runs_after_migration(store.clone())).await;
    store.close().await;
    schema.drop().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
