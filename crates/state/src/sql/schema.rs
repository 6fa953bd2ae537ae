//! Opening a store: SQLite's file, URL options and pragmas; PostgreSQL's connection; and the
//! versioned migrations both share, with each dialect's DDL.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgPool, Row, SqlitePool};

use crate::SCHEMA_VERSION;
use crate::error::{StateError, io_reason, sqlx_reason};

use super::dialect::{Bind, Dialect, Ex};

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
const SQLITE_CONNECTIONS: u32 = 4;
/// Pooled connections of a PostgreSQL store, unless its opener asks for fewer.
pub(crate) const PG_CONNECTIONS: u32 = 8;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
// Every statement the store runs is prepared once per connection and kept (sqlx's statement
// cache; queries are `persistent` by default): the store has about 40 distinct statements.
const STATEMENT_CACHE: usize = 100;

/// Splits `sqlite://PATH?sync=full` into the path and the durability.
pub(crate) fn parse_url_tail(url: &str, rest: &str) -> Result<(PathBuf, Durability), StateError> {
    let bad = |reason: String| StateError::BadUrl {
        url: cairn_url::redact(url),
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

/// Creates the parent folder and the file, migrates, and returns a pool and the connection
/// that migrated, kept open for the store's checkpoints: closing it would end the last
/// connection to the file, which checkpoints and deletes the WAL only for the pool to create it
/// again (two `fsync`s and two files for nothing).
pub(crate) async fn open_sqlite(
    path: &Path,
    durability: Durability,
) -> Result<(SqlitePool, SqliteConnection), StateError> {
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
        .statement_cache_capacity(STATEMENT_CACHE)
        .synchronous(match durability {
            Durability::Normal => SqliteSynchronous::Normal,
            Durability::Full => SqliteSynchronous::Full,
        });

    let mut setup = connect_wal(options.clone())
        .await
        .map_err(|e| open_err(sqlx_reason(&e)))?;
    migrate::<sqlx::Sqlite>(&mut setup, &target).await?;

    // WAL is a property of the file once set, so pool connections need not switch to it (a
    // switch takes an exclusive lock that busy_timeout does not wait for).
    // No liveness test when a connection is taken from the pool: a SQLite connection is a
    // handle on a local file that cannot hang up, and the test is a round trip to the
    // connection's thread before every statement (PostgreSQL keeps it: a server restart must
    // cost a new connection, not a failed checkpoint).
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_CONNECTIONS)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| open_err(sqlx_reason(&e)))?;
    Ok((pool, setup))
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

/// Connects to PostgreSQL and migrates; with `must_exist`, a database without Cairn's tables is
/// [`StateError::NoStore`] and is left untouched.
/// The pool (at most `pool` connections) comes with the connection that migrated, kept for the
/// store's checkpoints.
pub(crate) async fn connect_pg(
    url: &str,
    must_exist: bool,
    pool: u32,
) -> Result<(PgPool, PgConnection), StateError> {
    let target = cairn_url::redact(url);
    let open_err = |e: sqlx::Error| match e {
        sqlx::Error::Configuration(reason) => StateError::BadUrl {
            url: target.clone(),
            reason: reason.to_string(),
        },
        e => StateError::Open {
            target: target.clone(),
            reason: sqlx_reason(&e),
        },
    };
    let mut options = PgConnectOptions::from_str(url)
        .map_err(open_err)?
        .statement_cache_capacity(STATEMENT_CACHE);
    // Named in `pg_stat_activity` (unless the URL names it): a DBA sees which process holds
    // which connections.
    if options.get_application_name().is_none() {
        options = options.application_name(&format!("cairn pid {}", std::process::id()));
    }
    // One plain connection first: a pool retries a refused connection until its timeout and
    // then reports only "timed out", while the operator needs "connection refused" or
    // "password authentication failed" at once.
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(open_err)?;
    if must_exist {
        let found: bool = sqlx::query("SELECT to_regclass('cairn_schema') IS NOT NULL AS found")
            .fetch_one(&mut conn)
            .await
            .and_then(|row| row.try_get("found"))
            .map_err(open_err)?;
        if !found {
            let _ = conn.close().await;
            return Err(StateError::NoStore {
                target: target.clone(),
                reason: "the database holds no Cairn tables (cairn_*) in its search_path"
                    .to_string(),
            });
        }
    }
    migrate::<sqlx::Postgres>(&mut conn, &target).await?;
    let pool = PgPoolOptions::new()
        .max_connections(pool)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(open_err)?;
    Ok((pool, conn))
}

/// Applies every migration newer than the database's version, in one transaction that
/// excludes every other migrating process (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory
/// lock), so concurrent openers wait and then find nothing left to do. DDL is transactional on
/// both: a failed migration leaves nothing half-done.
// Boxed so that its `Send` is proven here, where the statements' lifetimes are known, and not
// by every caller (the compiler loses `'static` in a generic future it looks into from outside).
pub(crate) fn migrate<'a, D: Dialect>(
    conn: &'a mut D::Connection,
    target: &'a str,
) -> Pin<Box<dyn Future<Output = Result<(), StateError>> + Send + 'a>> {
    Box::pin(migrate_now::<D>(conn, target))
}

async fn migrate_now<D: Dialect>(conn: &mut D::Connection, target: &str) -> Result<(), StateError> {
    let open_err = |e: sqlx::Error| StateError::Open {
        target: target.to_string(),
        reason: sqlx_reason(&e),
    };
    let mut tx = conn.begin_with(D::BEGIN_WRITE).await.map_err(open_err)?;
    if let Some(lock) = D::MIGRATION_LOCK {
        D::execute(Ex::Conn(&mut *tx), sqlx::query(lock))
            .await
            .map_err(open_err)?;
    }
    D::execute(Ex::Conn(&mut *tx), sqlx::query(D::SCHEMA_TABLE))
        .await
        .map_err(open_err)?;
    let found = D::fetch_optional(
        Ex::Conn(&mut *tx),
        sqlx::query("SELECT coalesce(max(version), 0) AS v FROM cairn_schema"),
    )
    .await
    .and_then(|row| match row {
        Some(row) => D::int(&row, "v"),
        None => Ok(None),
    })
    .map_err(open_err)?
    .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StateError::SchemaTooNew {
            target: target.to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        for (index, statements) in D::MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
            if version <= found {
                continue;
            }
            for statement in *statements {
                D::execute(Ex::Conn(&mut *tx), sqlx::query(*statement))
                    .await
                    .map_err(open_err)?;
            }
            tracing::debug!(target_db = %target, version, "migrated state database");
        }
        D::execute(Ex::Conn(&mut *tx), sqlx::query("DELETE FROM cairn_schema"))
            .await
            .map_err(open_err)?;
        D::execute(
            Ex::Conn(&mut *tx),
            sqlx::query("INSERT INTO cairn_schema (version) VALUES ($1)").int(SCHEMA_VERSION),
        )
        .await
        .map_err(open_err)?;
    }
    tx.commit().await.map_err(open_err)
}
