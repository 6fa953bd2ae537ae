//! Injection safety: values stay data in SQL (bound) and shell (quoted), checked against bash.

use std::process::Command;

use cairn_template::{Dialect, ErrorKind, Value, value_map};
use proptest::prelude::*;
use serde_json::json;

use crate::{ctx, t};

/// Values that would break out of naive interpolation.
const NASTY: &[&str] = &[
    "O'Brien",
    "it''s",
    "'",
    r#"say "hi""#,
    r#"'"'"#,
    "1; DROP TABLE users; --",
    "-- comment",
    "/* open",
    "$(id)",
    "`id`",
    "${HOME}",
    "$HOME",
    "line one\nline two",
    "cr\r\nlf",
    "tab\there",
    r"back\slash\",
    "ünïcødé ✓ 日本語 🚀",
    "  two  spaces  ",
    "",
    "*",
    "~root",
    "!!",
    "%s %d",
    "a b; echo pwned",
    "{{ 7 * 7 }}",
    "$1",
    "?",
    "\\'",
    "-n",
];

fn value_ctx(v: &str) -> Value {
    value_map([("v", Value::from(v))])
}

#[test]
fn sql_values_are_only_ever_parameters() {
    for v in NASTY {
        let c = value_ctx(v);
        let q = t()
            .render_sql(
                "SELECT * FROM t WHERE a = {{ v }} AND b <> {{ v }}",
                &c,
                Dialect::Postgres,
            )
            .expect(v);
        assert_eq!(q.sql, "SELECT * FROM t WHERE a = $1 AND b <> $2", "{v:?}");
        assert_eq!(q.params, vec![json!(v), json!(v)], "{v:?}");

        let q = t()
            .render_sql(
                "SELECT * FROM t WHERE a = {{ v }} AND b <> {{ v }}",
                &c,
                Dialect::Sqlite,
            )
            .expect(v);
        assert_eq!(q.sql, "SELECT * FROM t WHERE a = ? AND b <> ?", "{v:?}");
        assert_eq!(q.params, vec![json!(v), json!(v)], "{v:?}");
    }
}

#[test]
fn sql_params_keep_their_types() {
    let c = ctx(
        json!({ "n": 42, "big": 18_446_744_073_709_551_615_u64, "f": 1.5, "b": true,
                        "z": null, "ids": [1, 2, 3], "m": { "k": "v" }, "s": "42" }),
    );
    let q = t()
        .render_sql(
            "SELECT {{ n }}, {{ big }}, {{ f }}, {{ b }}, {{ z }}, {{ ids }}, {{ m }}, {{ s }}, {{ n + 1 }}",
            &c,
            Dialect::Postgres,
        )
        .expect("typed");
    assert_eq!(q.sql, "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9");
    assert_eq!(
        q.params,
        vec![
            json!(42),
            json!(18_446_744_073_709_551_615_u64),
            json!(1.5),
            json!(true),
            json!(null),
            json!([1, 2, 3]),
            json!({ "k": "v" }),
            json!("42"),
            json!(43)
        ]
    );
}

#[test]
fn sql_loops_number_placeholders_in_order() {
    let c = ctx(json!({ "ids": [10, 20, 30], "actor": "client_1" }));
    let src = "DELETE FROM e WHERE actor = {{ actor }} AND id IN (\
               {% for id in ids %}{{ id }}{% if not loop.last %}, {% endif %}{% endfor %})";
    let q = t().render_sql(src, &c, Dialect::Postgres).expect("loop");
    assert_eq!(
        q.sql,
        "DELETE FROM e WHERE actor = $1 AND id IN ($2, $3, $4)"
    );
    assert_eq!(
        q.params,
        vec![json!("client_1"), json!(10), json!(20), json!(30)]
    );
    let q = t().render_sql(src, &c, Dialect::Sqlite).expect("loop");
    assert_eq!(q.sql, "DELETE FROM e WHERE actor = ? AND id IN (?, ?, ?)");
}

#[test]
fn sql_identifiers_are_quoted_and_nothing_else_reaches_the_text() {
    let c = ctx(
        json!({ "t": "memory entities", "odd": "we\"ird\"", "v": "x'); DROP TABLE t; --",
                        "empty": "", "nul": "a\u{0}b", "ctl": "a\u{1}b" }),
    );
    let q = t()
        .render_sql(
            "SELECT {{ 'id' | ident }} FROM {{ t | ident }} JOIN {{ odd | ident }} WHERE v = {{ v | raw }} OR v = {{ v | safe }}",
            &c,
            Dialect::Postgres,
        )
        .expect("ident");
    assert_eq!(
        q.sql,
        r#"SELECT "id" FROM "memory entities" JOIN "we""ird""" WHERE v = $1 OR v = $2"#
    );
    assert_eq!(
        q.params,
        vec![
            json!("x'); DROP TABLE t; --"),
            json!("x'); DROP TABLE t; --")
        ]
    );

    for bad in [
        "{{ empty | ident }}",
        "{{ nul | ident }}",
        "{{ ctl | ident }}",
    ] {
        let err = t().render_sql(bad, &c, Dialect::Postgres).expect_err(bad);
        assert_eq!(err.kind, ErrorKind::InvalidValue, "{bad}");
        assert!(
            err.message.starts_with("ident: an SQL identifier cannot"),
            "{}",
            err.message
        );
    }
    // In text, ident quotes the same way; raw is the identity.
    assert_eq!(
        t().render_text("{{ odd | ident }} {{ v | raw }}", &c)
            .expect("text"),
        r#""we""ird""" x'); DROP TABLE t; --"#
    );
}

/// Runs `printf %s <rendered>` in real bash and returns what it printed.
fn bash_printf(rendered_args: &str) -> String {
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(format!("printf %s {rendered_args}"))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed on {rendered_args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn shell_round_trip(v: &str) -> Result<(), TestCaseError> {
    let rendered = t()
        .render_shell("{{ v }}", &value_ctx(v))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        rendered.starts_with('\'') && rendered.ends_with('\''),
        "{rendered:?}"
    );
    prop_assert_eq!(bash_printf(&rendered), v);
    Ok(())
}

#[test]
fn shell_values_reach_bash_byte_for_byte() {
    for v in NASTY {
        shell_round_trip(v).expect(v);
    }
    let rendered = t()
        .render_shell("printf %s {{ v }}", &value_ctx("O'Brien"))
        .expect("quote");
    assert_eq!(rendered, r"printf %s 'O'\''Brien'");
}

#[test]
fn shell_lists_are_one_word_per_item() {
    let c = ctx(
        json!({ "files": ["a b", "c'd", "$(id)", 7, true], "nothing": [], "m": { "k": "v w" } }),
    );
    let rendered = t().render_shell("{{ files }}", &c).expect("list");
    assert_eq!(rendered, r"'a b' 'c'\''d' '$(id)' '7' 'true'");
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(format!("printf '[%s]' {rendered}"))
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[a b][c'd][$(id)][7][true]"
    );
    assert_eq!(
        t().render_shell("ls {{ nothing }}", &c).expect("empty"),
        "ls "
    );
    assert_eq!(
        t().render_shell("echo {{ m }}", &c).expect("map"),
        r#"echo '{"k":"v w"}'"#
    );
}

#[test]
fn shell_raw_is_verbatim() {
    let c = ctx(json!({ "expr": "$((1+2))", "flags": ["-l", "-a"], "dir": "/tmp/x y" }));
    let rendered = t()
        .render_shell("echo {{ expr | raw }} {{ flags | raw }} {{ dir }}", &c)
        .expect("raw");
    assert_eq!(rendered, "echo $((1+2)) -l -a '/tmp/x y'");
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(&rendered)
        .output()
        .expect("bash");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3 -l -a /tmp/x y\n");
    // `safe` is not a way around quoting.
    assert_eq!(
        t().render_shell("{{ expr | safe }}", &c).expect("safe"),
        "'$((1+2))'"
    );
}

#[test]
fn shell_refuses_nul() {
    let c = ctx(json!({ "v": "a\u{0}b", "list": ["ok", "\u{0}"] }));
    for src in ["echo {{ v }}", "echo {{ list }}"] {
        let err = t().render_shell(src, &c).expect_err(src);
        assert_eq!(err.kind, ErrorKind::InvalidValue);
        assert!(
            err.message
                .contains("NUL byte, which bash cannot carry in a command argument"),
            "{}",
            err.message
        );
        assert_eq!(err.offset, Some(8), "{src}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_string_round_trips_through_bash(v in "[^\u{0}]{0,40}") {
        shell_round_trip(&v)?;
    }

    #[test]
    fn shell_metacharacters_round_trip_through_bash(
        parts in prop::collection::vec(
            prop::sample::select(vec!["'", "\"", "\\", "$", "`", "(", ")", ";", "\n", " ", "!", "*", "&", "|", "<", "{", "}", "#", "~", "a", "é"]),
            0..24,
        )
    ) {
        shell_round_trip(&parts.concat())?;
    }
}
