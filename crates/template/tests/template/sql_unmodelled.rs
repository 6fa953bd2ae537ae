//! The SQL lexer fails closed: where the server could read the text otherwise than the lexer
//! (a setting, a version, a construct it does not model), every later hole is refused, by
//! `analyze` (for `cairn validate`, at the hole) and by `render_sql`. The value reads
//! `z'; DROP TABLE victim; --`: were a hole misplaced, it would end a string and run.

use cairn_template::{Dialect, ErrorKind, Kind};
use serde_json::json;

use crate::{ctx, t};

use Dialect::{Mysql, Postgres, Sqlite};

const VALUE: &str = "z'; DROP TABLE victim; --";

/// Asserts that rendering and analysis both refuse the only hole of `src`, saying `why`.
fn refused(dialect: Dialect, src: &str, why: &str) {
    let c = ctx(json!({ "t": VALUE, "x": VALUE }));
    let err = t().render_sql(src, &c, dialect).expect_err(src);
    assert_eq!(err.kind, ErrorKind::InvalidValue, "{dialect:?} {src:?}");
    assert!(
        err.message.contains(why),
        "{dialect:?} {src:?}: {}",
        err.message
    );
    let analysis = t().analyze(src, Kind::Sql(dialect)).expect(src);
    assert_eq!(analysis.refused.len(), 1, "{dialect:?} {src:?}");
    let r = &analysis.refused[0];
    assert!(
        r.message.contains(why),
        "{dialect:?} {src:?}: {}",
        r.message
    );
    assert!(!r.help.is_empty());
    let at = &src[r.offset..r.offset + r.len];
    assert!(at == "x" || at == "t|ident", "{dialect:?} {src:?}: {at:?}");
}

fn renders(dialect: Dialect, src: &str, want: &str) {
    let c = ctx(json!({ "t": VALUE, "x": VALUE }));
    let q = t().render_sql(src, &c, dialect).expect(src);
    assert_eq!(q.sql, want, "{dialect:?} {src:?}");
    let analysis = t().analyze(src, Kind::Sql(dialect)).expect(src);
    assert_eq!(analysis.refused, vec![], "{dialect:?} {src:?}");
}

const STRING: &str = "inside a quoted SQL string";
const DOLLAR: &str = "inside a dollar-quoted SQL body";
const COMMENT: &str = "inside an SQL comment";

#[test]
fn postgres_e_string_with_a_doubled_quote_then_an_escaped_quote_is_still_a_string() {
    // `''` does not end an E string: the `\'` after it is escaped, and the string goes on.
    refused(Postgres, r"SELECT E'x''\' AS a, {{t|ident}}", STRING);
    refused(Postgres, r"SELECT e'x''\' AS a, {{x}}", STRING);
    // Across a doubled quote split by a template tag as well.
    refused(
        Postgres,
        r"SELECT E'x'{% if true %}'\' AS a, {{t|ident}}{% endif %}",
        STRING,
    );
}

#[test]
fn postgres_dollar_tags_take_any_letter_non_ascii_included() {
    refused(Postgres, "SELECT $€$ x {{t|ident}} $€$", DOLLAR);
    refused(Postgres, "SELECT $é1$ x {{t|ident}} $é1$", DOLLAR);
    refused(Postgres, "SELECT $日本$ {{x}} $日本$", DOLLAR);
    refused(Postgres, "SELECT $_$ {{x}} $_$", DOLLAR);
    // A name with non-ASCII letters goes on through `$`: not a tag.
    renders(Postgres, "SELECT 1 AS é$€$, {{x}}", "SELECT 1 AS é$€$, $1");
    renders(Postgres, "SELECT $€$ ' $€$, {{x}}", "SELECT $€$ ' $€$, $1");
    // A tag's length is counted in characters: after an empty `$€$$€$` the next `$€$` opens a
    // body (the property test found the lexer reading it as the close of the first, by bytes).
    refused(
        Postgres,
        "SELECT $€$$€$ AS c0, $€$ x AS d0, 1 AS {{t|ident}}, x $€$ AS d1",
        DOLLAR,
    );
    renders(
        Postgres,
        "SELECT $€$$€$ AS c0, {{x}}",
        "SELECT $€$$€$ AS c0, $1",
    );
}

#[test]
fn postgres_a_dollar_that_is_neither_parameter_nor_tag_is_unmodelled() {
    let why = "written after a `$` that starts neither a parameter nor a dollar-quote tag";
    refused(Postgres, "SELECT $ a, {{x}}", why);
    refused(Postgres, "SELECT $a b$ c, {{x}}", why);
    refused(Postgres, "SELECT $1a$, {{x}}", why);
    // After a number, `$` starts a tag: `1$a$` is `1` then a dollar quote.
    refused(Postgres, "SELECT 1$a$, {{t|ident}} $a$", why);
    // At the end of a piece the tag is unknown: `$a` and a value would make `$a$1`.
    refused(Postgres, "SELECT $a{{x}}", why);
    refused(Postgres, "SELECT ${{x}}", why);
    renders(Postgres, "SELECT $1, {{x}}", "SELECT $1, $1");
}

#[test]
fn postgres_line_comment_ends_at_a_carriage_return() {
    // PostgreSQL ends `--` at `\r`: the quote after it opens a string.
    refused(Postgres, "SELECT 1 -- c\r' \n, {{t|ident}} '", STRING);
    renders(Postgres, "SELECT 1 -- c\r, {{x}}", "SELECT 1 -- c\r, $1");
    // MySQL and SQLite end it at `\n` only.
    refused(Mysql, "SELECT 1 -- c\r, {{x}}", COMMENT);
    refused(Mysql, "SELECT 1 # c\r, {{x}}", COMMENT);
    refused(Sqlite, "SELECT 1 -- c\r, {{x}}", COMMENT);
}

#[test]
fn a_quote_after_a_backslash_depends_on_server_settings_and_is_unmodelled() {
    let pg = "where the string ends depends on standard_conforming_strings";
    refused(Postgres, r"SELECT 'a\' AS a, {{t|ident}} -- '", pg);
    refused(Postgres, r"SELECT '\\\' AS a, {{x}}", pg);
    let my = "where the string ends depends on sql_mode";
    // NO_BACKSLASH_ESCAPES: `'\'` is a whole string, and `'` opens the next one.
    refused(Mysql, r"SELECT '\'', {{t|ident}} -- '", my);
    // ANSI_QUOTES: `"a\"` is an identifier, and `"` opens the next one.
    refused(Mysql, r#"SELECT "a\"", {{t|ident}} -- ""#, my);
    // An even run, or a backslash before no quote, reads the same in every mode.
    renders(Mysql, r"SELECT 'a\\', {{x}}", r"SELECT 'a\\', ?");
    renders(Mysql, r"SELECT 'a\n', {{x}}", r"SELECT 'a\n', ?");
    renders(Mysql, r#"SELECT "a""b", {{x}}"#, r#"SELECT "a""b", ?"#);
}

#[test]
fn mysql_executable_comments_and_hints_are_unmodelled() {
    let why = "written after a MySQL executable comment or hint";
    refused(Mysql, "SELECT 1 /*! ' */, {{t|ident}} -- '", why);
    refused(Mysql, "SELECT 1 /*!50000 ' */, {{t|ident}} -- '", why);
    refused(Mysql, "SELECT 1 /*M! ' */, {{x}}", why);
    refused(Mysql, "SELECT /*+ BKA(t) */ 1, {{x}}", why);
    // A plain comment is a comment.
    renders(Mysql, "SELECT 1 /* ' */, {{x}}", "SELECT 1 /* ' */, ?");
}

#[test]
fn sqlite_named_variables_are_unmodelled() {
    let why = "written after an SQLite named variable";
    // `$a(...)` swallows the quote: the next one opens a string.
    refused(Sqlite, "SELECT $a(') '{{t|ident}}", why);
    refused(Sqlite, "SELECT :a, {{x}}", why);
    refused(Sqlite, "SELECT @a, {{x}}", why);
    refused(Sqlite, "SELECT a:b, {{x}}", why);
    renders(Sqlite, "SELECT a$b, {{x}}", "SELECT a$b, ?");
}

#[test]
fn a_name_number_or_quote_glued_to_a_value_is_unmodelled() {
    let why = "followed right away by a name, number or quote";
    // `$1` then `1` would be `$11`, another parameter.
    refused(Postgres, "SELECT {{x}}1, {{x}}", why);
    refused(Postgres, "SELECT {{x}}$a$, {{t|ident}} $a$", why);
    refused(Postgres, "SELECT {{t|ident}}\"x\", {{x}}", why);
    refused(Mysql, "SELECT {{x}}'a', {{x}}", why);
    renders(
        Postgres,
        "SELECT {{x}}::text, {{t|ident}}.a",
        r#"SELECT $1::text, "z'; DROP TABLE victim; --".a"#,
    );
}

#[test]
fn a_nul_character_is_unmodelled() {
    refused(
        Postgres,
        "SELECT 1 \0, {{x}}",
        "written after a NUL character",
    );
    refused(
        Sqlite,
        "SELECT '\0', {{x}}",
        "written after a NUL character",
    );
}

#[test]
fn the_refusal_quotes_the_construct_not_the_value() {
    let c = ctx(json!({ "x": VALUE }));
    let err = t()
        .render_sql("SELECT $€ x, {{x}}", &c, Postgres)
        .expect_err("unmodelled");
    assert!(err.message.contains("(near ` $€ x, `)"), "{}", err.message);
    assert!(!err.message.contains("victim"), "{}", err.message);
    let err = t()
        .render_sql("SELECT 1 -- c\r\0 {{x}}", &c, Postgres)
        .expect_err("nul");
    assert!(err.message.contains(r"(near `\r\0 `)"), "{}", err.message);
}
