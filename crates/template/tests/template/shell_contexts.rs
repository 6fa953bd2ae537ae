//! Shell holes by context: each value becomes a reference to an environment variable, placed
//! by the context scanner; where no reference can be safe the hole is refused, by `analyze`
//! (for `cairn validate`) and by `render_shell` alike. Every accepted context is run in real
//! bash with hostile values: nothing of a value ever runs, and it arrives byte for byte.

use std::process::Command;

use cairn_template::{ErrorKind, Kind, ShellScript, Value, shell_script_index};
use serde_json::json;

use crate::{ctx, t};

/// (template, rendered script): `v` is a string, `n` the integer 41.
const ACCEPTED: &[(&str, &str)] = &[
    ("echo {{ v }}", r#"echo "$CAIRN_V1""#),
    ("echo --opt={{ v }}x", r#"echo --opt="$CAIRN_V1"x"#),
    (r#"echo "a {{ v }} b""#, r#"echo "a ${CAIRN_V1} b""#),
    ("echo '{' {{ v }}", r#"echo '{' "$CAIRN_V1""#),
    (
        "cat <<EOF\nline {{ v }}\nEOF\necho {{ v }}",
        "cat <<EOF\nline ${CAIRN_V1}\nEOF\necho \"$CAIRN_V1\"",
    ),
    (
        "cat <<-EOF\n\tline {{ v }}\n\tEOF\n",
        "cat <<-EOF\n\tline ${CAIRN_V1}\n\tEOF\n",
    ),
    (
        "cat <<'EOF'\nliteral $x\nEOF\necho {{ v }}",
        "cat <<'EOF'\nliteral $x\nEOF\necho \"$CAIRN_V1\"",
    ),
    ("echo $(echo {{ v }})", r#"echo $(echo "$CAIRN_V1")"#),
    (r#"echo "$(echo {{ v }})""#, r#"echo "$(echo "$CAIRN_V1")""#),
    ("echo `echo {{ v }}`", r#"echo `echo "$CAIRN_V1"`"#),
    ("true # {{ v }}", r#"true # "$CAIRN_V1""#),
    ("x={{ v }}; echo \"$x\"", r#"x="$CAIRN_V1"; echo "$x""#),
    ("cat <<< {{ v }}", r#"cat <<< "$CAIRN_V1""#),
    ("export X={{ v }}", r#"export X="$CAIRN_V1""#),
    ("sudo -u {{ v }} true", r#"sudo -u "$CAIRN_V1" true"#),
    (
        "sh -c 'echo \"$1\"' sh {{ v }}",
        r#"sh -c 'echo "$1"' sh "$CAIRN_V1""#,
    ),
    ("{{ v }} --version", r#""$CAIRN_V1" --version"#),
    (
        "echo $(( 2 * {{ n | int }} )) {{ v }}",
        r#"echo $(( 2 * ${CAIRN_V1} )) "$CAIRN_V2""#,
    ),
    (
        "[[ {{ v }} == x ]] || true",
        r#"[[ "$CAIRN_V1" == x ]] || true"#,
    ),
    (
        "echo $(( {{ n | int }} + 1 ))",
        "echo $(( ${CAIRN_V1} + 1 ))",
    ),
    ("(( {{ n | int }} > 1 ))", "(( ${CAIRN_V1} > 1 ))"),
    ("[[ {{ n | int }} -eq 41 ]]", "[[ ${CAIRN_V1} -eq 41 ]]"),
];

/// (template, what the message says).
const REFUSED: &[(&str, &str)] = &[
    ("echo '{{ v }}'", "inside single quotes"),
    ("echo 'a'\"b\"'{{ v }}'", "inside single quotes"),
    ("echo $'{{ v }}'", "inside single quotes"),
    ("cat <<'EOF'\n{{ v }}\nEOF\n", "quoted delimiter"),
    ("cat <<\"EOF\"\n{{ v }}\nEOF\n", "quoted delimiter"),
    ("cat <<\\EOF\n{{ v }}\nEOF\n", "quoted delimiter"),
    (
        "cat <<EOF\n$(echo {{ v }})\nEOF\n",
        "an expansion in a here-document",
    ),
    ("cat <<{{ v }}\nx\n", "delimiter"),
    ("echo $(( {{ v }} ))", "arithmetic"),
    ("echo $(( $(echo {{ v }}) ))", "arithmetic"),
    ("echo $[ {{ v }} ]", "arithmetic"),
    ("(( {{ v }} ))", "arithmetic"),
    ("if (( {{ v }} > 1 )); then :; fi", "arithmetic"),
    (
        "for (( i = 0; i < {{ v }}; i++ )); do :; done",
        "arithmetic",
    ),
    ("let x={{ v }}", "arithmetic"),
    ("[[ {{ v }} -eq 1 ]]", "arithmetic"),
    ("[[ 1 -lt \"{{ v }}\" ]]", "arithmetic"),
    ("[[ ( {{ v }} -ge 1 ) ]]", "arithmetic"),
    ("a[{{ v }}]=1", "arithmetic"),
    ("declare -i x={{ v }}", "arithmetic"),
    ("local -ri x={{ v }}", "arithmetic"),
    ("echo ${x:-{{ v }}}", "${...} parameter expansion"),
    ("echo \\{{ v }}", "right after"),
    ("echo ${{ v }}", "right after"),
    ("echo \"\\{{ v }}\"", "right after"),
];

fn context() -> Value {
    ctx(json!({ "v": "x'; touch PWNED #", "n": 41 }))
}

#[test]
fn accepted_holes_render_as_references() {
    let c = context();
    for &(src, want) in ACCEPTED {
        let sh = t().render_shell(src, &c).expect(src);
        assert_eq!(sh.script, want, "{src}");
        assert!(!sh.vars.is_empty(), "{src}");
        assert!(
            !sh.script.contains("PWNED"),
            "{src}: a value is in the script"
        );
        let analysis = t().analyze(src, Kind::Shell).expect(src);
        assert_eq!(analysis.refused, vec![], "{src}");
    }
}

#[test]
fn refused_holes_are_refused_by_analysis_and_rendering() {
    let c = context();
    for &(src, says) in REFUSED {
        let err = t().render_shell(src, &c).expect_err(src);
        assert_eq!(err.kind, ErrorKind::InvalidValue, "{src}");
        assert!(err.message.contains(says), "{src}: {}", err.message);
        let analysis = t().analyze(src, Kind::Shell).expect(src);
        assert_eq!(analysis.refused.len(), 1, "{src}: {:?}", analysis.refused);
        let r = &analysis.refused[0];
        assert!(r.message.contains(says), "{src}: {}", r.message);
        assert_eq!(&src[r.offset..r.offset + r.len], "v", "{src}");
        assert!(!r.help.is_empty());
    }
}

#[test]
fn arithmetic_takes_integers_only() {
    // `| int` is accepted by the analysis; `inputs.n` is left to the caller, who knows types.
    let a = t()
        .analyze(
            "echo $(( {{ inputs.n | int }} + {{ inputs.n }} ))",
            Kind::Shell,
        )
        .expect("analyze");
    assert_eq!(a.refused.len(), 1);
    assert_eq!(a.refused[0].unless_int_input.as_deref(), Some("n"));
    // At run time the value decides: an integer goes, anything else is refused.
    let src = "echo $(( {{ x }} + 1 ))";
    for ok in [json!(1), json!(-7), json!(9_007_199_254_740_993_i64)] {
        let sh = t()
            .render_shell(src, &ctx(json!({ "x": ok })))
            .expect("int");
        assert_eq!(sh.vars[0].1, ok.to_string());
    }
    for bad in [
        json!("1"),
        json!("a[$(touch PWNED)]"),
        json!(1.5),
        json!(true),
        json!([1]),
        json!(null),
    ] {
        let err = t()
            .render_shell(src, &ctx(json!({ "x": bad })))
            .expect_err("not an int");
        assert!(err.message.contains("not an integer"), "{}", err.message);
    }
}

#[test]
fn lists_are_one_word_per_item_in_a_word_and_joined_in_quotes() {
    let c = ctx(
        json!({ "files": ["a b", "c'd", "$(id)", 7, true], "nothing": [], "m": { "k": "v w" } }),
    );
    let sh = t()
        .render_shell("printf '[%s]' {{ files }}", &c)
        .expect("list");
    assert_eq!(
        sh.script,
        r#"printf '[%s]' "$CAIRN_V1" "$CAIRN_V2" "$CAIRN_V3" "$CAIRN_V4" "$CAIRN_V5""#
    );
    assert_eq!(bash(&sh), "[a b][c'd][$(id)][7][true]");
    let sh = t()
        .render_shell("printf '[%s]' \"{{ files }}\"", &c)
        .expect("quoted list");
    assert_eq!(bash(&sh), "[a b c'd $(id) 7 true]");
    let sh = t()
        .render_shell("printf '[%s]' x {{ nothing }}", &c)
        .expect("empty");
    assert_eq!(sh.script, "printf '[%s]' x ");
    let sh = t().render_shell("printf %s {{ m }}", &c).expect("map");
    assert_eq!(bash(&sh), r#"{"k":"v w"}"#);
}

#[test]
fn a_value_larger_than_one_variable_is_split_and_joined() {
    let big: String = "0123456789ü'\"$(touch PWNED)`\n"
        .chars()
        .cycle()
        .take(1 << 20)
        .collect();
    let c = ctx(json!({ "v": big }));
    for src in [
        "printf %s {{ v }}",
        "printf %s \"{{ v }}\"",
        "cat <<EOF\n{{ v }}\nEOF",
    ] {
        let sh = t().render_shell(src, &c).expect(src);
        assert!(sh.vars.len() > 10, "{src}: {} variables", sh.vars.len());
        assert!(
            sh.vars
                .iter()
                .all(|(_, v)| v.len() <= cairn_template::CHUNK)
        );
        let want = if src.starts_with("cat") {
            format!("{big}\n")
        } else {
            big.clone()
        };
        assert!(bash(&sh) == want, "{src}: the value did not arrive whole");
    }
}

#[test]
fn nul_is_refused_in_every_context() {
    let c = ctx(json!({ "v": "a\u{0}b", "list": ["ok", "\u{0}"] }));
    for src in ["echo {{ v }}", "echo \"{{ v }}\"", "echo {{ list }}"] {
        let err = t().render_shell(src, &c).expect_err(src);
        assert_eq!(err.kind, ErrorKind::InvalidValue);
        assert!(err.message.contains("NUL byte"), "{}", err.message);
    }
}

#[test]
fn raw_is_still_verbatim_script_text() {
    let c = ctx(json!({ "flags": ["-l", "-a"], "expr": "$((1+2))", "dir": "/tmp/x y" }));
    let sh = t()
        .render_shell("echo {{ expr | raw }} {{ flags | raw }} {{ dir }}", &c)
        .expect("raw");
    assert_eq!(sh.script, r#"echo $((1+2)) -l -a "$CAIRN_V1""#);
    assert_eq!(bash(&sh), "3 -l -a /tmp/x y\n");
}

#[test]
fn known_shells_with_dash_c_are_found_in_argv() {
    let cases: &[(&[&str], Option<usize>)] = &[
        (&["bash", "-c", "s"], Some(2)),
        (&["/bin/sh", "-c", "s", "name", "arg"], Some(2)),
        (&["/usr/bin/zsh", "-ec", "s"], Some(2)),
        (&["dash", "-e", "-c", "s"], Some(3)),
        (&["bash", "-euo", "pipefail", "-c", "s"], Some(4)),
        (&["bash", "-o", "pipefail", "-c", "s"], Some(4)),
        (&["bash", "--norc", "-c", "s"], Some(3)),
        (&["ksh", "-c", "--", "s"], Some(3)),
        (&["bash", "script.sh", "-c"], None),
        (&["bash", "-c"], None),
        (&["python3", "-c", "s"], None),
        (&["bashful", "-c", "s"], None),
        (&["bash", "-x", "s"], None),
    ];
    for (argv, want) in cases {
        assert_eq!(shell_script_index(argv), *want, "{argv:?}");
    }
}

/// Runs a rendered script in real bash with its variables, in a temp dir; returns stdout and
/// asserts that no canary file appeared.
pub fn bash(sh: &ShellScript) -> String {
    let dir = tempfile_dir();
    let out = Command::new("/bin/bash")
        .args(["-euo", "pipefail", "-c", &sh.script])
        .envs(sh.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(&dir)
        .output()
        .expect("bash runs");
    let pwned = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "bash failed on {:?}: {}",
        sh.script,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pwned, 0, "a value ran a command in {:?}", sh.script);
    String::from_utf8(out.stdout).expect("utf-8")
}

fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cairn-shell-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
