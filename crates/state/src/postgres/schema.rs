//! Connecting to PostgreSQL and migrating the `cairn_` tables in the connection's search_path.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool, Row};

use crate::SCHEMA_VERSION;
use crate::error::{StateError, redact_url, sqlx_reason};

// Serialises migrations of every cairn process on the server (the key spells "cairnsch").
// Advisory locks are per database, not per schema: two schemas migrate one after the other.
const MIGRATION_LOCK: i64 = 0x6361_6972_6e73_6368;

const MAX_CONNECTIONS: u32 = 8;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

// One entry per schema version; entry N-1 takes the database from version N-1 to N.
// Columns mirror the SQLite schema, with native types: JSONB, TIMESTAMPTZ, BIGINT, BOOLEAN.
const MIGRATIONS: &[&[&str]] = &[
    // 1: the tables.
    &[
        "CREATE TABLE cairn_runs (
        id TEXT PRIMARY KEY,
        runbook TEXT NOT NULL,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        inputs JSONB NOT NULL,
        status TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        username TEXT NOT NULL,
        parent_run TEXT,
        outputs JSONB,
        error TEXT,
        attempt BIGINT NOT NULL
    )",
        "CREATE INDEX cairn_runs_by_start ON cairn_runs (started_at, id)",
        "CREATE INDEX cairn_runs_by_runbook ON cairn_runs (runbook, started_at)",
        "CREATE INDEX cairn_runs_by_status ON cairn_runs (status)",
        "CREATE TABLE cairn_step_defs (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        pos BIGINT NOT NULL,
        step_id TEXT NOT NULL,
        def_hash TEXT NOT NULL,
        needs JSONB NOT NULL,
        PRIMARY KEY (run_id, pos)
    )",
        // item -1 is the step as a whole (NULL cannot be part of a primary key); seq keeps the
        // order steps were first written, which an upsert does not change.
        "CREATE TABLE cairn_steps (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        item BIGINT NOT NULL,
        status TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        result JSONB,
        outputs JSONB,
        error TEXT,
        log_path TEXT,
        def_hash TEXT NOT NULL,
        idempotent BOOLEAN NOT NULL,
        PRIMARY KEY (run_id, step_id, item)
    )",
        "CREATE TABLE cairn_locks (
        name TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        since TIMESTAMPTZ NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL,
        lease_ms BIGINT NOT NULL
    )",
        "CREATE INDEX cairn_locks_by_run ON cairn_locks (run_id)",
        "CREATE TABLE cairn_approvals (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TIMESTAMPTZ NOT NULL
    )",
        "CREATE INDEX cairn_approvals_by_run ON cairn_approvals (run_id, seq)",
    ],
    // 2: fencing (when the latest attempt was claimed) and one sub-run per parent step or item.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN claimed_at TIMESTAMPTZ",
        "UPDATE cairn_runs SET claimed_at = heartbeat_at",
        "ALTER TABLE cairn_runs ALTER COLUMN claimed_at SET NOT NULL",
        "ALTER TABLE cairn_runs ADD COLUMN parent_step TEXT",
        "CREATE INDEX cairn_runs_by_parent ON cairn_runs (parent_run)",
    ],
];

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// Connects and migrates.
/// Connects and migrates; with `must_exist`, a database without Cairn's tables is
/// [`StateError::NoStore`] and is left untouched.
pub(crate) async fn connect(url: &str, must_exist: bool) -> Result<PgPool, StateError> {
    let target = redact_url(url);
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
    let options = PgConnectOptions::from_str(url).map_err(open_err)?;
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
    migrate(&mut conn, &target).await?;
    conn.close().await.map_err(open_err)?;
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(open_err)
}

/// Applies every migration newer than the schema's version in one transaction, under an
/// advisory lock, so concurrent openers wait and then find nothing left to do. DDL is
/// transactional in PostgreSQL: a failed migration leaves nothing half-done.
async fn migrate(conn: &mut PgConnection, target: &str) -> Result<(), StateError> {
    let open_err = |e: sqlx::Error| StateError::Open {
        target: target.to_string(),
        reason: sqlx_reason(&e),
    };
    let mut tx = conn.begin().await.map_err(open_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(open_err)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS cairn_schema (version BIGINT NOT NULL)")
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
        return tx.commit().await.map_err(open_err);
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
    sqlx::query("INSERT INTO cairn_schema (version) VALUES ($1)")
        .bind(SCHEMA_VERSION)
        .execute(&mut *tx)
        .await
        .map_err(open_err)?;
    tx.commit().await.map_err(open_err)
}
