//! Type preservation, text rendering, strictness and error locations.

use cairn_template::{ErrorKind, Templates, Value, from_json, to_json};
use serde_json::json;

use crate::{ctx, empty, t};

fn inputs() -> Value {
    ctx(json!({
        "inputs": { "flag": true, "off": false, "n": 42, "ratio": 0.5, "name": "db", "none": null,
                    "list": [1, "two", true], "map": { "b": 1, "a": [null] }, "empty": {} }
    }))
}

fn json_of(v: &Value) -> serde_json::Value {
    to_json(v).expect("convertible")
}

#[test]
fn one_expression_keeps_its_type() {
    let c = inputs();
    let cases: &[(&str, serde_json::Value)] = &[
        ("{{ 42 }}", json!(42)),
        ("{{ inputs.n }}", json!(42)),
        ("{{ inputs.n * 2 }}", json!(84)),
        ("{{ inputs.ratio }}", json!(0.5)),
        ("{{ inputs.flag }}", json!(true)),
        ("{{ inputs.off }}", json!(false)),
        ("{{ inputs.none }}", json!(null)),
        ("{{ inputs.name }}", json!("db")),
        ("{{ inputs.list }}", json!([1, "two", true])),
        ("{{ inputs.map }}", json!({ "b": 1, "a": [null] })),
        ("  {{ inputs.n }}\n", json!(42)),
        ("{{- inputs.n -}}", json!(42)),
        ("{{ inputs.list | length }}", json!(3)),
        ("{{ [inputs.n, inputs.name] }}", json!([42, "db"])),
    ];
    for (src, want) in cases {
        let got = t().render_value(src, &c).expect(src);
        assert_eq!(&json_of(&got), want, "{src}");
    }
    assert!(
        t().render_value("{{ inputs.flag }}", &c)
            .expect("bool")
            .is_true()
    );
    assert_eq!(
        t().render_value("{{ 42 }}", &c).expect("n"),
        Value::from(42)
    );
}

#[test]
fn mixed_text_is_a_string() {
    let c = inputs();
    let cases = [
        ("id-{{ 1 }}", "id-1"),
        ("{{ inputs.n }}{{ inputs.n }}", "4242"),
        ("{{ inputs.n }} items", "42 items"),
        ("{% if inputs.flag %}yes{% endif %}", "yes"),
        ("plain text, {single} braces", "plain text, {single} braces"),
        ("no template at all\n", "no template at all\n"),
    ];
    for (src, want) in cases {
        assert_eq!(
            t().render_value(src, &c).expect(src),
            Value::from(want),
            "{src}"
        );
    }
}

#[test]
fn text_spells_values_as_json() {
    let c = inputs();
    let cases = [
        (
            "{{ inputs.flag }}/{{ inputs.off }}/{{ inputs.none }}",
            "true/false/null",
        ),
        ("{{ inputs.list }}", r#"[1,"two",true]"#),
        ("{{ inputs.map }}", r#"{"b":1,"a":[null]}"#),
        ("{{ inputs.ratio }} {{ inputs.n }}", "0.5 42"),
        ("{{ inputs.flag | string }}", "true"),
        ("line\n", "line\n"),
        ("{{ inputs.name }}\n", "db\n"),
    ];
    for (src, want) in cases {
        assert_eq!(t().render_text(src, &c).expect(src), want, "{src}");
    }
}

#[test]
fn eval_expr_bare_or_wrapped() {
    let c = ctx(json!({ "inputs": { "incremental": false, "n": 3 },
                        "steps": { "q": { "result": { "rows": [{ "n": 7 }] } } } }));
    let cases: &[(&str, serde_json::Value)] = &[
        ("inputs.incremental", json!(false)),
        ("not inputs.incremental", json!(true)),
        ("{{ inputs.n > 2 }}", json!(true)),
        ("steps.q.result.rows | length > 0", json!(true)),
        ("steps.q.result.rows[0].n", json!(7)),
        (" inputs.n ", json!(3)),
        ("'}}' ~ inputs.n", json!("}}3")),
        ("{{ '}}' ~ inputs.n }}", json!("}}3")),
    ];
    for (expr, want) in cases {
        assert_eq!(
            &json_of(&t().eval_expr(expr, &c).expect(expr)),
            want,
            "{expr}"
        );
    }
    let err = t()
        .eval_expr("{{ inputs.n }} and {{ inputs.n }}", &c)
        .expect_err("two");
    assert_eq!(err.kind, ErrorKind::Syntax);
}

#[test]
fn strict_undefined_names_the_path() {
    let c = ctx(json!({ "inputs": { "backup_dir": "/b", "a": {} } }));
    // (source, message, offset, len, line)
    let cases = [
        (
            "{{ inputs.bakup_dir }}",
            "undefined value `inputs.bakup_dir`",
            3,
            16,
            1,
        ),
        (
            "cp x {{ inputs.bakup_dir }}/y",
            "undefined value `inputs.bakup_dir`",
            8,
            16,
            1,
        ),
        (
            "a\n  {{ inputs.a.b.c }}",
            "undefined value `inputs.a.b`",
            7,
            10,
            2,
        ),
        ("{{ nope }}", "undefined value `nope`", 3, 4, 1),
        (
            "{% for x in inputs.hosts %}{% endfor %}",
            "undefined value `inputs.hosts`",
            12,
            12,
            1,
        ),
        (
            "{{ inputs.nope | upper }}",
            "undefined value `inputs.nope`",
            3,
            11,
            1,
        ),
    ];
    for (src, message, offset, len, line) in cases {
        let err = t().render_text(src, &c).expect_err(src);
        assert_eq!(err.kind, ErrorKind::Undefined, "{src}");
        assert_eq!(err.to_string(), message, "{src}");
        assert_eq!(
            (err.offset, err.len, err.line),
            (Some(offset), len, Some(line)),
            "{src}"
        );
    }
    // The same rule holds in every mode.
    let sql = t().render_sql(
        "SELECT {{ inputs.nope }}",
        &c,
        cairn_template::Dialect::Postgres,
    );
    assert_eq!(sql.expect_err("sql").kind, ErrorKind::Undefined);
    assert_eq!(
        t().render_shell("ls {{ nope }}", &c).expect_err("sh").kind,
        ErrorKind::Undefined
    );
    for (expr, message, offset, len) in [
        ("inputs.nope", "undefined value `inputs.nope`", 0, 11),
        ("  inputs.a.b.c == 1", "undefined value `inputs.a.b`", 2, 10),
        ("{{ inputs.nope }}", "undefined value `inputs.nope`", 3, 11),
    ] {
        let err = t().eval_expr(expr, &c).expect_err(expr);
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Undefined, message),
            "{expr}"
        );
        assert_eq!(
            (err.offset, err.len, err.line),
            (Some(offset), len, Some(1)),
            "{expr}"
        );
    }
    // `default` and `is defined` are how to allow a missing value.
    assert_eq!(
        t().render_text("{{ inputs.nope | default('d') }}", &c)
            .expect("default"),
        "d"
    );
    assert_eq!(
        t().render_text("{{ inputs.nope is defined }}", &c)
            .expect("defined"),
        "false"
    );
}

#[test]
fn syntax_errors_are_located() {
    // (source, message, offset, line)
    let cases = [
        (
            "{{ x",
            "syntax error: unexpected end of input, expected end of variable block",
            3,
            1,
        ),
        (
            "ok\n{% if %}",
            "syntax error: unexpected end of block",
            9,
            2,
        ),
        (
            "a\nb\n{{ a + }}",
            "syntax error: unexpected end of variable block",
            11,
            3,
        ),
    ];
    for (src, message, offset, line) in cases {
        for err in [
            t().render_text(src, &empty()).expect_err(src),
            t().analyze(src, cairn_template::Kind::Text).expect_err(src),
        ] {
            assert_eq!(err.kind, ErrorKind::Syntax, "{src}");
            assert_eq!(err.message, message, "{src}");
            assert_eq!((err.offset, err.line), (Some(offset), Some(line)), "{src}");
        }
    }
    let err = t().eval_expr("inputs.x +", &empty()).expect_err("expr");
    assert_eq!(
        err.message,
        "syntax error: unexpected end of input, expected expression"
    );
    assert_eq!((err.offset, err.line), (Some(9), Some(1)));
}

#[test]
fn unknown_filters_and_functions_at_render() {
    let c = ctx(json!({ "x": "2024-01-01T00:00:00Z" }));
    let err = t()
        .render_text("{{ x | strftme('%Y') }}", &c)
        .expect_err("filter");
    assert_eq!(
        (err.kind.clone(), err.message.as_str()),
        (ErrorKind::UnknownFilter, "unknown filter `strftme`")
    );
    assert_eq!((err.offset, err.len), (Some(7), 7));
    let err = t().render_text("{{ nows() }}", &c).expect_err("function");
    assert_eq!(
        (err.kind.clone(), err.message.as_str()),
        (ErrorKind::UnknownFunction, "unknown function `nows`")
    );
    let err = t().render_text("{{ x is strng }}", &c).expect_err("test");
    assert_eq!(
        (err.kind.clone(), err.message.as_str()),
        (ErrorKind::UnknownTest, "unknown test `strng`")
    );
}

#[test]
fn shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Templates>();
    std::thread::scope(|s| {
        for i in 0..8 {
            s.spawn(move || {
                for j in 0..50 {
                    let c = from_json(&json!({ "i": i, "j": j }));
                    let q = t()
                        .render_sql(
                            "SELECT {{ i }}, {{ j }}",
                            &c,
                            cairn_template::Dialect::Postgres,
                        )
                        .expect("sql");
                    assert_eq!(q.sql, "SELECT $1, $2");
                    assert_eq!(q.params, vec![json!(i), json!(j)]);
                }
            });
        }
    });
}
