//! SQL holes by context: each dialect's lexer against its tricky literals. A value or an
//! `| ident` name is written only in code position; anywhere else both `analyze` (for
//! `cairn validate`) and `render_sql` (at run time) refuse it.

use cairn_template::{Dialect, ErrorKind, Kind};
use serde_json::json;

use crate::{ctx, t};

use Dialect::{Mysql, Postgres, Sqlite};

const STRING: &str = "inside a quoted SQL string";
const IDENT: &str = "inside a quoted SQL identifier";
const DOLLAR: &str = "inside a dollar-quoted SQL body";
const COMMENT: &str = "inside an SQL comment";
/// A quote after a backslash, where the string ends by a server setting.
const BACKSLASH: &str = "written after `\\` before a quote";

/// (dialect, template, where the hole is). Every hole reads `x` (a value) or `t` (an ident).
const REFUSED: &[(Dialect, &str, &str)] = &[
    // PostgreSQL
    (Postgres, "SELECT '{{ x }}'", STRING),
    (Postgres, "SELECT 'it''s {{ x }}'", STRING),
    (Postgres, r"SELECT E'\'{{ x }}'", STRING),
    (Postgres, r"SELECT e'\\\'{{ x }}'", STRING),
    (Postgres, r"SELECT U&'d\0061t{{ x }}'", STRING),
    (Postgres, r#"SELECT "{{ x }}""#, IDENT),
    (Postgres, r#"SELECT "a""{{ x }}""#, IDENT),
    (Postgres, r#"SELECT U&"{{ x }}""#, IDENT),
    (Postgres, "SELECT 1 -- {{ x }}", COMMENT),
    (Postgres, "SELECT 1 /* a /* b */ {{ x }} */", COMMENT),
    (Postgres, "SELECT 1 /*/ {{ x }} */", COMMENT),
    (Postgres, "DO $$ BEGIN PERFORM {{ x }}; END $$", DOLLAR),
    (Postgres, "DO $a$ x $b$ {{ x }} $b$ $a$", DOLLAR),
    (Postgres, "SELECT $body$ $$ {{ x }} $body$", DOLLAR),
    (Postgres, "SELECT $_1$ {{ x }} $_1$", DOLLAR),
    (
        Postgres,
        "SELECT '{{ t | ident }}' AS tbl, count(*) FROM {{ t | ident }}",
        STRING,
    ),
    (Postgres, "SELECT 1 /* {{ t | ident }} */", COMMENT),
    (Postgres, "SELECT 1 -- {{ t | ident }}", COMMENT),
    (
        Postgres,
        "DO $$ BEGIN EXECUTE 'DROP TABLE ' || {{ t | ident }}; END $$",
        DOLLAR,
    ),
    (Postgres, r#"SELECT "{{ t | ident }}""#, IDENT),
    // MySQL / MariaDB
    (Mysql, "SELECT '{{ x }}'", STRING),
    (Mysql, r"SELECT '\'{{ x }}'", BACKSLASH),
    (Mysql, r"SELECT 'a''b{{ x }}'", STRING),
    (Mysql, r#"SELECT "{{ x }}""#, STRING),
    (Mysql, r#"SELECT "a\"{{ x }}""#, BACKSLASH),
    (Mysql, "SELECT `{{ x }}`", IDENT),
    (Mysql, "SELECT `a``{{ x }}`", IDENT),
    (Mysql, "SELECT 1 # {{ x }}", COMMENT),
    (Mysql, "SELECT 1 -- {{ x }}", COMMENT),
    (Mysql, "SELECT 1 --\t{{ x }}", COMMENT),
    (Mysql, "SELECT 1 /* {{ x }} */", COMMENT),
    (
        Mysql,
        "SELECT 1 /*!50000 {{ x }} */",
        "MySQL executable comment",
    ),
    (Mysql, "SELECT '{{ t | ident }}'", STRING),
    (Mysql, r#"SELECT "{{ t | ident }}""#, STRING),
    (Mysql, "SELECT 1 # {{ t | ident }}", COMMENT),
    // SQLite
    (Sqlite, "SELECT '{{ x }}'", STRING),
    (Sqlite, "SELECT 'a''{{ x }}'", STRING),
    (Sqlite, r#"SELECT "{{ x }}""#, IDENT),
    (Sqlite, "SELECT `{{ x }}`", IDENT),
    (Sqlite, "SELECT [{{ x }}]", IDENT),
    (Sqlite, "SELECT 1 -- {{ x }}", COMMENT),
    (Sqlite, "SELECT 1 /* {{ x }} */", COMMENT),
    (Sqlite, "SELECT '{{ t | ident }}'", STRING),
    // Where a string ends depends on standard_conforming_strings or sql_mode.
    (Postgres, r"SELECT 'a\', {{ x }}", BACKSLASH),
    (Postgres, r"SELECT 'x'||'\', {{ x }}", BACKSLASH),
    (Postgres, r"SELECT U&'\', {{ x }}", BACKSLASH),
    (Mysql, r"SELECT '\'', {{ x }}", BACKSLASH),
    (Mysql, r#"SELECT "\\\"", {{ x }}"#, BACKSLASH),
];

/// (dialect, template, rendered SQL): holes in code after literals and comments that ended.
const FINE: &[(Dialect, &str, &str)] = &[
    (Postgres, "SELECT 'it''s', {{ x }}", "SELECT 'it''s', $1"),
    // A backslash before no quote ends the string the same whatever the settings.
    (Postgres, r"SELECT 'a\\', {{ x }}", r"SELECT 'a\\', $1"),
    (Postgres, r"SELECT '\d+\n', {{ x }}", r"SELECT '\d+\n', $1"),
    (Postgres, r"SELECT E'\'', {{ x }}", r"SELECT E'\'', $1"),
    (Postgres, r"SELECT E'\\', {{ x }}", r"SELECT E'\\', $1"),
    (Postgres, r"SELECT E'''', {{ x }}", r"SELECT E'''', $1"),
    (
        Postgres,
        r"SELECT E'x''\'', {{ x }}",
        r"SELECT E'x''\'', $1",
    ),
    (
        Postgres,
        r"SELECT U&'\0041', {{ x }}",
        r"SELECT U&'\0041', $1",
    ),
    (
        Postgres,
        r#"SELECT "a""b", {{ x }}"#,
        r#"SELECT "a""b", $1"#,
    ),
    (
        Postgres,
        "SELECT 1 /* a /* b */ c */, {{ x }}",
        "SELECT 1 /* a /* b */ c */, $1",
    ),
    (
        Postgres,
        "SELECT 1 -- note\n, {{ x }}",
        "SELECT 1 -- note\n, $1",
    ),
    (
        Postgres,
        "SELECT $a$ $b$ ' $a$, {{ x }}",
        "SELECT $a$ $b$ ' $a$, $1",
    ),
    (Postgres, "SELECT a$b, {{ x }}", "SELECT a$b, $1"),
    (Postgres, "SELECT -1 - {{ x }}", "SELECT -1 - $1"),
    (
        Postgres,
        "SELECT {{ x }} FROM {{ t | ident }}",
        r#"SELECT $1 FROM "we""ird'; DROP TABLE v; --""#,
    ),
    (Mysql, r"SELECT 'it''s', {{ x }}", r"SELECT 'it''s', ?"),
    (Mysql, r#"SELECT "a\\", {{ x }}"#, r#"SELECT "a\\", ?"#),
    (Mysql, "SELECT 5--{{ x }}", "SELECT 5--?"),
    (Mysql, "SELECT 5--1, {{ x }}", "SELECT 5--1, ?"),
    (
        Mysql,
        "SELECT /* a /* b */ {{ x }}",
        "SELECT /* a /* b */ ?",
    ),
    (Mysql, "SELECT 1 # c\n, {{ x }}", "SELECT 1 # c\n, ?"),
    (Mysql, "SELECT $$, {{ x }}", "SELECT $$, ?"),
    (
        Mysql,
        "SELECT {{ x }} FROM {{ t | ident }}",
        "SELECT ? FROM `we\"ird'; DROP TABLE v; --`",
    ),
    (Sqlite, r"SELECT 'a\', {{ x }}", r"SELECT 'a\', ?"),
    (Sqlite, "SELECT [a b], {{ x }}", "SELECT [a b], ?"),
    (Sqlite, "SELECT /* /* */ {{ x }}", "SELECT /* /* */ ?"),
    (
        Sqlite,
        "SELECT {{ x }} FROM {{ t | ident }}",
        r#"SELECT ? FROM "we""ird'; DROP TABLE v; --""#,
    ),
];

fn context() -> cairn_template::Value {
    ctx(json!({ "x": "v", "t": "we\"ird'; DROP TABLE v; --" }))
}

#[test]
fn holes_outside_code_are_refused_by_analysis_and_rendering() {
    let c = context();
    for &(dialect, src, place) in REFUSED {
        let err = t().render_sql(src, &c, dialect).expect_err(src);
        assert_eq!(err.kind, ErrorKind::InvalidValue, "{dialect:?} {src}");
        assert!(
            err.message.contains(place),
            "{dialect:?} {src}: {}",
            err.message
        );
        let analysis = t().analyze(src, Kind::Sql(dialect)).expect(src);
        assert_eq!(analysis.refused.len(), 1, "{dialect:?} {src}");
        let r = &analysis.refused[0];
        assert!(
            r.message.contains(place),
            "{dialect:?} {src}: {}",
            r.message
        );
        assert!(!r.help.is_empty());
        let at = &src[r.offset..r.offset + r.len];
        assert!(at == "x" || at == "t | ident", "{dialect:?} {src}: {at:?}");
    }
}

#[test]
fn holes_in_code_after_tricky_literals_render() {
    let c = context();
    for &(dialect, src, want) in FINE {
        let q = t().render_sql(src, &c, dialect).expect(src);
        assert_eq!(q.sql, want, "{dialect:?} {src}");
        assert_eq!(
            t().analyze(src, Kind::Sql(dialect)).expect(src).refused,
            vec![],
            "{dialect:?} {src}"
        );
    }
}

#[test]
fn the_same_template_is_lexed_by_its_dialect() {
    let c = context();
    // A string in MySQL, an identifier elsewhere.
    let src = r#"SELECT "{{ x }}""#;
    assert!(
        t().render_sql(src, &c, Mysql)
            .expect_err("mysql")
            .message
            .contains(STRING)
    );
    assert!(
        t().render_sql(src, &c, Sqlite)
            .expect_err("sqlite")
            .message
            .contains(IDENT)
    );
    // `E'...'` escapes in PostgreSQL; in MySQL the string's end depends on sql_mode; in
    // SQLite the backslash is a character, and the second quote opens a string.
    let src = r"SELECT E'a\'', {{ x }} -- '";
    assert_eq!(
        t().render_sql(src, &c, Postgres).expect("pg").sql,
        r"SELECT E'a\'', $1 -- '"
    );
    assert!(
        t().render_sql(src, &c, Mysql)
            .expect_err("mysql")
            .message
            .contains(BACKSLASH)
    );
    assert!(
        t().render_sql(src, &c, Sqlite)
            .expect_err("sqlite")
            .message
            .contains(STRING)
    );
    // `$$` quotes only in PostgreSQL; it is a name in MySQL, a variable in SQLite.
    let src = "SELECT $$ {{ x }} $$";
    assert!(t().render_sql(src, &c, Postgres).is_err());
    assert_eq!(
        t().render_sql(src, &c, Mysql).expect("mysql").sql,
        "SELECT $$ ? $$"
    );
    assert!(t().render_sql(src, &c, Sqlite).is_err());
    // Nested comments only in PostgreSQL.
    let src = "SELECT /* /* */ {{ x }} */";
    assert!(t().render_sql(src, &c, Postgres).is_err());
    assert!(t().render_sql(src, &c, Sqlite).is_ok());
}

#[test]
fn holes_rendered_by_loops_and_conditions_are_checked_at_render_time() {
    // The analysis sees the template once; rendering sees what the branches produced.
    let c = ctx(json!({ "q": true, "x": "v" }));
    let src = "SELECT {% if q %}'{% endif %}{{ x }}{% if q %}'{% endif %}";
    let err = t()
        .render_sql(src, &c, Postgres)
        .expect_err("quoted by a branch");
    assert!(err.message.contains(STRING), "{}", err.message);
    let c = ctx(json!({ "q": false, "x": "v" }));
    assert_eq!(
        t().render_sql(src, &c, Postgres).expect("unquoted").sql,
        "SELECT $1"
    );
}
