//! What `cairn plan --probe` may run for real: SQL that only reads, decided by a real parse
//! (sqlparser) of the rendered text, never by looking at its first word.
//!
//! A statement is a read when it is a query (`SELECT`, `WITH ... SELECT`, `VALUES`), a
//! `SHOW`, or an `EXPLAIN` without `ANALYZE` of a read; when no query in it writes (`SELECT ...
//! INTO`, a `WITH` holding `INSERT`/`UPDATE`/`DELETE`/`MERGE`) or locks rows (`FOR UPDATE`,
//! `FOR SHARE`); and when it calls none of the [`DENIED_FUNCTIONS`], which act outside the
//! transaction or on the server itself. Anything that does not parse is not a read. The probe
//! also runs what passes inside a READ ONLY transaction, so a function that writes (a user's
//! PL/pgSQL) is stopped by the server: two locks, either of which holds alone for most cases.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::Driver;

/// Functions a probe never calls, with why. A name ending in `*` is a prefix. Matched on the
/// function's own name, whatever its schema (`pg_catalog.set_config` is `set_config`), without
/// regard to case.
pub const DENIED_FUNCTIONS: &[(&str, &str)] = &[
    // Other sessions and the server.
    ("pg_terminate_backend", "ends another session"),
    ("pg_cancel_backend", "cancels another session's query"),
    ("pg_reload_conf", "reloads the server's configuration"),
    ("pg_rotate_logfile", "rotates the server's log"),
    ("pg_promote", "promotes a standby"),
    ("pg_switch_wal", "switches the WAL file"),
    (
        "pg_create_restore_point",
        "writes a restore point to the WAL",
    ),
    ("pg_wal_replay_*", "pauses or resumes replication replay"),
    ("pg_backup_*", "starts or stops a backup"),
    ("pg_start_backup", "starts a backup"),
    ("pg_stop_backup", "stops a backup"),
    ("pg_stat_reset*", "resets statistics"),
    ("pg_import_system_collations", "adds collations"),
    // Replication slots and origins: consuming changes is not undone by a rollback.
    ("pg_create_*_replication_slot", "creates a replication slot"),
    ("pg_drop_replication_slot", "drops a replication slot"),
    ("pg_copy_*_replication_slot", "creates a replication slot"),
    ("pg_replication_slot_advance", "advances a replication slot"),
    (
        "pg_logical_slot_get_*",
        "consumes changes from a replication slot",
    ),
    ("pg_logical_emit_message", "writes a message to the WAL"),
    ("pg_replication_origin_*", "changes a replication origin"),
    // Session state that outlives the statement.
    ("set_config", "changes a setting"),
    ("pg_advisory_*", "takes or releases an advisory lock"),
    ("pg_try_advisory_*", "takes an advisory lock"),
    ("pg_notify", "sends a notification"),
    // Sequences: not undone by a rollback.
    ("nextval", "advances a sequence"),
    ("setval", "sets a sequence"),
    // Files and large objects on the server.
    ("lo_*", "reads or writes a large object or a server file"),
    ("pg_file_*", "writes a file on the server"),
    // Other servers.
    ("dblink*", "runs SQL on another server"),
    // MySQL and MariaDB.
    ("get_lock", "takes a named lock"),
    ("release_lock", "releases a named lock"),
    ("release_all_locks", "releases named locks"),
    ("master_pos_wait", "waits on replication"),
    ("source_pos_wait", "waits on replication"),
    // SQLite.
    ("load_extension", "loads code into the database process"),
];

/// Why `name` may not be called by a probe, if it may not.
pub fn denied_function(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    DENIED_FUNCTIONS.iter().find_map(|(pattern, why)| {
        let hit = match pattern.split_once('*') {
            Some((prefix, suffix)) => {
                name.starts_with(prefix)
                    && name.ends_with(suffix)
                    && name.len() >= prefix.len() + suffix.len()
            }
            None => name == *pattern,
        };
        hit.then_some(*why)
    })
}

/// `Ok(())` when every statement of `sql` only reads, else why not (one line).
pub fn check_read(driver: Driver, sql: &str) -> Result<(), String> {
    let dialect: Box<dyn Dialect> = match driver {
        Driver::Postgres => Box::new(PostgreSqlDialect {}),
        Driver::Mysql => Box::new(MySqlDialect {}),
        Driver::Sqlite => Box::new(SQLiteDialect {}),
    };
    let statements = Parser::parse_sql(dialect.as_ref(), sql).map_err(|e| {
        let name = match driver {
            Driver::Postgres => "postgres",
            Driver::Mysql => "mysql",
            Driver::Sqlite => "sqlite",
        };
        format!("does not parse as {name} SQL ({e})")
    })?;
    if statements.is_empty() {
        return Err("holds no statement".into());
    }
    for statement in &statements {
        if let ControlFlow::Break(why) = statement.visit(&mut Reads) {
            return Err(why);
        }
    }
    Ok(())
}

struct Reads;

fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .unwrap_or_default()
}

fn function(name: &ObjectName) -> ControlFlow<String> {
    let short = last_name(name);
    match denied_function(&short) {
        Some(why) => ControlFlow::Break(format!("calls `{short}`, which {why}")),
        None => ControlFlow::Continue(()),
    }
}

/// `SELECT ... INTO` anywhere in a query body.
fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        _ => false,
    }
}

impl Visitor for Reads {
    type Break = String;

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
        match s {
            Statement::Query(_)
            | Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowCharset(_)
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCollation { .. } => ControlFlow::Continue(()),
            Statement::Explain {
                analyze, options, ..
            } => {
                let analyze_option = options.as_ref().is_some_and(|o| {
                    o.iter()
                        .any(|u| u.name.value.eq_ignore_ascii_case("analyze"))
                });
                if *analyze || analyze_option {
                    ControlFlow::Break("`EXPLAIN ANALYZE` runs the statement".into())
                } else {
                    // The explained statement is visited next, and must be a read too.
                    ControlFlow::Continue(())
                }
            }
            other => {
                let text = other.to_string();
                let word = text.split_whitespace().next().unwrap_or("?").to_uppercase();
                ControlFlow::Break(format!("`{word}` is not a read"))
            }
        }
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<String> {
        if !q.locks.is_empty() {
            return ControlFlow::Break("locks rows (`FOR UPDATE`/`FOR SHARE`)".into());
        }
        if selects_into(&q.body) {
            return ControlFlow::Break("`SELECT ... INTO` creates a table".into());
        }
        match q.body.as_ref() {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                ControlFlow::Break("writes (`INSERT`/`UPDATE`/`DELETE`/`MERGE`)".into())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
        match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => function(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        match e {
            Expr::Function(f) => function(&f.name),
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass() {
        for sql in [
            "SELECT count(*) AS n FROM pg_stat_activity WHERE state = $1",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "VALUES (1), (2)",
            "SHOW server_version",
            "EXPLAIN SELECT * FROM t",
            "SELECT 1; SELECT 2",
            "SELECT pg_is_in_recovery(), now(), currval('s')",
            "SELECT (SELECT max(id) FROM t) AS m",
        ] {
            assert_eq!(check_read(Driver::Postgres, sql), Ok(()), "{sql}");
        }
        assert_eq!(check_read(Driver::Mysql, "SHOW TABLES"), Ok(()));
        assert_eq!(check_read(Driver::Sqlite, "SELECT ? + 1"), Ok(()));
    }

    #[test]
    fn anything_else_is_refused_with_why() {
        for (sql, why) in [
            ("DELETE FROM t", "`DELETE` is not a read"),
            ("SELECT 1; DROP TABLE t", "`DROP` is not a read"),
            ("COPY t TO PROGRAM 'touch /tmp/x'", "`COPY` is not a read"),
            (
                "EXPLAIN ANALYZE DELETE FROM t",
                "`EXPLAIN ANALYZE` runs the statement",
            ),
            (
                "EXPLAIN (ANALYZE true) SELECT 1",
                "`EXPLAIN ANALYZE` runs the statement",
            ),
            ("EXPLAIN DELETE FROM t", "`DELETE` is not a read"),
            (
                "SELECT * INTO t2 FROM t",
                "`SELECT ... INTO` creates a table",
            ),
            (
                "SELECT * FROM t FOR UPDATE",
                "locks rows (`FOR UPDATE`/`FOR SHARE`)",
            ),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "writes (`INSERT`/`UPDATE`/`DELETE`/`MERGE`)",
            ),
            // The parser does not read `TABLE x` alone: not known to be a read.
            ("TABLE t", "does not parse as postgres SQL"),
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                "calls `pg_terminate_backend`, which ends another session",
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT PG_CATALOG.SETVAL('s', 1))",
                "calls `SETVAL`, which sets a sequence",
            ),
            (
                "SELECT * FROM dblink_exec('host=x', 'DROP TABLE t')",
                "calls `dblink_exec`, which runs SQL on another server",
            ),
            (
                "SELECT pg_advisory_lock_shared(1)",
                "calls `pg_advisory_lock_shared`, which takes or releases an advisory lock",
            ),
            ("SELEC 1", "does not parse as postgres SQL"),
            ("", "holds no statement"),
        ] {
            let got = check_read(Driver::Postgres, sql).expect_err(sql);
            assert!(got.starts_with(why), "{sql}: {got}");
        }
    }

    #[test]
    fn prefixes_match_whole_names_only() {
        assert!(denied_function("pg_advisory_xact_lock").is_some());
        assert!(denied_function("LO_EXPORT").is_some());
        assert!(denied_function("pg_create_logical_replication_slot").is_some());
        assert!(denied_function("pg_is_in_recovery").is_none());
        assert!(denied_function("lower").is_none());
        assert!(denied_function("count").is_none());
    }
}
