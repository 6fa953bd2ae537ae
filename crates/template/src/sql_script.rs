//! Statements of a SQL query template that cannot run where a script puts them.
//!
//! A PostgreSQL query of several statements is sent as one simple-query message, which the
//! server runs as one implicit transaction; `VACUUM`, `CREATE INDEX CONCURRENTLY` and the
//! others below refuse to run inside one ("cannot run inside a transaction block"), so such a
//! script can never work. [`outside_transaction`] finds them in the template's text, before
//! anything runs, with the dialect's lexer: a `;` or a keyword inside a string, a quoted
//! identifier, a comment or a `$$` body does not count, and a `{{ }}` is a value.

use crate::sql_lex::{Dialect, SqlLexer};

/// A statement that must run alone, found in a query of several statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoneStatement {
    /// Byte offset of its first keyword in the template source.
    pub offset: usize,
    /// Byte length of the keywords that name it (`CREATE INDEX CONCURRENTLY`).
    pub len: usize,
    /// What it is, as PostgreSQL names it in its error (`CREATE INDEX CONCURRENTLY`).
    pub what: String,
    /// It is written inside a `{% for %}` loop, which repeats it into a script of its own.
    pub in_loop: bool,
}

/// One token of code: a word (uppercased) or a punctuation character, with its place.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    start: usize,
    end: usize,
    /// Inside a `{% for %}` body.
    in_loop: bool,
}

/// The statements of `src` (a query template) that cannot run inside a transaction block, when
/// `src` holds more than one statement. Only PostgreSQL has that rule: MySQL and MariaDB commit
/// around DDL, and SQLite runs a script one statement at a time.
pub fn outside_transaction(dialect: Dialect, src: &str) -> Vec<LoneStatement> {
    if dialect != Dialect::Postgres {
        return Vec::new();
    }
    let statements = statements(dialect, src);
    let script = statements.len() > 1;
    statements
        .iter()
        .filter_map(|s| lone(s))
        .filter(|l| script || l.in_loop)
        .collect()
}

/// The tokens of each non-empty statement, split at `;` in code.
fn statements(dialect: Dialect, src: &str) -> Vec<Vec<Token>> {
    let mut lexer = SqlLexer::new(dialect);
    let mut out: Vec<Vec<Token>> = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut word: Option<Token> = None;
    let mut at = 0;
    let mut loops = 0usize;
    let end_word = |word: &mut Option<Token>, current: &mut Vec<Token>| {
        if let Some(w) = word.take() {
            current.push(w);
        }
    };
    while at < src.len() {
        // A template tag: `{{ }}` is a value (one word), `{% %}` and `{# #}` are not SQL.
        let rest = &src[at..];
        let tag = ["{{", "{%", "{#"]
            .iter()
            .position(|open| rest.starts_with(open));
        if let Some(k) = tag {
            let close = ["}}", "%}", "#}"][k];
            let len = rest[2..].find(close).map_or(rest.len(), |e| e + 4);
            if k == 1 {
                let body = rest
                    .get(2..len.saturating_sub(2).max(2))
                    .unwrap_or_default()
                    .trim_matches(['-', '+', ' ', '\n', '\t']);
                if body.starts_with("for ") || body.starts_with("for\t") {
                    loops += 1;
                } else if body.starts_with("endfor") {
                    loops = loops.saturating_sub(1);
                }
            }
            if k == 0 && lexer.context().is_none() {
                end_word(&mut word, &mut current);
                current.push(Token {
                    text: "?".into(),
                    start: at,
                    end: at + len,
                    in_loop: loops > 0,
                });
                lexer.hole();
            }
            at += len;
            continue;
        }
        // Literal text up to the next tag.
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let next_tag = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|open| rest[first..].find(open).map(|i| i + first))
            .min()
            .unwrap_or(rest.len());
        let piece = &rest[..next_tag];
        lexer.feed_each(piece, |i, c, code| {
            let pos = at + i;
            let is_word = c.is_alphanumeric() || c == '_';
            if code && is_word {
                match &mut word {
                    Some(w) => {
                        w.text.extend(c.to_uppercase());
                        w.end = pos + c.len_utf8();
                    }
                    None => {
                        word = Some(Token {
                            text: c.to_uppercase().collect(),
                            start: pos,
                            end: pos + c.len_utf8(),
                            in_loop: loops > 0,
                        })
                    }
                }
                return;
            }
            end_word(&mut word, &mut current);
            if code && c == ';' {
                out.push(std::mem::take(&mut current));
            } else if code && !c.is_whitespace() {
                current.push(Token {
                    text: c.to_string(),
                    start: pos,
                    end: pos + c.len_utf8(),
                    in_loop: loops > 0,
                });
            }
        });
        at += next_tag;
    }
    end_word(&mut word, &mut current);
    out.push(current);
    // A comment's opening `--` or `/*` is seen in code: a statement of those alone is empty.
    out.retain(|s| {
        s.iter()
            .any(|t| !matches!(t.text.as_str(), "-" | "/" | "*"))
    });
    out
}

/// Whether a statement must run alone, and what PostgreSQL calls it.
fn lone(tokens: &[Token]) -> Option<LoneStatement> {
    // Words only, with a parenthesised option list after the first word skipped
    // (`VACUUM (VERBOSE, ANALYZE)`, `REINDEX (VERBOSE) TABLE CONCURRENTLY t`).
    let mut words: Vec<&Token> = Vec::new();
    let mut depth = 0usize;
    for t in tokens {
        match t.text.as_str() {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            w if depth == 0 && w.chars().next().is_some_and(char::is_alphabetic) => words.push(t),
            // `--` and `/*` are seen in code, before the comment they open.
            "-" | "/" | "*" => {}
            _ if depth == 0 && words.is_empty() => return None,
            _ => {}
        }
        if words.len() >= 5 {
            break;
        }
    }
    let w = |i: usize| words.get(i).map_or("", |t| t.text.as_str());
    let named = |n: usize, what: &str| {
        let first = words.first()?;
        let last = words.get(n - 1)?;
        Some(LoneStatement {
            offset: first.start,
            len: last.end - first.start,
            what: what.to_string(),
            in_loop: first.in_loop,
        })
    };
    match (w(0), w(1), w(2)) {
        ("VACUUM", _, _) => named(1, "VACUUM"),
        ("CREATE", "INDEX", "CONCURRENTLY") => named(3, "CREATE INDEX CONCURRENTLY"),
        ("CREATE", "UNIQUE", "INDEX") if w(3) == "CONCURRENTLY" => {
            named(4, "CREATE INDEX CONCURRENTLY")
        }
        ("DROP", "INDEX", "CONCURRENTLY") => named(3, "DROP INDEX CONCURRENTLY"),
        ("REINDEX", _, "CONCURRENTLY") => named(3, "REINDEX CONCURRENTLY"),
        ("REINDEX", "DATABASE", _) => named(2, "REINDEX DATABASE"),
        ("REINDEX", "SYSTEM", _) => named(2, "REINDEX SYSTEM"),
        ("CREATE", "DATABASE", _) => named(2, "CREATE DATABASE"),
        ("DROP", "DATABASE", _) => named(2, "DROP DATABASE"),
        ("ALTER", "SYSTEM", _) => named(2, "ALTER SYSTEM"),
        ("CREATE", "TABLESPACE", _) => named(2, "CREATE TABLESPACE"),
        ("DROP", "TABLESPACE", _) => named(2, "DROP TABLESPACE"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(src: &str) -> Vec<(String, String)> {
        outside_transaction(Dialect::Postgres, src)
            .into_iter()
            .map(|l| (l.what, src[l.offset..l.offset + l.len].to_string()))
            .collect()
    }

    fn one(what: &str, written: &str) -> Vec<(String, String)> {
        vec![(what.to_string(), written.to_string())]
    }

    #[test]
    fn each_statement_that_must_run_alone_is_found_in_a_script() {
        let cases = [
            ("VACUUM", "vacuum", "SELECT 1; vacuum analyze t"),
            ("VACUUM", "VACUUM", "VACUUM (VERBOSE, ANALYZE) a; SELECT 1;"),
            (
                "CREATE INDEX CONCURRENTLY",
                "CREATE UNIQUE INDEX CONCURRENTLY",
                "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a); ANALYZE t",
            ),
            (
                "DROP INDEX CONCURRENTLY",
                "DROP INDEX CONCURRENTLY",
                "DROP INDEX CONCURRENTLY i;\nCREATE INDEX j ON t (a)",
            ),
            (
                "REINDEX CONCURRENTLY",
                "REINDEX (VERBOSE) TABLE CONCURRENTLY",
                "REINDEX (VERBOSE) TABLE CONCURRENTLY t; SELECT 1",
            ),
            (
                "REINDEX DATABASE",
                "REINDEX DATABASE",
                "SELECT 1; REINDEX DATABASE d",
            ),
            (
                "CREATE DATABASE",
                "create database",
                "create database x; select 1",
            ),
            (
                "DROP DATABASE",
                "DROP DATABASE",
                "SELECT 1; DROP DATABASE IF EXISTS x",
            ),
            (
                "ALTER SYSTEM",
                "ALTER SYSTEM",
                "ALTER SYSTEM SET work_mem = '8MB'; SELECT pg_reload_conf()",
            ),
            (
                "CREATE TABLESPACE",
                "CREATE TABLESPACE",
                "CREATE TABLESPACE s LOCATION '/x'; SELECT 1",
            ),
            (
                "VACUUM",
                "VACUUM",
                "-- weekly\n/* stats */ VACUUM {{ inputs.t | ident }}; SELECT {{ inputs.n }}",
            ),
        ];
        for (what, written, src) in cases {
            assert_eq!(found(src), one(what, written), "{src}");
        }
    }

    #[test]
    fn a_lone_statement_strings_comments_bodies_and_other_dialects_are_not_found() {
        for src in [
            "VACUUM ANALYZE t",
            "VACUUM t;",
            "  VACUUM t ;  -- done\n",
            "SELECT 'a; VACUUM t'; SELECT 1",
            "SELECT 1; -- VACUUM t\nSELECT 2",
            "SELECT 1; /* ; VACUUM t */ SELECT 2",
            "DO $$ BEGIN PERFORM 1; END $$; SELECT 1",
            "SELECT \"vacuum\" FROM t; SELECT 1",
            "REINDEX TABLE database; SELECT 1",
            "CREATE INDEX i ON t (a); DROP INDEX j",
            "SELECT {{ '; VACUUM' }}; SELECT 1",
            "{% for t in inputs.tables %}ANALYZE {{ t | ident }};{% endfor %}",
            "{% if full %}VACUUM FULL t{% else %}VACUUM t{% endif %}",
        ] {
            assert_eq!(found(src), Vec::<(String, String)>::new(), "{src}");
        }
        assert!(outside_transaction(Dialect::Mysql, "SELECT 1; CREATE DATABASE x").is_empty());
        // A loop repeats a lone statement into a script.
        let looped = outside_transaction(
            Dialect::Postgres,
            "{% for t in inputs.tables %}VACUUM {{ t | ident }};{% endfor %}",
        );
        assert_eq!(looped.len(), 1);
        assert!(looped[0].in_loop);
        assert!(outside_transaction(Dialect::Sqlite, "DELETE FROM t; VACUUM").is_empty());
    }
}
