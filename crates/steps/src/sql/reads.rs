//! What `cairn plan --probe` may run for real: SQL that only reads, decided by a real parse
//! (sqlparser) of the rendered text, never by looking at its first word.
//!
//! A probe is one statement. It is a read when it is a query (`SELECT`, `WITH ... SELECT`,
//! `VALUES`), a `SHOW`, or an `EXPLAIN` without `ANALYZE` of a read; when no query in it writes
//! (`SELECT ... INTO`, a `WITH` holding `INSERT`/`UPDATE`/`DELETE`/`MERGE`) or locks rows
//! (`FOR UPDATE`, `FOR SHARE`); and when every function it calls is on [`ALLOWED_FUNCTIONS`],
//! functions known to have no effect, called by their own name or through `pg_catalog`. Names
//! are compared as the server reads them: unquoted ones case-folded, quoted ones exactly, with
//! `U&"..."` escapes decoded. MySQL executable comments (`/*! */`, `/*M! */`) and hints
//! (`/*+ */`) are refused before parsing, since the server runs what the parser skips as a
//! comment. Anything that does not parse is not a read. The probe also runs what passes inside
//! a READ ONLY transaction, so what slips through (a user's function behind an operator or a
//! type) is stopped by the server: two locks, either of which holds alone for most cases.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::Driver;

/// The functions a probe may call: reads of values, the clock, sizes and server state, with no
/// effect on the server, the session or other sessions. Lower case; matched on the name the
/// server resolves (see the module documentation).
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // Aggregates and windows.
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "group_concat",
    "total",
    "row_number",
    "rank",
    "dense_rank",
    // Conditionals.
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "ifnull",
    // Clock and session facts.
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtimestamp",
    "localtime",
    "current_user",
    "session_user",
    "current_database",
    "current_schema",
    "current_setting",
    "version",
    "database",
    "connection_id",
    "date_trunc",
    "date_part",
    "extract",
    "age",
    "to_char",
    "to_timestamp",
    "strftime",
    "datetime",
    "date",
    "julianday",
    "unix_timestamp",
    // Sizes and server state.
    "pg_database_size",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_size_pretty",
    "pg_is_in_recovery",
    "pg_backend_pid",
    "pg_postmaster_start_time",
    "pg_last_xact_replay_timestamp",
    "pg_current_wal_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_wal_lsn_diff",
    "currval",
    // Text and numbers.
    "length",
    "char_length",
    "octet_length",
    "lower",
    "upper",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "substring",
    "substr",
    "left",
    "right",
    "replace",
    "concat",
    "concat_ws",
    "format",
    "md5",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "abs",
    "mod",
    "power",
    "sqrt",
    "exp",
    "ln",
    "log",
    "sin",
    "cos",
    "typeof",
    // Rows and JSON built from values.
    "generate_series",
    "unnest",
    "array_length",
    "cardinality",
    "json_build_object",
    "jsonb_build_object",
    "json_object",
    "json_extract",
];

/// `Ok(())` when `sql` is one statement that only reads, else why not (one line).
pub fn check_read(driver: Driver, sql: &str) -> Result<(), String> {
    if driver == Driver::Mysql
        && let Some(mark) = ["/*!", "/*M!", "/*+"].into_iter().find(|m| sql.contains(m))
    {
        return Err(format!(
            "holds `{mark}`, an executable comment or hint, which the server runs"
        ));
    }
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
    let statement = match statements.as_slice() {
        [] => return Err("holds no statement".into()),
        [one] => one,
        _ => return Err("holds more than one statement".into()),
    };
    if let ControlFlow::Break(why) = statement.visit(&mut Reads { driver }) {
        return Err(why);
    }
    Ok(())
}

struct Reads {
    driver: Driver,
}

/// A name as the server resolves it: unquoted, case-folded; quoted, exact, with `U&"..."`
/// escapes (`\XXXX`, `\+XXXXXX`) decoded.
fn normalised(ident: &Ident) -> String {
    if ident.quote_style.is_none() {
        return ident.value.to_lowercase();
    }
    let mut out = String::with_capacity(ident.value.len());
    let mut rest = ident.value.as_str();
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (digits, len) = match after.strip_prefix('+') {
            Some(long) => (long.get(..6), 7),
            None => (after.get(..4), 4),
        };
        match digits
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .and_then(char::from_u32)
        {
            Some(c) => {
                out.push(c);
                rest = &after[len..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Reads {
    fn function(&self, name: &ObjectName) -> ControlFlow<String> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.as_ident().map(normalised).unwrap_or_default())
            .collect();
        let schema_ok = match parts.as_slice() {
            [_] => true,
            [schema, _] => self.driver == Driver::Postgres && schema == "pg_catalog",
            _ => false,
        };
        let short = parts.last().map(String::as_str).unwrap_or_default();
        if schema_ok && ALLOWED_FUNCTIONS.contains(&short) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(format!("calls `{}`", parts.join(".")))
        }
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
            | TableFactor::Function { name, .. } => self.function(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        match e {
            Expr::Function(f) => self.function(&f.name),
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
            "SELECT pg_is_in_recovery(), now(), currval('s')",
            "SELECT (SELECT max(id) FROM t) AS m",
            "SELECT pg_catalog.pg_size_pretty(pg_database_size(current_database()))",
            "SELECT COUNT(*), \"count\"(*), U&\"\\0063ount\"(*) FROM generate_series(1, 3)",
        ] {
            assert_eq!(check_read(Driver::Postgres, sql), Ok(()), "{sql}");
        }
        assert_eq!(check_read(Driver::Mysql, "SHOW TABLES"), Ok(()));
        assert_eq!(check_read(Driver::Mysql, "SELECT /* note */ 1"), Ok(()));
        assert_eq!(check_read(Driver::Sqlite, "SELECT ? + 1"), Ok(()));
    }

    #[test]
    fn anything_else_is_refused_with_why() {
        for (sql, why) in [
            ("DELETE FROM t", "`DELETE` is not a read"),
            ("SELECT 1; SELECT 2", "holds more than one statement"),
            ("SELECT 1; DROP TABLE t", "holds more than one statement"),
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
                "calls `pg_terminate_backend`",
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT PG_CATALOG.SETVAL('s', 1))",
                "calls `pg_catalog.setval`",
            ),
            ("SELECT public.count(x) FROM t", "calls `public.count`"),
            (
                "SELECT * FROM dblink_exec('host=x', 'DROP TABLE t')",
                "calls `dblink_exec`",
            ),
            ("SELECT pg_sleep(1)", "calls `pg_sleep`"),
            ("SELEC 1", "does not parse as postgres SQL"),
            ("", "holds no statement"),
        ] {
            let got = check_read(Driver::Postgres, sql).expect_err(sql);
            assert!(got.starts_with(why), "{sql}: {got}");
        }
    }

    /// Each bypass of a list of dangers, refused by the list of what is known to be harmless.
    #[test]
    fn probe_reproductions_are_not_read() {
        let pg = [
            (
                "SELECT query_to_xml('SELECT pg_terminate_backend(1)', true, false, '')",
                "calls `query_to_xml`",
            ),
            (
                "SELECT xpath('/x', query_to_xml('SELECT pg_terminate_backend(1)', true, false, ''))",
                "calls `xpath`",
            ),
            (
                "SELECT dblink_exec('dbname=test', 'DELETE FROM t')",
                "calls `dblink_exec`",
            ),
            (
                r#"SELECT U&"pg_terminate\005Fbackend"(pid) FROM pg_stat_activity"#,
                "calls `pg_terminate_backend`",
            ),
            (
                r#"SELECT U&"\0064blink_exec"('x', 'DELETE FROM t')"#,
                "calls `dblink_exec`",
            ),
            (
                r#"SELECT "pg_terminate_backend"(pid) FROM pg_stat_activity"#,
                "calls `pg_terminate_backend`",
            ),
        ];
        for (sql, why) in pg {
            let got = check_read(Driver::Postgres, sql).expect_err(sql);
            assert!(got.starts_with(why), "{sql}: {got}");
        }
        let my = [
            (
                "SELECT 1; /*! COMMIT */; /*! DELETE FROM t */",
                "holds `/*!`",
            ),
            ("SELECT 1 /*!50000 , GET_LOCK('x', 0) */", "holds `/*!`"),
            ("SELECT 'x' /*! INTO OUTFILE '/tmp/f' */", "holds `/*!`"),
            ("SELECT 1 /*!, GET_LOCK('x',0) */", "holds `/*!`"),
            ("SELECT 1 /*M!, GET_LOCK('x',0) */", "holds `/*M!`"),
            ("SELECT 'x' INTO OUTFILE '/tmp/f'", ""),
            ("SELECT GET_LOCK('x', 0)", "calls `get_lock`"),
            ("SELECT 1; DELETE FROM t", "holds more than one statement"),
            ("SELECT * FROM t LOCK IN SHARE MODE", ""),
        ];
        for (sql, why) in my {
            let got = check_read(Driver::Mysql, sql).expect_err(sql);
            assert!(got.starts_with(why), "{sql}: {got}");
        }
    }

    #[test]
    fn unicode_escapes_decode_as_the_server_does() {
        let quoted = |v: &str| Ident::with_quote('"', v);
        assert_eq!(
            normalised(&quoted(r"pg_terminate\005Fbackend")),
            "pg_terminate_backend"
        );
        assert_eq!(normalised(&quoted(r"\+000064blink_exec")), "dblink_exec");
        assert_eq!(normalised(&quoted("Count")), "Count");
        assert_eq!(normalised(&Ident::new("COUNT")), "count");
        assert_eq!(normalised(&quoted(r"a\zz")), r"a\zz");
    }
}
