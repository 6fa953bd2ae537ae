//! The shared suite against a SQLite file, plus what only a file can show: reopening, URL
//! options, concurrent creation, and surviving a crash of the writing process.

#[macro_use]
mod suite;

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use cairn_state::{
    Durability, RunRecord, SCHEMA_VERSION, SqliteStore, StepRecord, StepStatus, Store,
};
use sqlx::{Connection, Row};

async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/state.db", dir.path().display());
    let store = cairn_state::open(&url).await.expect("open sqlite");
    test(store.clone()).await;
    store.close().await;
}

store_tests!(with_sqlite);

async fn schema_version(path: &Path) -> i64 {
    let url = format!("sqlite://{}", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("raw connect");
    let row = sqlx::query("SELECT version FROM cairn_schema")
        .fetch_all(&pool)
        .await
        .expect("read cairn_schema");
    pool.close().await;
    assert_eq!(row.len(), 1, "one version row");
    row[0].try_get("version").expect("version")
}

#[tokio::test]
async fn reopening_keeps_data_and_schema_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A bare path, in a folder that does not exist yet.
    let path = dir.path().join("nested/.cairn/state.db");
    let run = RunRecord::start("backup", "b.yaml", "h", serde_json::json!({"a": 1}), "sre");
    let mut step = StepRecord::new(&run.id, "dump", None, "d");
    step.status = StepStatus::Succeeded;
    {
        let store = cairn_state::open(&path.display().to_string())
            .await
            .expect("open");
        store.create_run(&run, &[]).await.expect("create_run");
        store.put_step(&run.claim(), &step).await.expect("put_step");
        store.close().await;
    }
    assert_eq!(schema_version(&path).await, SCHEMA_VERSION);
    let store = cairn_state::open(&format!("sqlite://{}?sync=full", path.display()))
        .await
        .expect("reopen");
    assert_eq!(
        store.get_run(&run.id).await.expect("get_run"),
        Some(run.clone())
    );
    assert_eq!(store.steps(&run.id).await.expect("steps"), [step]);
    store.close().await;
    assert_eq!(schema_version(&path).await, SCHEMA_VERSION);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    SqliteStore::open(&path, Durability::Normal)
        .await
        .expect("open")
        .close()
        .await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw");
    sqlx::query("UPDATE cairn_schema SET version = 99")
        .execute(&pool)
        .await
        .expect("bump");
    pool.close().await;
    let e = SqliteStore::open(&path, Durability::Normal)
        .await
        .expect_err("too new");
    let want = format!(
        "state database {} has schema version 99, newer than this cairn supports ({SCHEMA_VERSION}): upgrade cairn",
        path.display()
    );
    assert_eq!(e.to_string(), want);
}

#[tokio::test]
async fn concurrent_opens_of_a_new_file_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path, Durability::Normal).await })
        })
        .collect();
    for open in opens {
        open.await.expect("join").expect("open").close().await;
    }
    assert_eq!(schema_version(&path).await, SCHEMA_VERSION);
}

#[tokio::test]
async fn url_errors_are_one_clear_line() {
    let cases = [
        (
            "sqlite://x.db?sync=sometimes",
            "unsupported state URL `sqlite://x.db?sync=sometimes`: sync must be `normal` or `full`, not `sometimes`",
        ),
        (
            "sqlite://x.db?synchronous=full",
            "unsupported state URL `sqlite://x.db?synchronous=full`: unknown option `synchronous` (known: sync)",
        ),
        (
            "sqlite://",
            "unsupported state URL `sqlite://`: no file path after sqlite://",
        ),
        (
            "mysql://u:pw@h/db",
            "unsupported state URL `mysql://u:***@h/db`: unknown scheme `mysql` (expected sqlite://PATH, a path, postgres://… or memory:)",
        ),
    ];
    for (url, want) in cases {
        let e = cairn_state::open(url).await.err().expect("must fail");
        assert_eq!(e.to_string(), want);
    }
    // A path through a regular file cannot be created.
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    let bad = file.path().join("state.db");
    let e = cairn_state::open(&bad.display().to_string())
        .await
        .err()
        .expect("must fail");
    let want = format!(
        "cannot open state database {}: {} is not a directory",
        bad.display(),
        file.path().display()
    );
    assert_eq!(e.to_string(), want);
}

// The crash test: a child process (this test binary, filtered to `crash_child`) writes steps
// and prints each one after put_step returns, with a second writer busy beside it, then
// aborts. Every printed step must be in the file afterwards.
const CHILD_DB: &str = "CAIRN_STATE_TEST_CRASH_DB";
const STEPS: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper process, run by `survives_a_crash`"]
async fn crash_child() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return; // only does something when spawned by survives_a_crash
    };
    let store = SqliteStore::open(&path, Durability::Normal)
        .await
        .expect("child open");
    let run = RunRecord::start("crash", "c.yaml", "h", serde_json::json!({}), "sre");
    store.create_run(&run, &[]).await.expect("child create_run");
    let mut out = std::io::stdout().lock();
    // libtest has printed "test crash_child ... " without a newline: start a fresh line.
    writeln!(out, "\nrun {}", run.id).expect("stdout");
    let noise = store.clone();
    let noise_run = run.claim();
    tokio::spawn(async move {
        for i in 0.. {
            let s = StepRecord::new(&noise_run.run_id, "noise", Some(i), "d");
            let _ = noise.put_step(&noise_run, &s).await;
        }
    });
    for i in 0..STEPS {
        let mut s = StepRecord::new(&run.id, "work", Some(i), "d");
        s.status = StepStatus::Succeeded;
        s.result = Some(serde_json::json!({ "i": i }));
        store
            .put_step(&run.claim(), &s)
            .await
            .expect("child put_step");
        writeln!(out, "committed {i}").expect("stdout");
        out.flush().expect("flush");
    }
    std::process::abort();
}

#[tokio::test]
async fn survives_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().expect("current_exe");
    // Through sh only to switch core dumps off for the deliberate abort.
    let output = std::process::Command::new("sh")
        .args(["-c", "ulimit -c 0; exec \"$0\" \"$@\""])
        .arg(&exe)
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .output()
        .expect("spawn child");
    assert!(!output.status.success(), "the child must abort");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .expect("child printed its run id")
        .to_string();
    let committed: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("committed ")?.parse().ok())
        .collect();
    assert_eq!(committed.len(), STEPS as usize, "child output: {stdout}");

    let store = SqliteStore::open(&path, Durability::Normal)
        .await
        .expect("reopen after crash");
    let steps = store.steps(&run_id).await.expect("steps");
    for i in committed {
        let found = steps
            .iter()
            .any(|s| s.step_id == "work" && s.item == Some(i) && s.status == StepStatus::Succeeded);
        assert!(
            found,
            "step work[{i}] was committed but is missing after the crash"
        );
    }
    let run = store.get_run(&run_id).await.expect("get_run").expect("run");
    // Its process is gone: the run reads as interrupted, ready for `cairn resume`.
    assert_eq!(run.status, cairn_state::RunStatus::Interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_migrates_and_its_runs_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("raw connect");
        sqlx::raw_sql(include_str!("v1/sqlite.sql"))
            .execute(&pool)
            .await
            .expect("version 1 schema");
        sqlx::raw_sql(include_str!("v1/rows.sql"))
            .execute(&pool)
            .await
            .expect("version 1 rows");
        pool.close().await;
    }
    assert_eq!(schema_version(&path).await, 1);
    let store = cairn_state::open(&path.display().to_string())
        .await
        .expect("open migrates");
    assert_eq!(schema_version(&path).await, SCHEMA_VERSION);
    suite::v1_runs_after_migration(store.clone()).await;
    store.close().await;
}

/// The columns of every checkpoint row as SQLite stores them (type and value, `quote()`d).
async fn stored_steps(path: &Path) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connect");
    let rows = sqlx::query(
        "SELECT quote(run_id) || ' ' || quote(step_id) || ' ' || quote(item) || ' ' || \
         quote(status) || ' ' || quote(attempt) || ' ' || quote(started_at) || ' ' || \
         quote(finished_at) || ' ' || quote(result) || ' ' || quote(outputs) || ' ' || \
         quote(error) || ' ' || quote(log_path) || ' ' || quote(def_hash) || ' ' || \
         quote(idempotent) AS r FROM cairn_steps ORDER BY rowid",
    )
    .fetch_all(&pool)
    .await
    .expect("read cairn_steps");
    pool.close().await;
    rows.iter().map(|r| r.get::<String, _>("r")).collect()
}

#[tokio::test]
async fn checkpoints_are_stored_alike_on_the_engines_thread_and_through_sqlx() {
    // `sync=normal` writes checkpoints on the caller's thread; `sync=full` through sqlx's
    // connection: the rows must be the same, byte for byte and type for type.
    let dir = tempfile::tempdir().expect("tempdir");
    let run = RunRecord::start("alike", "a.yaml", "h", serde_json::json!({}), "sre");
    let mut first = StepRecord::new(&run.id, "dump «日本» 🚀", Some(7), "d\"ef");
    first.status = StepStatus::Failed;
    // Times are kept to the microsecond.
    first.started_at = Some(chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6));
    first.finished_at = first.started_at;
    first.result = Some(serde_json::json!({"stdout": "a\u{0}b", "n": i64::MIN, "f": 0.1}));
    first.outputs = Some(serde_json::json!(null));
    first.error = Some("it's\nbroken\u{0}".into());
    first.log_path = Some("/var/log/x'y.log".into());
    first.idempotent = true;
    let second = StepRecord::new(&run.id, "", None, "");
    let mut paths = Vec::new();
    for durability in [Durability::Normal, Durability::Full] {
        let path = dir.path().join(format!("{durability:?}.db"));
        let store = SqliteStore::open(&path, durability).await.expect("open");
        store.create_run(&run, &[]).await.expect("create_run");
        store
            .put_steps(&run.claim(), &[first.clone(), second.clone()])
            .await
            .expect("put_steps");
        store
            .put_step(&run.claim(), &first)
            .await
            .expect("put_step");
        assert_eq!(
            store.steps(&run.id).await.expect("steps"),
            [first.clone(), second.clone()]
        );
        store.close().await;
        paths.push(path);
    }
    let normal = stored_steps(&paths[0]).await;
    assert_eq!(normal.len(), 2);
    assert_eq!(normal, stored_steps(&paths[1]).await);
}

#[tokio::test(flavor = "current_thread")]
async fn a_checkpoint_waits_for_another_writer_without_holding_up_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path, Durability::Normal)
        .await
        .expect("open");
    let run = RunRecord::start("busy", "b.yaml", "h", serde_json::json!({}), "sre");
    store.create_run(&run, &[]).await.expect("create_run");

    // Another process's writer holds SQLite's write lock.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("other connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");

    let mut step = StepRecord::new(&run.id, "s", None, "d");
    step.status = StepStatus::Succeeded;
    let write = {
        let (store, step, claim) = (store.clone(), step.clone(), run.claim());
        tokio::spawn(async move { store.put_step(&claim, &step).await })
    };
    // The engine's thread (this single-threaded runtime) keeps running while it waits.
    let mut ticks = 0;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        ticks += 1;
    }
    assert_eq!(ticks, 20);
    assert!(
        !write.is_finished(),
        "a checkpoint was written under another's write lock"
    );
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release the write lock");
    write.await.expect("task").expect("put_step after the lock");
    assert_eq!(store.steps(&run.id).await.expect("steps"), [step]);
    store.close().await;
}
