//! Opening a SQLite state file: URL options, pragmas, and versioned migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqlitePool};

use crate::SCHEMA_VERSION;
use crate::error::{StateError, io_reason, redact_url, sqlx_reason};

/// How hard SQLite works to keep a commit: chosen with `?sync=` on the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` (the default): a commit survives a crash of the process; the last
    /// commits may be lost on power loss or a kernel crash. The database stays consistent.
    #[default]
    Normal,
    /// `synchronous=FULL` (`?sync=full`): every commit is fsynced and survives power loss.
    Full,
}

// How long a writer waits for another (process or connection) to finish its transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
// Writes are serialised by SQLite anyway; a few connections let reads overlap them.
const MAX_CONNECTIONS: u32 = 4;

// One entry per schema version; entry N-1 takes the database from version N-1 to N.
const MIGRATIONS: &[&[&str]] = &[
    // 1: the tables.
    &[
        "CREATE TABLE cairn_runs (
        id TEXT PRIMARY KEY NOT NULL,
        runbook TEXT NOT NULL,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        inputs TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        heartbeat_at TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        username TEXT NOT NULL,
        parent_run TEXT,
        outputs TEXT,
        error TEXT,
        attempt INTEGER NOT NULL
    )",
        "CREATE INDEX cairn_runs_by_start ON cairn_runs (started_at, id)",
        "CREATE INDEX cairn_runs_by_runbook ON cairn_runs (runbook, started_at)",
        "CREATE INDEX cairn_runs_by_status ON cairn_runs (status)",
        "CREATE TABLE cairn_step_defs (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        pos INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        def_hash TEXT NOT NULL,
        needs TEXT NOT NULL,
        PRIMARY KEY (run_id, pos)
    )",
        // item -1 is the step as a whole (NULL cannot be part of a primary key). Rows are read
        // back in rowid order, which an upsert keeps: the order steps were first written.
        "CREATE TABLE cairn_steps (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        item INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        result TEXT,
        outputs TEXT,
        error TEXT,
        log_path TEXT,
        def_hash TEXT NOT NULL,
        idempotent INTEGER NOT NULL,
        PRIMARY KEY (run_id, step_id, item)
    )",
        // No foreign key to runs: a lock outlives nothing, but its holder row may be missing.
        "CREATE TABLE cairn_locks (
        name TEXT PRIMARY KEY NOT NULL,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since TEXT NOT NULL,
        lease_until TEXT NOT NULL,
        lease_ms INTEGER NOT NULL
    )",
        "CREATE INDEX cairn_locks_by_run ON cairn_locks (run_id)",
        "CREATE TABLE cairn_approvals (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TEXT NOT NULL
    )",
        "CREATE INDEX cairn_approvals_by_run ON cairn_approvals (run_id)",
    ],
    // 2: fencing (when the latest attempt was claimed) and one sub-run per parent step or item.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN claimed_at TEXT",
        "UPDATE cairn_runs SET claimed_at = heartbeat_at",
        "ALTER TABLE cairn_runs ADD COLUMN parent_step TEXT",
        "CREATE INDEX cairn_runs_by_parent ON cairn_runs (parent_run)",
    ],
];

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// Splits `sqlite://PATH?sync=full` into the path and the durability.
pub(crate) fn parse_url_tail(url: &str, rest: &str) -> Result<(PathBuf, Durability), StateError> {
    let bad = |reason: String| StateError::BadUrl {
        url: redact_url(url),
        reason,
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(bad("no file path after sqlite://".to_string()));
    }
    let mut durability = Durability::Normal;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (key, value.to_ascii_lowercase().as_str()) {
            ("sync", "normal") => durability = Durability::Normal,
            ("sync", "full") => durability = Durability::Full,
            ("sync", other) => {
                return Err(bad(format!(
                    "sync must be `normal` or `full`, not `{other}`"
                )));
            }
            // Silently ignoring a misspelt durability option would be the worst outcome.
            (other, _) => return Err(bad(format!("unknown option `{other}` (known: sync)"))),
        }
    }
    Ok((PathBuf::from(path), durability))
}

/// Creates the parent folder and the file, migrates, and returns a pool.
pub(crate) async fn open_pool(
    path: &Path,
    durability: Durability,
) -> Result<SqlitePool, StateError> {
    let target = path.display().to_string();
    let open_err = |reason: String| StateError::Open {
        target: target.clone(),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            // create_dir_all says "file exists" when a file stands where a folder must be.
            match parent.metadata() {
                Ok(m) if !m.is_dir() => {
                    open_err(format!("{} is not a directory", parent.display()))
                }
                _ => open_err(io_reason(&e)),
            }
        })?;
    }
    // Opening the file ourselves first turns SQLite's vague "unable to open database file"
    // into the real reason (permission denied, is a directory...).
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| open_err(io_reason(&e)))?;

    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .synchronous(match durability {
            Durability::Normal => SqliteSynchronous::Normal,
            Durability::Full => SqliteSynchronous::Full,
        });

    let mut setup = connect_wal(options.clone())
        .await
        .map_err(|e| open_err(sqlx_reason(&e)))?;
    migrate(&mut setup, &target).await?;
    setup.close().await.map_err(|e| open_err(sqlx_reason(&e)))?;

    // WAL is a property of the file once set, so pool connections need not switch to it (a
    // switch takes an exclusive lock that busy_timeout does not wait for).
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await
        .map_err(|e| open_err(sqlx_reason(&e)))
}

// Switching a new file to WAL needs an exclusive lock and SQLite does not wait for it, so two
// processes creating the same state file at once retry here instead of failing.
async fn connect_wal(options: SqliteConnectOptions) -> Result<SqliteConnection, sqlx::Error> {
    let options = options.journal_mode(SqliteJournalMode::Wal);
    let mut tries = 0;
    loop {
        match SqliteConnection::connect_with(&options).await {
            Err(sqlx::Error::Database(db))
                if tries < 100
                    && (db.message().contains("locked") || db.message().contains("busy")) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Applies every migration newer than the file's version, in one `BEGIN IMMEDIATE`
/// transaction, so a second process opening at the same time waits and then finds nothing
/// left to do.
async fn migrate(conn: &mut SqliteConnection, target: &str) -> Result<(), StateError> {
    let open_err = |e: sqlx::Error| StateError::Open {
        target: target.to_string(),
        reason: sqlx_reason(&e),
    };
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(open_err)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS cairn_schema (version INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(open_err)?;
    let found: i64 = sqlx::query("SELECT coalesce(max(version), 0) AS v FROM cairn_schema")
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get("v"))
        .map_err(open_err)?;
    if found > SCHEMA_VERSION {
        return Err(StateError::SchemaTooNew {
            target: target.to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for (index, statements) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        if version <= found {
            continue;
        }
        for statement in *statements {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(open_err)?;
        }
        tracing::debug!(target_db = %target, version, "migrated state database");
    }
    sqlx::query("DELETE FROM cairn_schema")
        .execute(&mut *tx)
        .await
        .map_err(open_err)?;
    sqlx::query("INSERT INTO cairn_schema (version) VALUES (?)")
        .bind(SCHEMA_VERSION)
        .execute(&mut *tx)
        .await
        .map_err(open_err)?;
    tx.commit().await.map_err(open_err)
}
