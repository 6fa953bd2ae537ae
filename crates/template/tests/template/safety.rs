//! Injection safety: values stay data in SQL (bound) and shell (quoted), checked against bash.

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

/// Renders `printf %s <template>` and runs it in real bash with its variables.
fn bash_printf(template: &str, v: &str) -> Result<String, TestCaseError> {
    let sh = t()
        .render_shell(&format!("printf %s {template}"), &value_ctx(v))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    // The script does not depend on the value at all: only the variables carry it.
    let neutral = t()
        .render_shell(&format!("printf %s {template}"), &value_ctx("x"))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&sh.script, &neutral.script);
    Ok(crate::shell_contexts::bash(&sh))
}

/// A value reaches bash byte for byte as a word, inside double quotes and in a here-document.
fn shell_round_trip(v: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(bash_printf("{{ v }}", v)?, v);
    prop_assert_eq!(bash_printf("\"{{ v }}\"", v)?, v);
    prop_assert_eq!(bash_printf("x{{ v }}y", v)?, format!("x{v}y"));
    prop_assert_eq!(
        bash_printf("\"$(printf %s {{ v }})\"", v)?,
        v.trim_end_matches('\n')
    );
    let sh = t()
        .render_shell("cat <<EOF\n{{ v }}\nEOF", &value_ctx(v))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(crate::shell_contexts::bash(&sh), format!("{v}\n"));
    Ok(())
}

#[test]
fn shell_values_reach_bash_byte_for_byte() {
    for v in NASTY {
        shell_round_trip(v).expect(v);
    }
    let sh = t()
        .render_shell("printf %s {{ v }}", &value_ctx("O'Brien"))
        .expect("reference");
    assert_eq!(sh.script, r#"printf %s "$CAIRN_V1""#);
    assert_eq!(
        sh.vars,
        vec![("CAIRN_V1".to_string(), "O'Brien".to_string())]
    );
}

#[test]
fn shell_safe_is_not_a_way_around_references() {
    let c = ctx(json!({ "expr": "$((1+2))" }));
    let sh = t().render_shell("{{ expr | safe }}", &c).expect("safe");
    assert_eq!(sh.script, r#""$CAIRN_V1""#);
    assert_eq!(sh.vars[0].1, "$((1+2))");
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
            prop::sample::select(vec!["'", "\"", "\\", "$", "`", "(", ")", ";", "\n", " ", "!", "*", "&", "|", "<", "{", "}", "#", "~", "a", "é", "EOF", "\nEOF\n", "[", "]"]),
            0..24,
        )
    ) {
        shell_round_trip(&parts.concat())?;
    }
}

/// Script pieces for the generated scripts: (template, what it prints, whether it is a
/// construct the scanner must refuse). A dangerous piece prints nothing and sends its errors
/// away; a safe one prints the value between brackets.
const PIECES: &[(&str, &str, bool)] = &[
    ("printf '[%s]' {{ v }}", "[V]", false),
    ("printf '[%s]' \"a {{ v }} b\"", "[a V b]", false),
    ("cat <<EOF\n[{{ v }}]\nEOF", "[V]\n", false),
    ("x={{ v }}; printf '[%s]' \"$x\"", "[V]", false),
    ("printf '[%s]' \"$(printf %s {{ v }} | cat)\"", "[V]", false),
    ("sh -c 'printf \"[%s]\" \"$1\"' sh {{ v }}", "[V]", false),
    (
        "{ case x in x) (( n = {{ v }} ));; esac; } 2>/dev/null",
        "",
        true,
    ),
    (
        "{ case x in x) [[ {{ v }} -eq 1 ]];; esac; } 2>/dev/null",
        "",
        true,
    ),
    ("{ command let n={{ v }}; } 2>/dev/null", "", true),
    ("{ builtin let n={{ v }}; } 2>/dev/null", "", true),
    ("{ command declare -i n={{ v }}; } 2>/dev/null", "", true),
    ("{ a=([{{ v }}]=1); } 2>/dev/null", "", true),
    ("{ : \"${a[\"{{ v }}\"]}\"; } 2>/dev/null", "", true),
    ("{ : \"${s:0:\"{{ v }}\"}\"; } 2>/dev/null", "", true),
    (
        "{ env X=1 bash -c \"true {{ v }}\"; } 2>/dev/null",
        "",
        true,
    ),
    ("{ timeout 5 sh -c \": {{ v }}\"; } 2>/dev/null", "", true),
    ("{ printf '%s\\n' {{ v }} | sh; } >/dev/null 2>&1", "", true),
    ("{ eval \": {{ v }}\"; } 2>/dev/null", "", true),
];

/// Runs `script` in bash (errors allowed) in a fresh folder; returns stdout and whether a
/// canary file appeared.
fn run_loose(sh: &cairn_template::ShellScript) -> (String, bool) {
    let dir = std::env::temp_dir().join(format!(
        "cairn-gen-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = std::process::Command::new("/bin/bash")
        .args(["-c", &sh.script])
        .envs(sh.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(&dir)
        .output()
        .expect("bash runs");
    let pwned = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) > 0;
    let _ = std::fs::remove_dir_all(&dir);
    (String::from_utf8_lossy(&out.stdout).into_owned(), pwned)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// A generated script: accepted ⇒ the value arrives byte for byte as data in real bash and
    /// nothing of it runs; refused ⇒ every refusal is located at a hole. A script with a
    /// dangerous piece is always refused; one of safe pieces only is always accepted.
    #[test]
    fn generated_scripts_are_data_or_located_refusals(
        pieces in prop::collection::vec(0..PIECES.len(), 1..5),
        v in prop::sample::select(vec!["PATH[$(touch PWN)]", "x; touch PWN", "a'b\"c`d`$(touch PWN)"]),
    ) {
        let src = pieces.iter().map(|&i| PIECES[i].0).collect::<Vec<_>>().join("\n");
        let dangerous = pieces.iter().any(|&i| PIECES[i].2);
        let analysis = t().analyze(&src, cairn_template::Kind::Shell).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let rendered = t().render_shell(&src, &value_ctx(v));
        if analysis.refused.is_empty() {
            prop_assert!(!dangerous, "accepted a dangerous script:\n{}", src);
            let sh = rendered.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (out, pwned) = run_loose(&sh);
            prop_assert!(!pwned, "a value ran in:\n{}", sh.script);
            let want: String = pieces.iter().map(|&i| PIECES[i].1.replace('V', v)).collect();
            prop_assert_eq!(out, want, "{}", src);
        } else {
            prop_assert!(dangerous, "refused a safe script:\n{}\n{:?}", src, analysis.refused);
            prop_assert!(rendered.is_err());
            for r in &analysis.refused {
                prop_assert_eq!(&src[r.offset..r.offset + r.len], "v");
            }
        }
    }
}
