//! Running a query on SQLite.
//!
//! Values map by their storage class: INTEGER -> integer, REAL -> number (±inf as a string),
//! TEXT -> string, BLOB -> base64, NULL -> null. Every statement of a text runs, in order.
//!
//! Timeout and cancel go through a progress handler that interrupts the statement inside
//! SQLite (which has no server to ask), so the connection stays usable afterwards.
//! `read_only` sets `PRAGMA query_only`. Note: each connection to `sqlite::memory:` is its
//! own database, so such a target keeps a single connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnection, SqliteQueryResult, SqliteRow, SqliteValueRef,
};
use sqlx::{Arguments, AssertSqlSafe, Decode, Executor, Row, TypeInfo, ValueRef};

use super::SqlSpec;
use super::exec::{self, Limits, Outcome};
use super::failure::SqlError;
use super::pool::ConnPool;

/// How long an interrupted statement gets to notice and return.
const UNWIND: Duration = Duration::from_secs(2);

pub(super) async fn run(
    pool: &Arc<ConnPool<SqliteConnection>>,
    spec: &SqlSpec,
    limits: &Limits,
) -> Result<Outcome, SqlError> {
    let mut lease = limits.guard(pool.acquire()).await??;
    let conn = &mut lease.conn;
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    {
        let stop = stop.clone();
        let mut handle = conn.lock_handle().await?;
        // Called every ~1000 VM steps; returning false interrupts the statement.
        handle.set_progress_handler(1000, move || {
            !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d)
        });
    }
    if spec.read_only {
        conn.execute("PRAGMA query_only = ON").await?;
    }
    let (result, whole) = {
        let query = execute(conn, spec);
        tokio::pin!(query);
        match limits.guard(&mut query).await {
            Ok(result) => (result, true),
            Err(stopped) => {
                stop.store(true, Ordering::Relaxed);
                // Let the interrupted statement return, so the connection is whole again.
                let unwound = tokio::time::timeout(UNWIND, &mut query).await.is_ok();
                (Err(stopped), unwound)
            }
        }
    };
    if !whole {
        return result;
    }
    let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
    let result = match result {
        // SQLITE_INTERRUPT from our own handler.
        Err(SqlError::Query(e))
            if timed_out && super::failure::code(&e).as_deref() == Some("9") =>
        {
            Err(SqlError::Timeout)
        }
        other => other,
    };
    let mut clean = true;
    if spec.read_only {
        clean &= conn.execute("PRAGMA query_only = OFF").await.is_ok();
    }
    match conn.lock_handle().await {
        Ok(mut handle) => handle.remove_progress_handler(),
        Err(_) => clean = false,
    }
    if clean {
        lease.release();
    }
    result
}

/// Runs every statement of the text. Affected rows come from `total_changes()` around it:
/// the per-statement count SQLite reports for a SELECT is the previous write's.
async fn execute(conn: &mut SqliteConnection, spec: &SqlSpec) -> Result<Outcome, SqlError> {
    let changes = "SELECT total_changes()";
    let before: i64 = sqlx::query_scalar(changes).fetch_one(&mut *conn).await?;
    let query =
        sqlx::query_with(AssertSqlSafe(spec.query.clone()), bind(&spec.params)?).persistent(false);
    let mut outcome =
        exec::collect(conn.fetch_many(query), |_: &SqliteQueryResult| 0, cell).await?;
    let after: i64 = sqlx::query_scalar(changes).fetch_one(&mut *conn).await?;
    outcome.rows_affected = u64::try_from(after - before).unwrap_or(0);
    Ok(outcome)
}

fn bind(values: &[Value]) -> Result<SqliteArguments, SqlError> {
    let mut args = SqliteArguments::default();
    for (i, value) in values.iter().enumerate() {
        let added = match value {
            Value::Null => args.add(None::<i64>),
            Value::Bool(b) => args.add(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => args.add(i),
                (None, Some(u)) => {
                    return Err(SqlError::Param(format!(
                        "parameter {}: {u} does not fit SQLite's 64-bit signed integer",
                        i + 1
                    )));
                }
                _ => args.add(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => args.add(s.clone()),
            // SQLite's JSON functions take JSON as text.
            Value::Array(_) | Value::Object(_) => args.add(value.to_string()),
        };
        added.map_err(|e| SqlError::Param(format!("cannot bind a parameter: {e}")))?;
    }
    Ok(args)
}

/// `Decode` for SQLite, spelled once (the crate also links the other drivers).
fn d<'r, T: Decode<'r, Sqlite>>(value: SqliteValueRef<'r>) -> Result<T, String> {
    T::decode(value).map_err(|e| e.to_string())
}

fn cell(row: &SqliteRow, i: usize) -> Result<Value, String> {
    let value = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if value.is_null() {
        return Ok(Value::Null);
    }
    // The value's own storage class (SQLite columns are not strictly typed).
    let class = value.type_info().name().to_string();
    Ok(match class.as_str() {
        "INTEGER" => d::<i64>(value)?.into(),
        "REAL" => exec::float(d::<f64>(value)?),
        "BLOB" => exec::base64(&d::<Vec<u8>>(value)?),
        _ => Value::String(d::<String>(value)?),
    })
}
