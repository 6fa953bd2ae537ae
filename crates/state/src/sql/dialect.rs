//! The dialect table: everything in which SQLite and PostgreSQL differ for the store, and
//! nothing else. The statements themselves are shared (`$N` placeholders, which sqlx accepts on
//! both); where a statement needs a dialect's own words (row locks, the column that keeps
//! insertion order), a macro spells it once and each dialect fills in its fragment.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{Database, Pool, Postgres, Row, Sqlite};

use crate::codec::{json_text, parse_json, parse_ts, ts};
use crate::error::StateError;

use super::migrations::{PG_MIGRATIONS, SQLITE_MIGRATIONS};

/// A query of dialect `D` with its arguments.
pub type Q<'q, D> = sqlx::query::Query<'q, D, <D as Database>::Arguments>;

/// Where a statement runs: on any pooled connection, or inside a transaction.
pub enum Ex<'e, D: Database> {
    /// Any connection of the pool, in autocommit.
    Pool(&'e Pool<D>),
    /// One connection, usually a transaction's.
    Conn(&'e mut D::Connection),
}

mod sealed {
    /// Only this crate's dialects implement [`super::Dialect`].
    pub trait Sealed {}
    impl Sealed for sqlx::Sqlite {}
    impl Sealed for sqlx::Postgres {}
}

/// Parameters of one checkpoint row in [`upsert_steps_sql`]: the columns of `step_columns!()`.
pub(crate) const STEP_PARAMS: usize = 13;

/// The upsert of `rows` checkpoints as one statement, written only while the run's stored
/// attempt is the writer's: `$1` the run, `$2` the attempt, then [`STEP_PARAMS`] parameters per
/// row in the order of `step_columns!()`. The fence and the writes are one statement, so one
/// round trip commits a step boundary (a step's end and the next step's `running`), and a
/// writer that lost the run writes none of the rows. Rows are inserted in the order given (an
/// ordinal column sorts them), which is the order `STEPS` reads them back in; a batch must
/// not hold two rows of one step and item (PostgreSQL refuses to update a row twice).
///
/// Built once per row count and dialect and kept: a checkpoint is on every step's path, and
/// almost every one has one or two rows.
pub(crate) fn upsert_steps_sql(rows: usize, run_row_lock: &'static str) -> Arc<str> {
    type Texts = Mutex<HashMap<(&'static str, usize), Arc<str>>>;
    static TEXTS: LazyLock<Texts> = LazyLock::new(Texts::default);
    let mut texts = TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    texts
        .entry((run_row_lock, rows))
        .or_insert_with(|| build_upsert_steps_sql(rows, run_row_lock).into())
        .clone()
}

fn build_upsert_steps_sql(rows: usize, run_row_lock: &str) -> String {
    use std::fmt::Write as _;
    let mut values = String::with_capacity(rows * 80);
    for row in 0..rows {
        values.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..STEP_PARAMS {
            let _ = write!(values, "${}, ", 3 + row * STEP_PARAMS + col);
        }
        let _ = write!(values, "{row})");
    }
    let picked: Vec<String> = (1..=STEP_PARAMS).map(|c| format!("v.column{c}")).collect();
    format!(
        "INSERT INTO cairn_steps ({columns}) SELECT {picked} FROM (VALUES {values}) AS v, \
         (SELECT 1 FROM cairn_runs WHERE id = $1 AND attempt = $2{run_row_lock}) AS owner \
         WHERE true ORDER BY v.column{ord} \
         ON CONFLICT (run_id, step_id, item) DO UPDATE SET \
         status = excluded.status, attempt = excluded.attempt, \
         started_at = excluded.started_at, finished_at = excluded.finished_at, \
         result = excluded.result, outputs = excluded.outputs, error = excluded.error, \
         log_path = excluded.log_path, def_hash = excluded.def_hash, \
         idempotent = excluded.idempotent",
        columns = step_columns!(),
        picked = picked.join(", "),
        ord = STEP_PARAMS + 1,
    )
}

// Whether the run is still held by the attempt: the fence of multi-statement writes.
macro_rules! held {
    ($lock:literal) => {
        concat!(
            "SELECT 1 AS held FROM cairn_runs WHERE id = $1 AND attempt = $2",
            $lock
        )
    };
}

// A lock row with its holder run, locked for the deciding transaction.
macro_rules! lock_row {
    ($lock:literal) => {
        concat!(
            "SELECT l.name, l.run_id, l.host, l.pid, l.since, l.lease_until, l.lease_ms, \
             r.status AS run_status, r.host AS run_host, r.pid AS run_pid, \
             r.heartbeat_at AS run_heartbeat, r.pid_start AS run_pid_start, \
             r.heartbeat_seq AS run_seq \
             FROM cairn_locks l LEFT JOIN cairn_runs r ON r.id = l.run_id WHERE l.name = $1",
            $lock
        )
    };
}

// A fenced release: only the attempt that still holds the run deletes its lock rows (a lock
// whose run is not in the store is released by its run id alone).
macro_rules! release {
    ($name:literal, $lock:literal) => {
        concat!(
            "DELETE FROM cairn_locks WHERE run_id = $1",
            $name,
            " AND (EXISTS (SELECT 1 FROM cairn_runs WHERE id = $1 AND attempt = $2",
            $lock,
            ") OR NOT EXISTS (SELECT 1 FROM cairn_runs WHERE id = $1))"
        )
    };
}

macro_rules! steps_in_order {
    ($order:literal) => {
        concat!(
            "SELECT ",
            step_columns!(),
            " FROM cairn_steps WHERE run_id = $1 ORDER BY ",
            $order
        )
    };
}

macro_rules! actions_in_order {
    ($order:literal) => {
        concat!(
            "SELECT run_id, at, by_user, source, action, step_id, detail \
             FROM cairn_actions \
             WHERE run_id = $1 ORDER BY ",
            $order
        )
    };
}

macro_rules! approvals_in_order {
    ($order:literal) => {
        concat!(
            "SELECT run_id, step_id, decision, decided_by, decided_at, comment, host, tty \
             FROM cairn_approvals \
             WHERE run_id = $1 ORDER BY ",
            $order
        )
    };
}

/// What a SQL backend must say in its own words. Implemented for [`Sqlite`] and [`Postgres`]
/// (and sealed: the statements are written for these two).
pub trait Dialect: Database + Sync + sealed::Sealed {
    /// The backend's name in messages.
    const NAME: &'static str;
    /// Opens a write transaction. SQLite takes the database's write lock at once (`BEGIN
    /// IMMEDIATE`), so that nothing decides between the transaction's first read and its write.
    const BEGIN_WRITE: &'static str;
    /// Serialises migrations of every process sharing the database (taken in the migration's
    /// transaction); none where `BEGIN_WRITE` already does.
    const MIGRATION_LOCK: Option<&'static str>;
    /// `cairn_schema`, created before anything else.
    const SCHEMA_TABLE: &'static str;
    /// One entry per schema version; entry N-1 takes the database from version N-1 to N.
    const MIGRATIONS: &'static [&'static [&'static str]];
    /// The row lock a fenced write takes on the run row (after `SELECT … FROM cairn_runs`),
    /// so that a claim (an UPDATE of that row) waits for the write to commit; empty where the
    /// database has one write lock.
    const RUN_ROW_LOCK: &'static str;
    /// [`held!`].
    const HELD: &'static str;
    /// [`lock_row!`].
    const LOCK_ROW: &'static str;
    /// [`release!`] of one lock (`$3` its name) and of every lock of the run.
    const RELEASE_ONE: &'static str;
    const RELEASE_ALL: &'static str;
    /// The run's checkpoints and approvals in the order they were first written.
    const STEPS: &'static str;
    const APPROVALS: &'static str;
    const ACTIONS: &'static str;

    /// Binds free text. PostgreSQL's TEXT cannot hold NUL: it becomes U+FFFD.
    fn bind_text<'q>(q: Q<'q, Self>, v: Option<&str>) -> Q<'q, Self>;
    fn bind_int<'q>(q: Q<'q, Self>, v: i64) -> Q<'q, Self>;
    fn bind_flag<'q>(q: Q<'q, Self>, v: bool) -> Q<'q, Self>;
    /// Binds a time: RFC 3339 text on SQLite, TIMESTAMPTZ on PostgreSQL.
    fn bind_time<'q>(q: Q<'q, Self>, v: Option<DateTime<Utc>>) -> Q<'q, Self>;
    /// Binds JSON: text on SQLite, JSONB (NUL replaced) on PostgreSQL.
    fn bind_json<'q>(q: Q<'q, Self>, v: Option<&Value>) -> Q<'q, Self>;

    fn text(row: &Self::Row, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(row: &Self::Row, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(row: &Self::Row, column: &str) -> Result<bool, sqlx::Error>;
    fn time(row: &Self::Row, column: &str) -> Result<Option<DateTime<Utc>>, StateError>;
    fn json(row: &Self::Row, column: &str) -> Result<Option<Value>, StateError>;

    /// Runs a statement; the number of rows it changed.
    fn execute<'e>(
        ex: Ex<'e, Self>,
        q: Q<'e, Self>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'e;
    fn fetch_all<'e>(
        ex: Ex<'e, Self>,
        q: Q<'e, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'e;
    fn fetch_optional<'e>(
        ex: Ex<'e, Self>,
        q: Q<'e, Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'e;
}

/// Binding through the dialect, in the order the placeholders are numbered.
pub(crate) trait Bind<'q>: Sized {
    fn text(self, v: &str) -> Self;
    fn opt_text(self, v: Option<&str>) -> Self;
    fn int(self, v: i64) -> Self;
    fn flag(self, v: bool) -> Self;
    fn time(self, v: DateTime<Utc>) -> Self;
    fn opt_time(self, v: Option<DateTime<Utc>>) -> Self;
    fn json(self, v: &Value) -> Self;
    fn opt_json(self, v: Option<&Value>) -> Self;
}

impl<'q, D: Dialect> Bind<'q> for Q<'q, D> {
    fn text(self, v: &str) -> Self {
        D::bind_text(self, Some(v))
    }
    fn opt_text(self, v: Option<&str>) -> Self {
        D::bind_text(self, v)
    }
    fn int(self, v: i64) -> Self {
        D::bind_int(self, v)
    }
    fn flag(self, v: bool) -> Self {
        D::bind_flag(self, v)
    }
    fn time(self, v: DateTime<Utc>) -> Self {
        D::bind_time(self, Some(v))
    }
    fn opt_time(self, v: Option<DateTime<Utc>>) -> Self {
        D::bind_time(self, v)
    }
    fn json(self, v: &Value) -> Self {
        D::bind_json(self, Some(v))
    }
    fn opt_json(self, v: Option<&Value>) -> Self {
        D::bind_json(self, v)
    }
}

// The executor calls are the same words for both backends; only the types differ.
macro_rules! executor_calls {
    () => {
        fn execute<'e>(
            ex: Ex<'e, Self>,
            q: Q<'e, Self>,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'e {
            async move {
                let done = match ex {
                    Ex::Pool(pool) => q.execute(pool).await?,
                    Ex::Conn(conn) => q.execute(conn).await?,
                };
                Ok(done.rows_affected())
            }
        }
        fn fetch_all<'e>(
            ex: Ex<'e, Self>,
            q: Q<'e, Self>,
        ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'e {
            async move {
                match ex {
                    Ex::Pool(pool) => q.fetch_all(pool).await,
                    Ex::Conn(conn) => q.fetch_all(conn).await,
                }
            }
        }
        fn fetch_optional<'e>(
            ex: Ex<'e, Self>,
            q: Q<'e, Self>,
        ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'e {
            async move {
                match ex {
                    Ex::Pool(pool) => q.fetch_optional(pool).await,
                    Ex::Conn(conn) => q.fetch_optional(conn).await,
                }
            }
        }
    };
}

impl Dialect for Sqlite {
    const NAME: &'static str = "SQLite";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const MIGRATION_LOCK: Option<&'static str> = None;
    const SCHEMA_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS cairn_schema (version INTEGER NOT NULL)";
    const MIGRATIONS: &'static [&'static [&'static str]] = SQLITE_MIGRATIONS;
    // SQLite runs every statement under its one write lock: no row locks to take.
    const RUN_ROW_LOCK: &'static str = "";
    const HELD: &'static str = held!("");
    const LOCK_ROW: &'static str = lock_row!("");
    const RELEASE_ONE: &'static str = release!(" AND name = $3", "");
    const RELEASE_ALL: &'static str = release!("", "");
    // An upsert keeps a row's rowid: the order steps were first written.
    const STEPS: &'static str = steps_in_order!("rowid");
    const APPROVALS: &'static str = approvals_in_order!("rowid");
    const ACTIONS: &'static str = actions_in_order!("rowid");

    fn bind_text<'q>(q: Q<'q, Self>, v: Option<&str>) -> Q<'q, Self> {
        q.bind(v)
    }
    fn bind_int<'q>(q: Q<'q, Self>, v: i64) -> Q<'q, Self> {
        q.bind(v)
    }
    fn bind_flag<'q>(q: Q<'q, Self>, v: bool) -> Q<'q, Self> {
        q.bind(i64::from(v))
    }
    fn bind_time<'q>(q: Q<'q, Self>, v: Option<DateTime<Utc>>) -> Q<'q, Self> {
        q.bind(v.map(ts))
    }
    fn bind_json<'q>(q: Q<'q, Self>, v: Option<&Value>) -> Q<'q, Self> {
        q.bind(v.map(json_text))
    }

    fn text(row: &SqliteRow, column: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(column)
    }
    fn int(row: &SqliteRow, column: &str) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(column)
    }
    fn flag(row: &SqliteRow, column: &str) -> Result<bool, sqlx::Error> {
        row.try_get::<i64, _>(column).map(|v| v != 0)
    }
    fn time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let text: Option<String> = row.try_get(column).map_err(corrupt(column))?;
        text.as_deref().map(parse_ts).transpose()
    }
    fn json(row: &SqliteRow, column: &str) -> Result<Option<Value>, StateError> {
        let text: Option<String> = row.try_get(column).map_err(corrupt(column))?;
        text.as_deref().map(parse_json).transpose()
    }

    executor_calls!();
}

impl Dialect for Postgres {
    const NAME: &'static str = "PostgreSQL";
    const BEGIN_WRITE: &'static str = "BEGIN";
    // Advisory locks are per database, not per schema: two schemas migrate one after the
    // other. The key spells "cairnsch".
    const MIGRATION_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7161130645775983464)");
    const SCHEMA_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS cairn_schema (version BIGINT NOT NULL)";
    const MIGRATIONS: &'static [&'static [&'static str]] = PG_MIGRATIONS;
    // The run row is locked FOR SHARE while a checkpoint is written: a claim (an UPDATE of that
    // row) waits for the write to commit, and a write after a claim sees the new attempt and
    // writes nothing. So a resumer that claimed reads every write made before.
    const RUN_ROW_LOCK: &'static str = " FOR SHARE";
    const HELD: &'static str = held!(" FOR SHARE");
    const LOCK_ROW: &'static str = lock_row!(" FOR UPDATE OF l");
    const RELEASE_ONE: &'static str = release!(" AND name = $3", " FOR SHARE");
    const RELEASE_ALL: &'static str = release!("", " FOR SHARE");
    // A generated identity column keeps the order rows were first inserted.
    const STEPS: &'static str = steps_in_order!("seq");
    const APPROVALS: &'static str = approvals_in_order!("seq");
    const ACTIONS: &'static str = actions_in_order!("seq");

    fn bind_text<'q>(q: Q<'q, Self>, v: Option<&str>) -> Q<'q, Self> {
        q.bind(v.map(pg_text))
    }
    fn bind_int<'q>(q: Q<'q, Self>, v: i64) -> Q<'q, Self> {
        q.bind(v)
    }
    fn bind_flag<'q>(q: Q<'q, Self>, v: bool) -> Q<'q, Self> {
        q.bind(v)
    }
    fn bind_time<'q>(q: Q<'q, Self>, v: Option<DateTime<Utc>>) -> Q<'q, Self> {
        q.bind(v)
    }
    fn bind_json<'q>(q: Q<'q, Self>, v: Option<&Value>) -> Q<'q, Self> {
        q.bind(v.map(jsonb))
    }

    fn text(row: &PgRow, column: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(column)
    }
    fn int(row: &PgRow, column: &str) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(column)
    }
    fn flag(row: &PgRow, column: &str) -> Result<bool, sqlx::Error> {
        row.try_get(column)
    }
    fn time(row: &PgRow, column: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        row.try_get(column).map_err(corrupt(column))
    }
    fn json(row: &PgRow, column: &str) -> Result<Option<Value>, StateError> {
        row.try_get::<Option<Json<Value>>, _>(column)
            .map(|j| j.map(|j| j.0))
            .map_err(corrupt(column))
    }

    executor_calls!();
}

pub(crate) fn corrupt(column: &str) -> impl FnOnce(sqlx::Error) -> StateError + '_ {
    move |e| StateError::Corrupt(format!("column `{column}`: {e}"))
}

/// JSONB rejects the NUL character (`\u0000`), which captured output can contain; it becomes
/// U+FFFD rather than failing the checkpoint. Values without one are passed through as is.
fn jsonb(v: &Value) -> Json<Cow<'_, Value>> {
    if has_nul(v) {
        Json(Cow::Owned(without_nul(v)))
    } else {
        Json(Cow::Borrowed(v))
    }
}

/// TEXT rejects NUL too: the same replacement for free-form text (error messages).
fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn without_nul(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(pg_text(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (pg_text(k).into_owned(), without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_replaced_only_where_present() {
        let dirty = serde_json::json!({ "k\u{0}": ["a\u{0}b"] });
        assert_eq!(
            jsonb(&dirty).0.into_owned(),
            serde_json::json!({ "k\u{FFFD}": ["a\u{FFFD}b"] })
        );
        assert!(matches!(pg_text("clean"), Cow::Borrowed(_)));
        assert!(!has_nul(&serde_json::json!({ "a": ["x", 1] })));
    }
}
