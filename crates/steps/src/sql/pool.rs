//! Connection pools: one small pool per target, opened on first use, shared by a run.
//!
//! Not `sqlx::Pool`: when a server refuses connections, sqlx's pool retries until its acquire
//! timeout and then reports only "pool timed out", so an operator would wait 10 s to learn
//! nothing. This pool connects once, with a timeout, and reports the real cause (connection
//! refused, authentication failed, unknown database) at once; the runbook's `retry` decides
//! whether to try again. A connection whose state is unknown (a query that timed out or was
//! cancelled) is dropped instead of being returned.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::failure::SqlError;
use super::{Driver, SqlTarget};

const MAX_CONNECTIONS: usize = 4;
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle connection older than this is pinged before use (servers drop idle clients).
const PING_AFTER: Duration = Duration::from_secs(30);

/// One lazily opened pool per target name, shared by every step of a run. Cheap to clone.
#[derive(Clone, Default)]
pub struct Pools {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

struct Entry {
    url: String,
    password: Option<String>,
    pool: AnyPool,
}

#[derive(Clone)]
pub(super) enum AnyPool {
    Postgres(Arc<ConnPool<PgConnection>>),
    Sqlite(Arc<ConnPool<SqliteConnection>>),
    Mysql(Arc<ConnPool<MySqlConnection>>),
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("Pools").field("targets", &names).finish()
    }
}

impl Pools {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool for `target`, created (without connecting) on first use. A target whose URL
    /// or password changed gets a fresh pool.
    pub(super) fn get(&self, target: &SqlTarget, driver: Driver) -> Result<AnyPool, SqlError> {
        let mut pools = self.lock();
        let same = |e: &&Entry| e.url == target.url && e.password == target.password;
        if let Some(entry) = pools.get(&target.name).filter(same) {
            return Ok(entry.pool.clone());
        }
        let pool = open(target, driver)?;
        let entry = Entry {
            url: target.url.clone(),
            password: target.password.clone(),
            pool,
        };
        let pool = entry.pool.clone();
        pools.insert(target.name.clone(), entry);
        Ok(pool)
    }

    /// Closes every idle connection politely. The pools stay usable (they reconnect).
    pub async fn close(&self) {
        let pools: Vec<AnyPool> = self.lock().drain().map(|(_, e)| e.pool).collect();
        for pool in pools {
            match pool {
                AnyPool::Postgres(p) => p.close().await,
                AnyPool::Sqlite(p) => p.close().await,
                AnyPool::Mysql(p) => p.close().await,
            }
        }
    }
}

fn open(target: &SqlTarget, driver: Driver) -> Result<AnyPool, SqlError> {
    let bad_url = |e: sqlx::Error| SqlError::Url(e.to_string());
    let url = target.url.as_str();
    Ok(match driver {
        Driver::Postgres => {
            let mut options = PgConnectOptions::from_str(url)
                .map_err(bad_url)?
                .application_name("cairn")
                .disable_statement_logging();
            if let Some(password) = &target.password {
                options = options.password(password);
            }
            AnyPool::Postgres(ConnPool::new(options, MAX_CONNECTIONS))
        }
        Driver::Mysql => {
            let mut options = MySqlConnectOptions::from_str(url)
                .map_err(bad_url)?
                .disable_statement_logging();
            if let Some(password) = &target.password {
                options = options.password(password);
            }
            AnyPool::Mysql(ConnPool::new(options, MAX_CONNECTIONS))
        }
        Driver::Sqlite => {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(bad_url)?
                .disable_statement_logging();
            // Each connection to an in-memory database is a database of its own: keep one.
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            AnyPool::Sqlite(ConnPool::new(
                options,
                if memory { 1 } else { MAX_CONNECTIONS },
            ))
        }
    })
}

/// A fixed-size set of connections to one server.
pub(super) struct ConnPool<C: Connection> {
    options: <C as Connection>::Options,
    idle: Mutex<Vec<(C, Instant)>>,
    permits: Arc<Semaphore>,
}

/// A connection on loan. Dropped without [`Lease::release`], the connection is closed.
pub(super) struct Lease<C: Connection> {
    pub(super) conn: C,
    pool: Arc<ConnPool<C>>,
    _permit: OwnedSemaphorePermit,
}

impl<C: Connection> ConnPool<C> {
    fn new(options: <C as Connection>::Options, size: usize) -> Arc<Self> {
        Arc::new(ConnPool {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    fn pop_idle(&self) -> Option<(C, Instant)> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    pub(super) async fn acquire(self: &Arc<Self>) -> Result<Lease<C>, SqlError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SqlError::Closed)?;
        while let Some((mut conn, since)) = self.pop_idle() {
            if since.elapsed() < PING_AFTER || conn.ping().await.is_ok() {
                return Ok(Lease {
                    conn,
                    pool: self.clone(),
                    _permit: permit,
                });
            }
        }
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.options.connect())
            .await
            .map_err(|_| SqlError::ConnectTimeout(CONNECT_TIMEOUT))?
            .map_err(SqlError::Connect)?;
        Ok(Lease {
            conn,
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// Opens a connection outside the pool's limit (to cancel a query running on another).
    pub(super) async fn connect_extra(&self) -> Result<C, sqlx::Error> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn close(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }
}

impl<C: Connection> Lease<C> {
    /// Returns a connection known to be in a clean state to the pool.
    pub(super) fn release(self) {
        let Lease {
            conn,
            pool,
            _permit,
        } = self;
        pool.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((conn, Instant::now()));
    }
}
