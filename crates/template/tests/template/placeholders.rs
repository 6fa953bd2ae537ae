//! Dry-run placeholders in every mode, and undecidable conditions.

use cairn_template::{
    Decision, Dialect, ErrorKind, MASK, Value, from_json, is_placeholder, masked, placeholder,
    value_map,
};
use serde_json::json;

use crate::t;

/// `inputs` known, `steps.verify_dump` and `steps.q` not run yet, `secrets` masked.
fn dry() -> Value {
    value_map([
        (
            "inputs",
            from_json(&json!({ "flag": true, "off": false, "dir": "/b" })),
        ),
        (
            "steps",
            value_map([
                ("verify_dump", placeholder("steps.verify_dump")),
                ("q", placeholder("steps.q")),
            ]),
        ),
        ("secrets", value_map([("db_password", masked())])),
    ])
}

#[test]
fn placeholders_render_as_their_path() {
    let c = dry();
    let cases = [
        (
            "{{ steps.verify_dump.result.exit_code }}",
            "<steps.verify_dump.result.exit_code>",
        ),
        (
            "rows: {{ steps.q.result.rows[0].n }}",
            "rows: <steps.q.result.rows[0].n>",
        ),
        (
            "{{ steps.q.outputs['odd key'] }}",
            "<steps.q.outputs[\"odd key\"]>",
        ),
        (
            "{{ steps.q.result.rows | length }}",
            "<steps.q.result.rows | length>",
        ),
        ("{{ steps.q.outputs.n | int }}", "<steps.q.outputs.n | int>"),
        (
            "{{ steps.q.outputs.name.upper() }}",
            "<steps.q.outputs.name.upper()>",
        ),
        (
            "{{ steps.q.outputs.x | default('d') }}",
            "<steps.q.outputs.x>",
        ),
        (
            "{{ steps.q.outputs.x | to_json }}",
            "\"<steps.q.outputs.x>\"",
        ),
        // A branch decided on a known value is rendered as usual.
        (
            "{% if inputs.flag %}many{% else %}one{% endif %} {{ steps.q.outputs.x }}",
            "many <steps.q.outputs.x>",
        ),
        ("{{ secrets.db_password }}", MASK),
    ];
    for (src, want) in cases {
        assert_eq!(t().render_text(src, &c).expect(src), want, "{src}");
    }
    // Arithmetic on an unknown value cannot be done: the render says which value it needed.
    for (src, path) in [
        ("{{ steps.q.outputs.n + 1 }}", "steps.q.outputs.n"),
        (
            "{{ steps.q.outputs.n | int * 2 }}",
            "steps.q.outputs.n | int",
        ),
    ] {
        let err = t().render_text(src, &c).expect_err(src);
        assert_eq!(
            err.kind,
            ErrorKind::Undecided {
                path: path.to_string()
            },
            "{src}"
        );
        assert!(
            err.message.starts_with(&format!(
                "depends on `{path}`, which is not known before the run ("
            )),
            "{}",
            err.message
        );
        assert_eq!(err.offset, Some(3));
    }
    // Other errors stay what they are.
    let err = t()
        .render_text("{{ steps.q.outputs.n }} {{ nope }}", &c)
        .expect_err("undefined");
    assert_eq!(err.kind, ErrorKind::Undefined);
}

/// A condition or loop over an unknown value is never decided by a dry run (a placeholder
/// would count as true, a list as empty): the render says which value decides it, and where.
#[test]
fn branches_on_placeholders_are_undecided() {
    let c = dry();
    for (src, path, at) in [
        (
            "{% if steps.q.outputs.ok %}yes{% else %}no{% endif %}",
            "steps.q.outputs.ok",
            "steps.q.outputs.ok",
        ),
        (
            "{% if steps.q.outputs.n == '3' %}three{% endif %}",
            "steps.q.outputs.n",
            "steps.q.outputs.n",
        ),
        (
            "{{ 'a' if steps.q.outputs.ok else 'b' }}",
            "steps.q.outputs.ok",
            "steps.q.outputs.ok",
        ),
        (
            "[{% for r in steps.q.result.rows %}{{ r }}{% endfor %}]",
            "steps.q.result.rows",
            "steps.q.result.rows",
        ),
        // Through a variable the template sets.
        (
            "{% set n = steps.q.outputs.n %}{% if n > 2 %}big{% endif %}",
            "steps.q.outputs.n",
            "steps.q.outputs.n",
        ),
        (
            "{% for r in steps.q.result.rows %}{% if r.ok %}x{% endif %}{% endfor %}",
            "steps.q.result.rows",
            "steps.q.result.rows",
        ),
    ] {
        for (mode, err) in [
            ("text", t().render_text(src, &c).expect_err(src)),
            ("shell", t().render_shell(src, &c).expect_err(src)),
            ("value", t().render_value(src, &c).expect_err(src)),
        ] {
            assert_eq!(
                err.kind,
                ErrorKind::Undecided {
                    path: path.to_string()
                },
                "{mode}: {src}"
            );
            let offset = err.offset.expect("located");
            assert_eq!(&src[offset..offset + err.len], at, "{mode}: {src}");
        }
    }
    // A loop over a known list that reads a placeholder inside is rendered.
    assert_eq!(
        t().render_text(
            "{% for x in [1, 2] %}{{ x }}{{ ',' if not loop.last else '' }}{% endfor %} {{ steps.q.outputs.y }}",
            &c
        )
        .expect("rendered"),
        "1,2 <steps.q.outputs.y>"
    );
}

#[test]
fn placeholders_in_sql_and_shell() {
    let c = dry();
    let q = t()
        .render_sql(
            "SELECT * FROM e WHERE id > {{ steps.q.outputs.max_id }} AND dir = {{ inputs.dir }}",
            &c,
            Dialect::Postgres,
        )
        .expect("sql");
    assert_eq!(q.sql, "SELECT * FROM e WHERE id > $1 AND dir = $2");
    assert_eq!(
        q.params,
        vec![json!("<steps.q.outputs.max_id>"), json!("/b")]
    );
    assert_eq!(
        t().render_shell("test {{ steps.verify_dump.result.stdout }} = ok", &c)
            .expect("sh"),
        cairn_template::ShellScript {
            script: r#"test "$CAIRN_V1" = ok"#.to_string(),
            vars: vec![(
                "CAIRN_V1".to_string(),
                "<steps.verify_dump.result.stdout>".to_string()
            )],
        }
    );
    assert_eq!(
        t().render_sql(
            "SELECT * FROM {{ steps.q.outputs.table | ident }}",
            &c,
            Dialect::Postgres
        )
        .expect("ident")
        .sql,
        "SELECT * FROM \"<steps.q.outputs.table>\""
    );
}

#[test]
fn render_value_returns_the_placeholder() {
    let c = dry();
    let v = t()
        .render_value("{{ steps.q.outputs.entities }}", &c)
        .expect("value");
    assert_eq!(
        is_placeholder(&v).as_deref(),
        Some("steps.q.outputs.entities")
    );
    assert_eq!(is_placeholder(&Value::from("<steps.q>")), None);
    assert_eq!(
        cairn_template::to_json(&v).expect("json"),
        json!("<steps.q.outputs.entities>")
    );
}

#[test]
fn conditions_on_placeholders_are_undecided() {
    let c = dry();
    let undecided = [
        (
            "steps.verify_dump.result.exit_code == 0",
            "steps.verify_dump.result.exit_code",
        ),
        (
            "{{ steps.verify_dump.result.exit_code == 0 }}",
            "steps.verify_dump.result.exit_code",
        ),
        (
            "steps.q.result.rows | length > 0",
            "steps.q.result.rows | length",
        ),
        ("steps.q == 0", "steps.q"),
        ("steps.q", "steps.q"),
        ("not steps.q.outputs.ok", "steps.q.outputs.ok"),
        ("inputs.off or steps.q.outputs.ok", "steps.q.outputs.ok"),
        ("steps.q.outputs.n in [1, 2]", "steps.q.outputs.n"),
        ("steps.q.outputs.n + 1 > 0", "steps.q.outputs.n"),
        (
            "(steps.q.result.rows | first).n == 1",
            "(steps.q.result.rows | first).n",
        ),
    ];
    for (expr, path) in undecided {
        let err = t().eval_expr(expr, &c).expect_err(expr);
        assert_eq!(
            err.kind,
            ErrorKind::Undecided {
                path: path.to_string()
            },
            "{expr}"
        );
        assert_eq!(err.undecided(), Some(path));
        let message = format!("depends on `{path}`, which is not known before the run");
        assert!(err.to_string().starts_with(&message), "{expr}: {err}");
        assert_eq!(
            t().eval_condition(expr, &c).expect(expr),
            Decision::Undecided {
                path: path.to_string()
            }
        );
    }
    // Short-circuits and tests that do not look at the value decide.
    let decided = [
        ("inputs.flag or steps.q.outputs.ok", Decision::True),
        ("inputs.off and steps.q.outputs.ok", Decision::False),
        ("steps.q is defined", Decision::True),
        ("inputs.flag", Decision::True),
        ("{{ inputs.off }}", Decision::False),
    ];
    for (expr, want) in decided {
        assert_eq!(t().eval_condition(expr, &c).expect(expr), want, "{expr}");
    }
}
