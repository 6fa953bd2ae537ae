//! Static analysis: names read, with exact offsets; raw uses; unknown filters.

use cairn_template::{Analysis, ErrorKind, Kind, NameRef};

use crate::t;

fn analyze(src: &str, kind: Kind) -> Analysis {
    t().analyze(src, kind).expect(src)
}

/// `(path, offset, len)` of each name, checking that each offset points at the path as written.
fn names(src: &str, kind: Kind) -> Vec<(String, usize, usize)> {
    analyze(src, kind)
        .names
        .into_iter()
        .map(|NameRef { path, offset, len }| {
            let written = &src[offset..offset + len];
            assert!(
                written.starts_with(&path[0]),
                "{src}: {written:?} for {path:?}"
            );
            (path.join("."), offset, len)
        })
        .collect()
}

/// Expected names: `(path, offset, len)`.
type Expected = &'static [(&'static str, usize, usize)];

fn owned(v: Expected) -> Vec<(String, usize, usize)> {
    v.iter().map(|&(p, o, l)| (p.to_string(), o, l)).collect()
}

#[test]
fn names_with_exact_offsets() {
    let cases: &[(&str, Kind, Expected)] = &[
        (
            "{{ steps.db_ready.outputs.ok }}",
            Kind::Text,
            &[("steps.db_ready.outputs.ok", 3, 25)],
        ),
        (
            "when ok:    {{ steps.db_ready.outputs.ok }}",
            Kind::Text,
            &[("steps.db_ready.outputs.ok", 15, 25)],
        ),
        (
            "pg_dump --file={{ vars.dump }} --dbname={{ targets.db.url }}",
            Kind::Shell,
            &[("vars.dump", 18, 9), ("targets.db.url", 43, 14)],
        ),
        (
            "http://localhost:{{ item }}/health",
            Kind::Text,
            &[("item", 20, 4)],
        ),
        (
            "SELECT count(*) FROM e WHERE actor_id = {{ inputs.actor_id }}",
            Kind::Sql(cairn_template::Dialect::Postgres),
            &[("inputs.actor_id", 43, 15)],
        ),
        (
            "{{ result.rows[0].n }}",
            Kind::Text,
            &[("result.rows.0.n", 3, 16)],
        ),
        (
            "{{ steps['db-ready'].outputs.ok }}",
            Kind::Text,
            &[("steps.db-ready.outputs.ok", 3, 28)],
        ),
        (
            "{{ rows[i].n }}",
            Kind::Text,
            &[("rows", 3, 4), ("i", 8, 1)],
        ),
        (
            "{{ inputs.name.upper() }}",
            Kind::Text,
            &[("inputs.name", 3, 11)],
        ),
        (
            "{{ a }}\n{{ b.c }}\n  {{ a }}",
            Kind::Text,
            &[("a", 3, 1), ("b.c", 11, 3), ("a", 23, 1)],
        ),
        (
            "{{ x if inputs.on else y | default(z) }}",
            Kind::Text,
            &[("x", 3, 1), ("inputs.on", 8, 9), ("y", 23, 1), ("z", 35, 1)],
        ),
        (
            "{{ now() | strftime('%Y') }} {{ range(3) | list }}",
            Kind::Text,
            &[],
        ),
        (
            "steps.q.result.rows | length > 0",
            Kind::Expr,
            &[("steps.q.result.rows", 0, 19)],
        ),
        (
            "  inputs.incremental",
            Kind::Expr,
            &[("inputs.incremental", 2, 18)],
        ),
        (
            "{{ inputs.incremental }}",
            Kind::Expr,
            &[("inputs.incremental", 3, 18)],
        ),
        (
            "inputs.a and not steps.b.status == 'ok'",
            Kind::Expr,
            &[("inputs.a", 0, 8), ("steps.b.status", 17, 14)],
        ),
    ];
    for (src, kind, want) in cases {
        assert_eq!(names(src, *kind), owned(want), "{src}");
    }
}

#[test]
fn names_bound_by_the_template_are_excluded() {
    let cases: &[(&str, Expected)] = &[
        (
            "{% for host in inputs.hosts %}{{ host.name }}:{{ loop.index }} {% endfor %}{{ host }}",
            &[("inputs.hosts", 15, 12), ("host", 78, 4)],
        ),
        (
            "{% set d = vars.dir %}{{ d }}/x {{ d.y }}",
            &[("vars.dir", 11, 8)],
        ),
        ("{% set n = n + 1 %}", &[("n", 11, 1)]),
        (
            "{% if x %}{% set y = 1 %}{% endif %}{{ y }}",
            &[("x", 6, 1)],
        ),
        (
            "{% for k, v in m | items %}{{ k }}={{ v }}{% endfor %}",
            &[("m", 15, 1)],
        ),
        (
            "{% with a = b %}{{ a }}{% endwith %}{{ a }}",
            &[("b", 12, 1), ("a", 39, 1)],
        ),
        (
            "{% macro f(p) %}{{ p }}{{ q }}{% endmacro %}{{ f(1) }}",
            &[("q", 26, 1)],
        ),
        (
            "{% set ns = namespace(c=0) %}{% set ns.c = ns.c + 1 %}{{ ns.c }}",
            &[],
        ),
    ];
    for (src, want) in cases {
        assert_eq!(names(src, Kind::Text), owned(want), "{src}");
    }
}

#[test]
fn raw_uses_and_unknown_names() {
    let src = "rm -rf {{ vars.dir | raw }}/{{ x | trim | raw }} {{ t | strftme('%Y') }} {{ nows() }} {{ x is strng }}";
    let a = analyze(src, Kind::Shell);
    assert_eq!(a.raw_uses, vec![21, 42]);
    assert!(a.raw_uses.iter().all(|&o| &src[o..o + 3] == "raw"));
    assert_eq!(
        a.unknown_filters,
        vec![NameRef {
            path: vec!["strftme".into()],
            offset: 56,
            len: 7
        }]
    );
    assert_eq!(
        a.unknown_functions,
        vec![NameRef {
            path: vec!["nows".into()],
            offset: 76,
            len: 4
        }]
    );
    assert_eq!(
        a.unknown_tests,
        vec![NameRef {
            path: vec!["strng".into()],
            offset: 94,
            len: 5
        }]
    );
    assert_eq!(&src[56..63], "strftme");
    assert_eq!(&src[76..80], "nows");
    assert_eq!(&src[94..99], "strng");
    // The unknown function is not also reported as a name.
    assert_eq!(
        names(src, Kind::Shell)
            .iter()
            .map(|n| n.0.as_str())
            .collect::<Vec<_>>(),
        ["vars.dir", "x", "t", "x"]
    );
}

#[test]
fn every_known_filter_is_known_to_the_analyzer_and_the_engine() {
    let names = t().filter_names();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    for f in [
        "strftime",
        "from_json",
        "to_json",
        "duration",
        "ident",
        "raw",
        "b64encode",
        "b64decode",
        "basename",
        "dirname",
        "default",
        "length",
        "join",
        "lower",
        "upper",
        "int",
        "float",
        "round",
        "tojson",
        "urlencode",
    ] {
        assert!(names.contains(&f), "{f}");
    }
    for f in &names {
        let src = format!("{{{{ x | {f} }}}}");
        assert!(analyze(&src, Kind::Text).unknown_filters.is_empty(), "{f}");
        // The engine knows it too: whatever else fails, it is not an unknown filter.
        let err = t().render_text(&src, &crate::ctx(serde_json::json!({ "x": "a" })));
        assert!(
            !matches!(err, Err(ref e) if e.kind == ErrorKind::UnknownFilter),
            "{f}: {err:?}"
        );
    }
    for f in t().function_names() {
        assert!(
            analyze(&format!("{{{{ {f}() }}}}"), Kind::Text)
                .unknown_functions
                .is_empty(),
            "{f}"
        );
    }
    for test in t().test_names() {
        if test.chars().all(char::is_alphabetic) {
            assert!(
                analyze(&format!("{{{{ 1 is {test} }}}}"), Kind::Text)
                    .unknown_tests
                    .is_empty(),
                "{test}"
            );
        }
    }
}

#[test]
fn analysis_errors_are_located() {
    let err = t()
        .analyze("echo ok\n{{ a | }}", Kind::Shell)
        .expect_err("syntax");
    assert_eq!(err.kind, ErrorKind::Syntax);
    assert_eq!((err.offset, err.line), (Some(15), Some(2)));
    let err = t().analyze("inputs.a ==", Kind::Expr).expect_err("expr");
    assert_eq!((err.kind, err.line), (ErrorKind::Syntax, Some(1)));
}

#[test]
fn if_without_else_and_decisions() {
    let src = "{% for n in vars.names %}{{ n }}{{ ', ' if not loop.last }}{% endfor %}";
    let a = analyze(src, Kind::Shell);
    assert_eq!(
        a.if_without_else
            .iter()
            .map(|r| &src[r.clone()])
            .collect::<Vec<_>>(),
        ["', ' if not loop.last"]
    );
    assert!(
        analyze("{{ 'a' if x else 'b' }}", Kind::Text)
            .if_without_else
            .is_empty()
    );
    // What decides a branch or loop: free names only, through `set` and loop variables.
    let src = "{% set n = steps.a.outputs.n %}{% for r in steps.q.result.rows %}\
{% if r.ok and n > 1 %}{{ inputs.x }}{% endif %}{% endfor %}{{ 1 if env.Y else 2 }}";
    let decided: Vec<String> = analyze(src, Kind::Text)
        .decisions
        .iter()
        .map(|n| n.path.join("."))
        .collect();
    assert_eq!(
        decided,
        ["steps.a.outputs.n", "steps.q.result.rows", "env.Y"],
        "{src}"
    );
}
