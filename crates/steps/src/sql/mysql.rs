//! Running a query on MySQL or MariaDB.
//!
//! | MySQL / MariaDB | JSON |
//! |---|---|
//! | tinyint .. bigint, year, bit; tinyint(1) too | integer (unsigned kept exact) |
//! | decimal | string, exact |
//! | float, double | number (non-finite as a string) |
//! | char, varchar, text, enum, set | string |
//! | datetime | `YYYY-MM-DDTHH:MM:SS[.ffffff]`; timestamp: RFC 3339 UTC (sqlx sets the session to UTC) |
//! | date, time | `YYYY-MM-DD`, `HH:MM:SS[.ffffff]` (a time outside a day keeps MySQL's form) |
//! | json (MySQL) | the JSON itself. MariaDB's JSON is LONGTEXT on the wire: a string |
//! | binary, varbinary, blob, geometry | base64 |
//!
//! Timeouts: MariaDB's `max_statement_time` covers every statement; MySQL's
//! `max_execution_time` only SELECTs, so other statements rely on the client timer, which
//! also sends `KILL QUERY` for the connection.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnection, MySqlQueryResult, MySqlRow, MySqlValueRef,
};
use sqlx::{Arguments, AssertSqlSafe, Connection, Decode, Executor, Row, Type, TypeInfo, ValueRef};

use super::exec::{self, Limits, Outcome};
use super::failure::{SqlError, mysql_number};
use super::notices::{self, Notices};
use super::pool::ConnPool;
use super::{SqlSpec, settings};

const CLEANUP: Duration = Duration::from_secs(5);

pub(super) async fn run(
    pool: &Arc<ConnPool<MySqlConnection>>,
    spec: &SqlSpec,
    limits: &Limits,
) -> Result<Outcome, SqlError> {
    let mut lease = limits.guard(pool.acquire()).await??;
    let conn = &mut lease.conn;
    // The connection id, for a kill; and the sql_mode the lexer that placed the values must
    // know.
    let (id, sql_mode): (u64, String) = limits
        .guard(sqlx::query_as("SELECT CONNECTION_ID(), @@SESSION.sql_mode").fetch_one(&mut *conn))
        .await??;
    if spec.lexed
        && let Err(refused) = settings::mysql(&sql_mode)
    {
        // Nothing has run: the connection is clean.
        lease.release();
        return Err(refused);
    }
    let reset = match spec.timeout {
        Some(timeout) => Some(limits.guard(set_timeout(conn, timeout)).await??),
        None => None,
    };
    if spec.read_only {
        limits
            .guard(conn.execute("START TRANSACTION READ ONLY"))
            .await??;
    }
    // The server keeps the warnings of the last statement that raised any, and clears them
    // only for a statement that reads a table: read an empty one, so that `SHOW WARNINGS`
    // afterwards holds the query's alone (a `SELECT 1` raises nothing and clears nothing).
    limits
        .guard(conn.execute("SELECT 1 FROM information_schema.ENGINES LIMIT 0"))
        .await??;
    let outcome = match limits.guard(execute(conn, spec)).await {
        Ok(Ok(mut outcome)) => {
            // Right after the statement: the next one (even ROLLBACK) clears its warnings.
            outcome.notices = limits.guard(warnings(conn)).await??;
            Ok(outcome)
        }
        Ok(Err(e)) => Err(e),
        Err(stop) => {
            kill_query(pool, id).await;
            return Err(stop);
        }
    };
    let mut clean = true;
    if spec.read_only {
        clean &= tidy(conn, "ROLLBACK").await;
    }
    if let Some(reset) = reset {
        clean &= tidy(conn, reset).await;
    }
    if clean {
        lease.release();
    }
    outcome
}

/// The notes and warnings of the statement just run (of the last one, for a script), bounded.
async fn warnings(conn: &mut MySqlConnection) -> Result<Notices, SqlError> {
    let limit = notices::MAX_NOTICES + 1;
    let rows = conn
        .fetch_all(AssertSqlSafe(format!("SHOW WARNINGS LIMIT {limit}")))
        .await?;
    let mut out = Notices::default();
    for row in &rows {
        let level: String = row.try_get(0).unwrap_or_default();
        let message: String = row.try_get(2).unwrap_or_default();
        out.push(&level.to_uppercase(), &message);
    }
    Ok(out)
}

/// Sets the server-side limit; returns the statement that restores the default.
async fn set_timeout(
    conn: &mut MySqlConnection,
    timeout: Duration,
) -> Result<&'static str, SqlError> {
    let mariadb = format!(
        "SET SESSION max_statement_time = {:.3}",
        timeout.as_secs_f64()
    );
    match conn.execute(AssertSqlSafe(mariadb)).await {
        Ok(_) => Ok("SET SESSION max_statement_time = DEFAULT"),
        // 1193: unknown system variable, so this is MySQL.
        Err(e) if mysql_number(&e) == Some(1193) => {
            let ms = timeout.as_millis().max(1);
            conn.execute(AssertSqlSafe(format!(
                "SET SESSION max_execution_time = {ms}"
            )))
            .await?;
            Ok("SET SESSION max_execution_time = DEFAULT")
        }
        Err(e) => Err(e.into()),
    }
}

async fn tidy(conn: &mut MySqlConnection, sql: &'static str) -> bool {
    matches!(
        tokio::time::timeout(CLEANUP, conn.execute(sql)).await,
        Ok(Ok(_))
    )
}

/// Best effort: stops the statement still running for connection `id`.
async fn kill_query(pool: &ConnPool<MySqlConnection>, id: u64) {
    let kill = async {
        let mut conn = pool.connect_extra().await?;
        conn.execute(AssertSqlSafe(format!("KILL QUERY {id}")))
            .await?;
        conn.close().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(3), kill).await {
        tracing::warn!(%error, id, "could not stop the query on the server");
    }
}

async fn execute(conn: &mut MySqlConnection, spec: &SqlSpec) -> Result<Outcome, SqlError> {
    let sql = spec.query.as_str();
    let affected = |r: &MySqlQueryResult| r.rows_affected();
    if spec.params.is_empty() {
        let prepared = sqlx::query(AssertSqlSafe(sql.to_string())).persistent(false);
        return match exec::collect(conn.fetch_many(prepared), affected, cell).await {
            // 1064 (syntax: several statements) or 1295 (not in the prepared protocol) are
            // raised while preparing, before anything ran: send the text as a script.
            Err(SqlError::Query(e)) if matches!(mysql_number(&e), Some(1064 | 1295)) => {
                let script = sqlx::raw_sql(AssertSqlSafe(sql.to_string()));
                exec::collect(conn.fetch_many(script), affected, cell).await
            }
            other => other,
        };
    }
    let query =
        sqlx::query_with(AssertSqlSafe(sql.to_string()), bind(&spec.params)?).persistent(false);
    exec::collect(conn.fetch_many(query), affected, cell).await
}

fn bind(values: &[Value]) -> Result<MySqlArguments, SqlError> {
    let mut args = MySqlArguments::default();
    for value in values {
        let added = match value {
            Value::Null => args.add(None::<String>),
            Value::Bool(b) => args.add(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => args.add(i),
                (None, Some(u)) => args.add(u),
                _ => args.add(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => args.add(s.clone()),
            Value::Array(_) | Value::Object(_) => args.add(sqlx::types::Json(value.clone())),
        };
        added.map_err(|e| SqlError::Param(format!("cannot bind a parameter: {e}")))?;
    }
    Ok(args)
}

/// `Decode` for MySQL, spelled once (the crate also links the other drivers).
fn d<'r, T: Decode<'r, MySql>>(value: MySqlValueRef<'r>) -> Result<T, String> {
    T::decode(value).map_err(|e| e.to_string())
}

fn cell(row: &MySqlRow, i: usize) -> Result<Value, String> {
    let value = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if value.is_null() {
        return Ok(Value::Null);
    }
    let name = value.type_info().name().to_string();
    Ok(match name.as_str() {
        "NULL" => Value::Null,
        "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            d::<i64>(value)?.into()
        }
        "BIT" => d::<u64>(value)?.into(),
        n if n.ends_with(" UNSIGNED") => d::<u64>(value)?.into(),
        "FLOAT" => exec::float32(d::<f32>(value)?),
        "DOUBLE" => exec::float(d::<f64>(value)?),
        "DECIMAL" => Value::String(d::<String>(value)?),
        "JSON" => serde_json::from_str(&d::<String>(value)?).map_err(|e| e.to_string())?,
        "DATETIME" => Value::String(exec::datetime(d::<chrono::NaiveDateTime>(value)?)),
        "TIMESTAMP" => Value::String(exec::timestamptz(d::<chrono::DateTime<chrono::Utc>>(
            value,
        )?)),
        "DATE" => Value::String(
            d::<chrono::NaiveDate>(value)?
                .format("%Y-%m-%d")
                .to_string(),
        ),
        "TIME" => {
            // Within a day: the same form as everywhere else; beyond, MySQL's own (-838:59:59).
            let t = d::<MySqlTime>(value)?;
            match chrono::NaiveTime::try_from(t) {
                // (Not `is_negative()`: sqlx 0.9 returns the opposite.)
                Ok(day) if t.is_valid_time_of_day() => Value::String(exec::time(day)),
                _ => Value::String(t.to_string()),
            }
        }
        // The wire marks `_bin` text collations (MariaDB's JSON among them) binary too; only
        // the `binary` character set means bytes.
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY"
            if !<String as Type<MySql>>::compatible(&value.type_info()) =>
        {
            exec::base64(&d::<Vec<u8>>(value)?)
        }
        _ => Value::String(d::<String>(value)?),
    })
}
