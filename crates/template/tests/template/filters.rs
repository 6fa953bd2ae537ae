//! Every Cairn filter and function, and the builtins runbooks lean on.

use cairn_template::{ErrorKind, Value};
use serde_json::json;

use crate::{ctx, t};

fn ctx_all() -> Value {
    ctx(json!({
        "ts": "2024-03-05T06:07:08Z",
        "ts_paris": "2024-03-05T06:07:08+01:00",
        "epoch": 1_700_000_000,
        "epoch_f": 1.5,
        "doc": "{\"a\": [1, 2], \"b\": {\"c\": null}}",
        "m": { "z": 1, "a": [true, null], "s": "x\"y" },
        "s": "héllo wörld",
        "path": "/backups/memory/postgres.dump",
        "list": ["b", "a", "c"],
        "n": 3.7,
        "flag": true,
    }))
}

fn render(src: &str) -> String {
    t().render_text(src, &ctx_all()).expect(src)
}

fn value(src: &str) -> serde_json::Value {
    cairn_template::to_json(&t().render_value(src, &ctx_all()).expect(src)).expect(src)
}

fn refused(src: &str) -> String {
    let err = t().render_text(src, &ctx_all()).expect_err(src);
    assert_eq!(err.kind, ErrorKind::InvalidValue, "{src}: {err}");
    err.message
}

#[test]
fn strftime() {
    assert_eq!(
        render("{{ ts | strftime('%Y%m%d_%H%M%S') }}"),
        "20240305_060708"
    );
    assert_eq!(
        render("{{ ts_paris | strftime('%H:%M %z') }}"),
        "06:07 +0100"
    );
    assert_eq!(
        render("{{ epoch | strftime('%Y-%m-%dT%H:%M:%SZ') }}"),
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(render("{{ epoch_f | strftime('%S.%3f') }}"), "01.500");
    assert_eq!(render("{{ '0' | strftime('%Y') }}"), "1970");
    assert_eq!(render("{{ now() | strftime('%Y') }}").len(), 4);
    assert_eq!(
        refused("{{ ts | strftime('%Q') }}"),
        "strftime: invalid format `%Q`"
    );
    assert_eq!(
        refused("{{ 'yesterday' | strftime('%Y') }}"),
        "strftime: `yesterday` is neither an RFC 3339 time nor unix seconds"
    );
}

#[test]
fn now_is_rfc3339_utc() {
    let now = render("{{ now() }}");
    assert!(now.ends_with('Z'), "{now}");
    assert!(chrono::DateTime::parse_from_rfc3339(&now).is_ok(), "{now}");
}

#[test]
fn json_filters() {
    assert_eq!(value("{{ (doc | from_json).a[1] }}"), json!(2));
    assert_eq!(
        value("{{ doc | from_json }}"),
        json!({ "a": [1, 2], "b": { "c": null } })
    );
    assert_eq!(
        render("{{ m | to_json }}"),
        r#"{"z":1,"a":[true,null],"s":"x\"y"}"#
    );
    // minijinja's own `tojson` puts a space after separators.
    assert_eq!(
        render("{{ m | tojson }}"),
        r#"{"z": 1, "a": [true, null], "s": "x\"y"}"#
    );
    assert_eq!(
        value("{{ m | to_json | from_json }}"),
        json!({ "z": 1, "a": [true, null], "s": "x\"y" })
    );
    assert!(refused("{{ 'nope{' | from_json }}").starts_with("from_json: invalid JSON"));
}

#[test]
fn duration() {
    assert_eq!(value("{{ '2m' | duration }}"), json!(120));
    assert_eq!(value("{{ '1h30m' | duration }}"), json!(5400));
    assert_eq!(value("{{ '90s' | duration }}"), json!(90));
    assert_eq!(value("{{ '1500ms' | duration }}"), json!(1.5));
    assert_eq!(value("{{ 45 | duration }}"), json!(45));
    assert_eq!(value("{{ '2m' | duration > 60 }}"), json!(true));
    assert!(refused("{{ 'soon' | duration }}").starts_with("duration: `soon`"));
}

#[test]
fn ident_and_raw() {
    assert_eq!(render("{{ 'users' | ident }}"), "\"users\"");
    assert_eq!(render("{{ 'a\"b' | ident }}"), "\"a\"\"b\"");
    assert_eq!(render("{{ 'users' | ident | ident }}"), "\"users\"");
    assert_eq!(render("{{ s | raw }}"), "héllo wörld");
    assert_eq!(value("{{ m.z | raw }}"), json!(1));
    assert_eq!(
        refused("{{ '' | ident }}"),
        "ident: an SQL identifier cannot be empty"
    );
}

#[test]
fn base64_and_urlencode() {
    assert_eq!(render("{{ 'hello' | b64encode }}"), "aGVsbG8=");
    assert_eq!(render("{{ s | b64encode | b64decode }}"), "héllo wörld");
    assert_eq!(render("{{ 'aGVsbG8' | b64decode }}"), "hello");
    assert_eq!(render("{{ 'aGk_' | b64decode }}"), "hi?");
    assert_eq!(
        refused("{{ '***' | b64decode }}"),
        "b64decode: `***` is not base64"
    );
    assert_eq!(
        refused("{{ '/w==' | b64decode }}"),
        "b64decode: the decoded bytes are not UTF-8 text"
    );
    assert_eq!(render("{{ 'a b&c/d' | urlencode }}"), "a%20b%26c/d");
}

#[test]
fn basename_and_dirname() {
    let cases = [
        (
            "/backups/memory/postgres.dump",
            "postgres.dump",
            "/backups/memory",
        ),
        ("/a/b/", "b", "/a"),
        ("file", "file", "."),
        ("/file", "file", "/"),
        ("/", "/", "/"),
        ("a//b", "b", "a"),
        ("", "", "."),
    ];
    for (path, base, dir) in cases {
        let c = ctx(json!({ "p": path }));
        assert_eq!(
            t().render_text("{{ p | basename }}", &c).expect(path),
            base,
            "basename {path:?}"
        );
        assert_eq!(
            t().render_text("{{ p | dirname }}", &c).expect(path),
            dir,
            "dirname {path:?}"
        );
    }
}

#[test]
fn builtins_runbooks_use() {
    let cases = [
        ("{{ missing | default('x') }}", "x"),
        ("{{ list | length }}", "3"),
        ("{{ list | sort | join(',') }}", "a,b,c"),
        ("{{ s | upper }}", "HÉLLO WÖRLD"),
        ("{{ 'ABC' | lower }}", "abc"),
        ("{{ n | int }}", "3"),
        ("{{ '2.5' | float }}", "2.5"),
        ("{{ n | round }}", "4.0"),
        ("{{ list | first }}", "b"),
        ("{{ m | tojson(indent=2) | length > 10 }}", "true"),
        ("{{ 'a-b' | replace('-', '_') }}", "a_b"),
        ("{{ flag | string }}", "true"),
    ];
    for (src, want) in cases {
        let got = t().render_text(src, &ctx_all()).expect(src);
        assert_eq!(got, want, "{src}");
    }
    let err = t()
        .render_text("{{ s | int }}", &ctx_all())
        .expect_err("int");
    assert!(err.message.starts_with("int: "), "{}", err.message);
}

/// Filters whose output grows with an argument take bounded arguments: `indent(10**12)`
/// aborted the process. Repetition with `*` is bounded by minijinja itself.
#[test]
fn allocating_filters_take_bounded_arguments() {
    assert_eq!(
        refused("{{ s | indent(1000000000000) }}"),
        "indent: the width must be at most 1000"
    );
    assert_eq!(
        refused("{{ s | indent(width=1001) }}"),
        "indent: the width must be at most 1000"
    );
    assert_eq!(render("{{ 'a\nb' | indent(2) }}"), "a\n  b");
    assert_eq!(
        render("{{ 'a\nb' | indent(1000) }}").len(),
        "a\n".len() + 1000 + 1
    );
    for spec in ["%1000000000000s", "%-5000d", "%.99999f", "%1.2000f"] {
        assert_eq!(
            refused(&format!("{{{{ '{spec}' | format(1) }}}}")),
            "format: widths and precisions must be at most 1000",
            "{spec}"
        );
    }
    assert_eq!(
        render("{{ '%5s|%%|%-3d|%.2f' | format('a', 1, 2.5) }}"),
        "    a|%|1  |2.50"
    );
    assert_eq!(render("{{ '%s 123456789' | format('n') }}"), "n 123456789");
    let err = t()
        .render_text("{{ 'x' * 1000000000000 }}", &ctx_all())
        .expect_err("a huge repetition");
    assert!(err.message.contains("too large"), "{}", err.message);
}
