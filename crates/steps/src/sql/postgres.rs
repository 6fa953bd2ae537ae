//! Running a query on PostgreSQL: statement timeout, read-only transaction, cancellation.
//!
//! Value mapping: see [`super::pg_types`]; parameter typing: see [`super::pg_params`].

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgQueryResult};
use sqlx::{AssertSqlSafe, Connection, Executor};

use super::exec::{self, Limits, Outcome};
use super::failure::{self, SqlError};
use super::notices::{self, Notices};
use super::pool::ConnPool;
use super::{SqlSpec, pg_params, pg_types, settings};

/// Bound on the housekeeping statements run after the query (ROLLBACK, RESET).
const CLEANUP: Duration = Duration::from_secs(5);

pub(super) async fn run(
    pool: &Arc<ConnPool<PgConnection>>,
    spec: &SqlSpec,
    limits: &Limits,
) -> Result<Outcome, SqlError> {
    let mut lease = limits.guard(pool.acquire()).await??;
    let conn = &mut lease.conn;
    // Known before the query starts, so a cancel can name the backend to stop; in the same
    // round trip, the setting the lexer that placed the values assumes.
    let (pid, conforming): (i32, String) = limits
        .guard(
            sqlx::query_as(
                "SELECT pg_backend_pid(), current_setting('standard_conforming_strings')",
            )
            .fetch_one(&mut *conn),
        )
        .await??;
    if spec.lexed
        && let Err(refused) = settings::postgres(&conforming)
    {
        // Nothing has run: the connection is clean.
        lease.release();
        return Err(refused);
    }
    if let Some(timeout) = spec.timeout {
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        limits
            .guard(conn.execute(AssertSqlSafe(format!("SET statement_timeout = {ms}"))))
            .await??;
    }
    if spec.read_only {
        limits.guard(conn.execute("BEGIN READ ONLY")).await??;
    }
    let said = Arc::new(std::sync::Mutex::new(Notices::default()));
    let outcome = match limits
        .guard(notices::capture(said.clone(), execute(conn, spec)))
        .await
    {
        Ok(outcome) => outcome.map(|mut o| {
            if let Ok(mut said) = said.lock() {
                o.notices = std::mem::take(&mut *said);
            }
            o
        }),
        Err(stop) => {
            // The connection is mid-query: stop the query on the server, drop the connection.
            cancel_backend(pool, pid).await;
            return Err(stop);
        }
    };
    let mut clean = true;
    if spec.read_only {
        clean &= tidy(conn, "ROLLBACK").await;
    }
    if spec.timeout.is_some() {
        clean &= tidy(conn, "RESET statement_timeout").await;
    }
    if clean {
        lease.release();
    }
    outcome
}

async fn tidy(conn: &mut PgConnection, sql: &'static str) -> bool {
    matches!(
        tokio::time::timeout(CLEANUP, conn.execute(sql)).await,
        Ok(Ok(_))
    )
}

/// Best effort: a dropped connection alone leaves the backend running until it next writes.
async fn cancel_backend(pool: &ConnPool<PgConnection>, pid: i32) {
    let cancel = async {
        let mut conn = pool.connect_extra().await?;
        sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(pid)
            .execute(&mut conn)
            .await?;
        conn.close().await
    };
    if let Ok(Err(error)) | Err(error) = tokio::time::timeout(Duration::from_secs(3), cancel)
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)
    {
        tracing::warn!(%error, pid, "could not cancel the query on the server");
    }
}

/// Runs the text. Statements are prepared as named (cached) statements and the cache is
/// cleared afterwards: sqlx looks up unknown types (enums, extensions) with queries of its own
/// that would replace an unnamed statement between its preparation and its execution, and a
/// statement cached across steps would go stale when a runbook alters a table.
async fn execute(conn: &mut PgConnection, spec: &SqlSpec) -> Result<Outcome, SqlError> {
    let outcome = run_text(conn, spec).await;
    conn.clear_cached_statements().await?;
    outcome
}

async fn run_text(conn: &mut PgConnection, spec: &SqlSpec) -> Result<Outcome, SqlError> {
    let sql = spec.query.as_str();
    let affected = |r: &PgQueryResult| r.rows_affected();
    if spec.params.is_empty() {
        let prepared = sqlx::query(AssertSqlSafe(sql.to_string()));
        return match exec::collect(conn.fetch_many(prepared), affected, pg_types::cell).await {
            // 42601 here: "cannot insert multiple commands into a prepared statement".
            // Refused at parse time, so nothing ran: send it as a script instead.
            Err(SqlError::Query(e)) if is_multi_statement(&e) => {
                if spec.read_only {
                    // The refusal aborted the read-only transaction: open a new one.
                    conn.execute("ROLLBACK; BEGIN READ ONLY").await?;
                }
                let script = sqlx::raw_sql(AssertSqlSafe(sql.to_string()));
                exec::collect(conn.fetch_many(script), affected, pg_types::cell).await
            }
            other => other,
        };
    }
    let args = pg_params::bind(conn, sql, &spec.params).await?;
    let query = sqlx::query_with(AssertSqlSafe(sql.to_string()), args);
    exec::collect(conn.fetch_many(query), affected, pg_types::cell).await
}

fn is_multi_statement(e: &sqlx::Error) -> bool {
    failure::code(e).as_deref() == Some("42601")
        && matches!(e, sqlx::Error::Database(db) if db.message().contains("multiple commands"))
}
