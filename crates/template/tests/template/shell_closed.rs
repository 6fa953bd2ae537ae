//! The shell scanner fails closed: each construct it does not model refuses every hole of
//! the script, located at the hole and naming where the construct starts; commands and argv
//! that hand text to a shell take a value only as a whole word or element. The values are the
//! classic ones: `PATH[$(touch PWN)]` (evaluated by arithmetic) and `x; touch PWN` (parsed as
//! script); a canary file `PWN` must never appear.

use cairn_template::{ArgvRefusal, Construct, ErrorKind, Kind, ShellRefusal, argv_refusals};
use serde_json::json;

use crate::shell_contexts::bash;
use crate::{ctx, t};

const VALUES: &[&str] = &["PATH[$(touch PWN)]", "x; touch PWN"];

/// What a refused hole must say.
enum Want {
    /// An unmodelled construct that starts at the first occurrence of this text.
    Unmodelled(Construct, &'static str),
    Is(ShellRefusal),
}

/// `src` is refused by the analysis (every hole, each located at its `v`, with the kind
/// wanted) and by rendering, whatever the value.
fn assert_refused(src: &str, want: Want) {
    let analysis = t().analyze(src, Kind::Shell).expect(src);
    let holes = src.matches("{{ v }}").count();
    assert_eq!(
        analysis.refused.len(),
        holes,
        "{src}: {:?}",
        analysis.refused
    );
    for r in &analysis.refused {
        assert_eq!(&src[r.offset..r.offset + r.len], "v", "{src}");
        match want {
            Want::Unmodelled(construct, starts) => {
                let at = src.find(starts).expect("the construct's text");
                assert_eq!(
                    r.shell,
                    Some(ShellRefusal::Unmodelled { construct, at }),
                    "{src}"
                );
                assert_eq!(r.construct_at, Some(at), "{src}");
                assert!(r.help.contains("env:"), "{src}: {}", r.help);
            }
            Want::Is(why) => assert_eq!(r.shell, Some(why), "{src}"),
        }
    }
    for v in VALUES {
        let err = t()
            .render_shell(src, &ctx(json!({ "v": v })))
            .expect_err(src);
        assert_eq!(err.kind, ErrorKind::InvalidValue, "{src}");
    }
}

#[test]
fn case_arm_with_arithmetic_is_refused() {
    assert_refused(
        "case x in x) (( n = {{ v }} ));; esac",
        Want::Unmodelled(Construct::Case, "case"),
    );
}

#[test]
fn case_arm_with_dbracket_comparison_is_refused() {
    assert_refused(
        "case x in x) [[ {{ v }} -eq 1 ]];; esac",
        Want::Unmodelled(Construct::Case, "case"),
    );
}

#[test]
fn case_arm_with_let_is_refused() {
    assert_refused(
        "case x in x) let n={{ v }};; esac",
        Want::Unmodelled(Construct::Case, "case"),
    );
    // A hole after the statement is refused for it too.
    assert_refused(
        "case x in x) let n=1;; esac\necho {{ v }}",
        Want::Unmodelled(Construct::Case, "case"),
    );
}

#[test]
fn let_after_command_or_builtin_is_refused() {
    for src in [
        "command let n={{ v }}",
        "builtin let n={{ v }}",
        "X=1 let n={{ v }}",
    ] {
        assert_refused(src, Want::Is(ShellRefusal::Builtin("let")));
    }
    assert_refused(
        "command let n=1; echo {{ v }}",
        Want::Unmodelled(Construct::Let, "let"),
    );
}

#[test]
fn declare_i_after_command_is_refused() {
    assert_refused(
        "command declare -i n={{ v }}",
        Want::Is(ShellRefusal::Builtin("declare")),
    );
    assert_refused(
        "command declare -i n\nn={{ v }}",
        Want::Unmodelled(Construct::IntegerAttribute, "-i"),
    );
}

#[test]
fn compound_array_assignment_is_refused() {
    assert_refused(
        "a=([{{ v }}]=1)",
        Want::Unmodelled(Construct::CompoundAssignment, "("),
    );
}

#[test]
fn subscript_inside_quoted_expansion_is_refused() {
    assert_refused(
        r#"echo "${a["{{ v }}"]}""#,
        Want::Is(ShellRefusal::ParameterExpansion),
    );
    assert_refused(
        "echo \"${a[0]}\" {{ v }}",
        Want::Unmodelled(Construct::ExpansionOperator, "["),
    );
}

#[test]
fn substring_offsets_are_refused() {
    for src in [r#"echo "${s:"{{ v }}"}""#, r#"echo "${s:0:"{{ v }}"}""#] {
        assert_refused(src, Want::Is(ShellRefusal::ParameterExpansion));
    }
    assert_refused(
        "echo \"${s:1}\" {{ v }}",
        Want::Unmodelled(Construct::ExpansionOperator, ":"),
    );
}

#[test]
fn dollar_bracket_in_an_unquoted_heredoc_is_refused() {
    assert_refused(
        "cat <<EOF\n$[ {{ v }} ]\nEOF\n",
        Want::Unmodelled(Construct::DollarBracket, "$["),
    );
}

#[test]
fn comment_in_backticks_is_refused() {
    assert_refused(
        "echo `true # c` $(( {{ v }} ))",
        Want::Unmodelled(Construct::BacktickComment, "#"),
    );
}

#[test]
fn heredoc_inside_command_substitution_is_refused() {
    assert_refused(
        "x=$(cat <<EOF\nbody\nEOF)\necho {{ v }}",
        Want::Unmodelled(Construct::HeredocInSubstitution, "<<"),
    );
}

#[test]
fn arithmetic_reading_a_variable_refuses_earlier_holes_too() {
    assert_refused(
        "n={{ v }}\necho $(( n + 1 ))",
        Want::Unmodelled(Construct::ArithmeticReadsVariable, "n + 1"),
    );
    assert_refused(
        "n={{ v }}\n[[ $n -gt 1 ]] && echo big",
        Want::Unmodelled(Construct::ArithmeticReadsVariable, "[["),
    );
}

#[test]
fn text_handed_to_a_shell_takes_whole_words_only() {
    for (src, what) in [
        ("bash -c \"echo {{ v }}\"", "bash"),
        ("env X=1 bash -c \"echo {{ v }}\"", "env"),
        ("timeout 5 sh -c \"echo {{ v }}\"", "timeout"),
        ("sudo sh -c \"echo {{ v }}\"", "sudo"),
        ("printf '%s\\n' {{ v }} | sh", "sh"),
        ("bash <(echo {{ v }})", "bash"),
        ("sh <<EOF\necho {{ v }}\nEOF\n", "sh"),
    ] {
        assert_refused(src, Want::Is(ShellRefusal::RunsShell(what)));
    }
    for (src, name) in [
        ("eval {{ v }}", "eval"),
        ("read {{ v }}", "read"),
        ("unset {{ v }}", "unset"),
        ("printf -v {{ v }} x", "printf -v"),
        ("[ -v {{ v }} ]", "["),
        ("export {{ v }}", "export"),
    ] {
        assert_refused(src, Want::Is(ShellRefusal::Builtin(name)));
    }
    assert_refused("$cmd {{ v }}", Want::Is(ShellRefusal::UnknownCommand));
}

#[test]
fn unclosed_quotes_refuse_every_hole() {
    assert_refused(
        "echo {{ v }} \"open",
        Want::Unmodelled(Construct::Unclosed, "\"open"),
    );
}

/// What the refusals above leave open runs in real bash: the value arrives byte for byte and
/// nothing of it runs.
#[test]
fn accepted_neighbours_run_as_data_in_bash() {
    for v in VALUES {
        let c = ctx(json!({ "v": v, "n": 21 }));
        for (src, want) in [
            ("sh -c 'printf %s \"$1\"' sh {{ v }}", v.to_string()),
            ("env X=1 printf %s {{ v }}", v.to_string()),
            ("export X={{ v }}; printf %s \"$X\"", v.to_string()),
            ("printf %s {{ v }} | cat", v.to_string()),
            (
                "printf %s \"$(( 2 * {{ n | int }} ))-{{ v }}\"",
                format!("42-{v}"),
            ),
            ("cat <<EOF\n{{ v }} $(echo hi)\nEOF", format!("{v} hi\n")),
            ("x=$(printf %s {{ v }}); printf %s \"$x\"", v.to_string()),
        ] {
            let sh = t().render_shell(src, &c).expect(src);
            assert!(t().analyze(src, Kind::Shell).expect(src).refused.is_empty());
            assert_eq!(bash(&sh), want, "{src}");
        }
    }
}

fn argv(items: &[&str]) -> Vec<ArgvRefusal> {
    let script_at = cairn_template::shell_script_index(items);
    let whole = |i: usize| {
        let s = items[i].trim();
        s.starts_with("{{") && s.ends_with("}}") && s.matches("{{").count() == 1
    };
    argv_refusals(items, script_at, whole)
}

#[test]
fn argv_through_wrappers_takes_whole_elements_only() {
    let cases: &[(&[&str], usize, &str)] = &[
        (&["env", "X=1", "bash", "-c", "echo {{ v }}"], 4, "env"),
        (
            &["timeout", "5", "bash", "-c", "echo {{ v }}"],
            4,
            "timeout",
        ),
        (&["nice", "bash", "-c", "echo {{ v }}"], 3, "nice"),
        (&["su", "-c", "echo {{ v }}", "root"], 2, "su"),
        (&["xargs", "sh", "-c", "echo {{ v }}"], 3, "xargs"),
        (&["flock", "F", "-c", "echo {{ v }}"], 3, "flock"),
        (&["/usr/bin/ssh", "host", "echo {{ v }}"], 2, "ssh"),
        (&["mytool", "-c", "echo {{ v }}"], 2, "-c"),
        (&["{{ prog }}", "x", "a{{ v }}"], 2, "a templated program"),
    ];
    for (items, element, what) in cases {
        let refused = argv(items);
        assert_eq!(refused.len(), 1, "{items:?}: {refused:?}");
        assert_eq!(refused[0].element, *element, "{items:?}");
        assert_eq!(refused[0].what, *what, "{items:?}");
    }
    // Whole elements pass, and so does a known shell's own script (scanned as a script).
    for items in [
        &["env", "X=1", "bash", "-c", "echo \"$1\"", "bash", "{{ v }}"][..],
        &["sh", "-c", "eval \"$1\"", "sh", "{{ v }}"],
        &["bash", "-c", "echo {{ v }}"],
        &["curl", "https://x/{{ v }}"],
    ] {
        assert_eq!(argv(items), vec![], "{items:?}");
    }
}
