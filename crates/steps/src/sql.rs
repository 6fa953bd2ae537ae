//! The `sql` step kind: one query (or a script) on a PostgreSQL, SQLite or MySQL/MariaDB target.
//!
//! Values reach the server only as bound parameters, never pasted into the text. The result is
//! `{"rows": [{column: value}], "row_count", "rows_affected", "notices", "notices_truncated",
//! "duration_ms"}` with columns in query order and faithful JSON types (see [`postgres`],
//! [`mysql`] and [`sqlite`] for each server's mapping). `rows_affected` is what the server
//! reports (PostgreSQL counts the rows a SELECT returned; MySQL does not). `notices` holds what
//! the server said beside the result, bounded (see [`notices`]).
//!
//! How a text is sent:
//! - With parameters: as one prepared statement (binary protocol, typed values).
//! - Without parameters: prepared first; if the server refuses to prepare it because it holds
//!   several statements (or, on MySQL, a statement the prepared protocol lacks), it is sent as
//!   a plain script (`raw_sql`, the simple/text protocol). `VACUUM`, `CREATE INDEX CONCURRENTLY`
//!   and `REINDEX` run outside any transaction either way. SQLite runs every statement of a
//!   text natively. A PostgreSQL script's values arrive as text: the mapping is the same,
//!   except that arrays keep PostgreSQL's text form (`"{1,2}"`).
//!
//! `timeout` is enforced by the server where it can be (PostgreSQL `statement_timeout`,
//! MariaDB `max_statement_time`, MySQL `max_execution_time` for SELECT, an SQLite progress
//! handler) and by a client-side timer a moment later. `read_only` runs the text inside a
//! read-only transaction (PostgreSQL, MySQL) or with `PRAGMA query_only` (SQLite), so the
//! server refuses any write. On cancel the query is stopped on the server too.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_steps::StepError> {
//! use cairn_steps::sql::{Pools, SqlSpec, SqlTarget, run};
//! let pools = Pools::new();
//! let target = SqlTarget { name: "db".into(), url: "postgres://memory@db:5432/memory".into(), password: None };
//! let spec = SqlSpec::new("SELECT count(*) AS n FROM memory_entities WHERE actor_id = $1")
//!     .with_params(vec!["client_42".into()]);
//! let result = run(&pools, &target, &spec, &tokio_util::sync::CancellationToken::new()).await?;
//! println!("{}", result["rows"][0]["n"]);
//! pools.close().await;
//! # Ok(()) }
//! ```

mod exec;
mod failure;
mod mysql;
mod notices;
mod pg_params;
mod pg_types;
mod pool;
mod postgres;
pub mod reads;
pub mod settings;
mod sqlite;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::StepError;
use exec::Limits;
pub use pool::Pools;

/// The client-side timer fires this long after a server-side statement timeout should have.
const CLIENT_MARGIN: Duration = Duration::from_secs(1);

/// Which server a target speaks to, from its URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Postgres,
    Sqlite,
    Mysql,
}

impl Driver {
    /// `postgres://`, `postgresql://`; `sqlite:` (`sqlite://path`, `sqlite::memory:`);
    /// `mysql://`, `mariadb://`.
    pub fn from_url(url: &str) -> Result<Driver, StepError> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Driver::Postgres),
            "sqlite" => Ok(Driver::Sqlite),
            "mysql" | "mariadb" => Ok(Driver::Mysql),
            _ => Err(StepError::setup(format!(
                "unsupported database URL `{}`: expected postgres://, sqlite: or mysql://",
                cairn_url::redact(url)
            ))),
        }
    }

    /// Whether bound parameters are written `$1, $2` (PostgreSQL) rather than `?` (the others).
    pub fn placeholder_style_is_dollar(&self) -> bool {
        matches!(self, Driver::Postgres)
    }
}

/// A named connection, rendered. `password`, when given, is set on the connection options
/// and never pasted into the URL.
#[derive(Clone)]
pub struct SqlTarget {
    pub name: String,
    pub url: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for SqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTarget")
            .field("name", &self.name)
            .field("url", &cairn_url::redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A rendered query and its bound values (`$n`/`?` placeholders already in `query`).
#[derive(Debug, Clone, Default)]
pub struct SqlSpec {
    pub query: String,
    pub params: Vec<Value>,
    pub timeout: Option<Duration>,
    pub read_only: bool,
    /// The query holds values placed by Cairn's SQL lexer (`{{ }}` holes): it runs only on a
    /// session that reads SQL as the lexer does (see [`settings`]).
    pub lexed: bool,
}

impl SqlSpec {
    pub fn new(query: impl Into<String>) -> Self {
        SqlSpec {
            query: query.into(),
            ..SqlSpec::default()
        }
    }
    pub fn with_params(mut self, params: Vec<Value>) -> Self {
        self.params = params;
        self
    }
}

/// Runs the query on `target`, opening its pool on first use.
pub async fn run(
    pools: &Pools,
    target: &SqlTarget,
    spec: &SqlSpec,
    cancel: &CancellationToken,
) -> Result<Value, StepError> {
    let driver = Driver::from_url(&target.url)?;
    let masked = cairn_url::redact(&target.url);
    let started = Instant::now();
    let limits = Limits::new(spec.timeout, CLIENT_MARGIN, cancel.clone());
    let outcome = match pools.get(target, driver) {
        Ok(pool::AnyPool::Postgres(pool)) => postgres::run(&pool, spec, &limits).await,
        Ok(pool::AnyPool::Mysql(pool)) => mysql::run(&pool, spec, &limits).await,
        Ok(pool::AnyPool::Sqlite(pool)) => sqlite::run(&pool, spec, &limits).await,
        Err(e) => Err(e),
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(outcome) => {
            tracing::debug!(target = %target.name, rows = outcome.rows.len(), duration_ms, "sql step done");
            let (notices, notices_truncated) = outcome.notices.into_json();
            Ok(json!({
                "rows": outcome.rows,
                "row_count": outcome.rows.len(),
                "rows_affected": outcome.rows_affected,
                "notices": notices,
                "notices_truncated": notices_truncated,
                "duration_ms": duration_ms,
            }))
        }
        Err(e) => Err(e.into_step_error(&masked, spec.timeout)),
    }
}
