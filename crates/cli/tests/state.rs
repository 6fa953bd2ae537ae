//! Durable runs, end to end: the real `cairn` binary resuming after failures, crashes,
//! interruptions and approval pauses, against SQLite and PostgreSQL. Each test has its own temp
//! dir, runbooks and state.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/test` (each test in a fresh schema).

#[path = "state/approvals.rs"]
mod approvals;
#[path = "state/common.rs"]
mod common;
#[path = "state/fencing.rs"]
mod fencing;
#[path = "state/gates.rs"]
mod gates;
#[path = "state/history.rs"]
mod history;
#[path = "state/liveness.rs"]
mod liveness;
#[path = "state/locks.rs"]
mod locks;
#[path = "state/postgres.rs"]
mod postgres;
#[path = "state/resume.rs"]
mod resume;
#[path = "state/routing.rs"]
mod routing;
#[path = "state/semantics.rs"]
mod semantics;
#[path = "state/signals.rs"]
mod signals;
#[path = "state/workers.rs"]
mod workers;
