//! Why a query did not succeed, and the one line that says so.
//!
//! Connection problems are `Setup` errors ("connection refused (postgres://memory@db/memory)");
//! server errors are `Failed` with the server's own message and its code
//! (`relation "memory_entities" does not exist (SQLSTATE 42P01) on postgres://…`).
//! Every message names the target by its masked URL.

use std::time::Duration;

use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::PgDatabaseError;

use crate::StepError;

#[derive(Debug)]
pub(super) enum SqlError {
    /// The URL does not parse.
    Url(String),
    /// Opening a connection failed.
    Connect(sqlx::Error),
    ConnectTimeout(Duration),
    /// The server (or the driver) refused or failed the query.
    Query(sqlx::Error),
    /// A bound value cannot be sent as the parameter the query needs.
    Param(String),
    /// A value in the result has no JSON form.
    Decode {
        column: String,
        type_name: String,
        reason: String,
    },
    Timeout,
    Cancelled,
    /// The pool was closed under the step.
    Closed,
    /// The session reads SQL otherwise than the lexer that placed the query's values.
    Setting(String),
}

impl From<sqlx::Error> for SqlError {
    fn from(e: sqlx::Error) -> Self {
        SqlError::Query(e)
    }
}

impl SqlError {
    pub(super) fn into_step_error(self, masked: &str, timeout: Option<Duration>) -> StepError {
        match self {
            SqlError::Url(e) => StepError::setup(format!("invalid database URL `{masked}`: {e}")),
            SqlError::Connect(e) => StepError::setup(connect_message(&e, masked)),
            SqlError::ConnectTimeout(after) => StepError::setup(format!(
                "connection timed out after {} s ({masked})",
                after.as_secs()
            )),
            SqlError::Query(e) if is_timeout(&e) => StepError::Timeout {
                after: timeout.unwrap_or_default(),
                result: None,
            },
            SqlError::Query(e) => {
                StepError::failed(format!("{} on {masked}", query_message(&e)), None)
            }
            SqlError::Param(e) => StepError::failed(format!("{e} ({masked})"), None),
            SqlError::Decode {
                column,
                type_name,
                reason,
            } => StepError::failed(
                format!(
                    "column `{column}` of type {type_name} has no JSON form ({reason}); \
                     cast it in the query, e.g. `{column}::text` ({masked})"
                ),
                None,
            ),
            SqlError::Timeout => StepError::Timeout {
                after: timeout.unwrap_or_default(),
                result: None,
            },
            SqlError::Cancelled => StepError::Cancelled { result: None },
            SqlError::Closed => StepError::setup(format!("connection pool closed ({masked})")),
            SqlError::Setting(why) => StepError::setup(format!("{why} ({masked})")),
        }
    }
}

/// A server-side statement timeout (PostgreSQL, MariaDB, MySQL).
fn is_timeout(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        return pg.code() == "57014" && pg.message().contains("statement timeout");
    }
    if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
        // 1969: MariaDB max_statement_time; 3024: MySQL max_execution_time.
        return matches!(my.number(), 1969 | 3024);
    }
    false
}

/// The SQLSTATE (or SQLite result code) of a server error.
pub(super) fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// MySQL's own error number.
pub(super) fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn connect_message(e: &sqlx::Error, masked: &str) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused ({masked})")
        }
        sqlx::Error::Io(io) => format!("cannot connect: {} ({masked})", one_line(&io.to_string())),
        sqlx::Error::Tls(tls) => format!("TLS error: {} ({masked})", one_line(&tls.to_string())),
        sqlx::Error::Database(db) => {
            let message = one_line(db.message());
            let auth = match db.try_downcast_ref::<MySqlDatabaseError>() {
                Some(my) => my.number() == 1045,
                None => false,
            };
            // PostgreSQL already says "password authentication failed for user ...".
            if auth {
                format!("authentication failed: {message} ({masked})")
            } else {
                format!("{message} ({masked})")
            }
        }
        other => format!(
            "cannot connect: {} ({masked})",
            one_line(&other.to_string())
        ),
    }
}

fn query_message(e: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = e else {
        return one_line(&e.to_string());
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        let mut line = format!("{} (SQLSTATE {})", one_line(pg.message()), pg.code());
        if let Some(hint) = pg.hint() {
            line.push_str(&format!("; hint: {}", one_line(hint)));
        }
        if pg.message().contains("pg_stat_statements") {
            line.push_str(
                "; hint: pg_stat_statements needs shared_preload_libraries = 'pg_stat_statements' \
                 (then a restart) and CREATE EXTENSION pg_stat_statements",
            );
        }
        return line;
    }
    if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
        let state = my.code().unwrap_or("HY000");
        return format!(
            "{} (MySQL error {}, SQLSTATE {state})",
            one_line(my.message()),
            my.number()
        );
    }
    match db.code() {
        Some(code) => format!("{} (SQLite error {code})", one_line(db.message())),
        None => one_line(db.message()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_collapses_whitespace() {
        assert_eq!(super::one_line("a\n  b\tc "), "a b c");
    }
}
