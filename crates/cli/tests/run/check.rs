//! `cairn check` as a monitoring plugin, its output parsed by the grammar of the Nagios plugin
//! guidelines: `SERVICE STATUS - text | perfdata` on the first line, then long text; perfdata
//! `'label'=value[UOM];[warn];[crit];[min];[max]` separated by spaces; exit 0/1/2/3.

use super::common::{PG_URL, Sandbox};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One plugin answer, parsed by the guidelines' grammar (panics on anything else).
#[derive(Debug)]
struct Answer {
    code: i32,
    state: String,
    text: String,
    perf: Vec<(String, String, String, Vec<String>)>,
    long: Vec<String>,
}

fn parse(code: i32, stdout: &str) -> Answer {
    let mut lines = stdout.lines();
    let first = lines.next().expect("a status line");
    let (status, perfdata) = match first.split_once(" | ") {
        Some((s, p)) => (s, p),
        None => (first, ""),
    };
    assert!(!status.contains('|'), "a second | in {first:?}");
    let rest = status.strip_prefix("CAIRN ").expect("service name first");
    let (state, text) = rest.split_once(" - ").expect("STATE - text");
    let want = match code {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        3 => "UNKNOWN",
        other => panic!("exit {other} is not a plugin code"),
    };
    assert_eq!(state, want, "state word and exit code disagree: {first}");
    let mut perf = Vec::new();
    let mut rest = perfdata.trim();
    while !rest.is_empty() {
        // 'label' (quotes doubled inside) or a bare label, then =
        let (label, after) = if let Some(q) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut chars = q.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        label.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    label.push(c);
                }
            }
            (label, &q[end.expect("closing quote")..])
        } else {
            let eq = rest.find('=').expect("=");
            (rest[..eq].to_string(), &rest[eq..])
        };
        let after = after.strip_prefix('=').expect("= after the label");
        let item_end = after.find(' ').unwrap_or(after.len());
        let item = &after[..item_end];
        let mut fields = item.split(';');
        let value_uom = fields.next().expect("value");
        let split = value_uom
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(value_uom.len());
        let (value, uom) = value_uom.split_at(split);
        assert!(
            value == "U" || uom == "U" && value.is_empty() || value.parse::<f64>().is_ok(),
            "value {value_uom:?}"
        );
        let (value, uom) = if uom == "U" { ("U", "") } else { (value, uom) };
        assert!(
            ["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"].contains(&uom),
            "unit of measure {uom:?} is not one of the guidelines'"
        );
        let thresholds: Vec<String> = fields.map(str::to_string).collect();
        assert!(thresholds.len() <= 4, "{item}");
        for t in thresholds.iter().take(2).filter(|t| !t.is_empty()) {
            let t = t.strip_prefix('@').unwrap_or(t);
            let (a, b) = t.split_once(':').unwrap_or(("0", t));
            assert!(a == "~" || a.is_empty() || a.parse::<f64>().is_ok(), "{t}");
            assert!(b.is_empty() || b.parse::<f64>().is_ok(), "{t}");
        }
        perf.push((label, value.to_string(), uom.to_string(), thresholds));
        rest = after[item_end..].trim_start();
    }
    Answer {
        code,
        state: state.to_string(),
        text: text.to_string(),
        perf,
        long: lines.map(str::to_string).collect(),
    }
}

fn check(sb: &Sandbox, args: &[&str]) -> Answer {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .arg("check")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn check");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    parse(out.status.code().unwrap_or(-1), &stdout)
}

fn health(pg: &str, warning: &str) -> String {
    format!(
        r#"
cairn: 1
name: db-health
targets:
  db: {{ postgres: "{pg}" }}
steps:
  - id: connections
    sql: {{ target: db, query: "SELECT 7 AS n" }}
    outputs: {{ n: "{{{{ result.rows[0].n }}}}" }}
  - id: pool
    check: {{ value: "{{{{ steps.connections.outputs.n }}}}", warning: "{warning}", critical: ">= 100", unit: conn }}
  - id: lag
    needs: []
    check: {{ value: "0.25", warning: "> 1", unit: s }}
"#
    )
}

#[test]
fn ok_warning_and_critical_against_a_real_database() {
    let sb = Sandbox::new();
    sb.write("ok.yaml", health(PG_URL, "> 50"));
    let a = check(&sb, &["ok.yaml"]);
    assert_eq!((a.code, a.state.as_str()), (0, "OK"), "{a:?}");
    assert_eq!(a.text, "db-health: 2 checks ok");
    assert_eq!(
        a.perf,
        vec![
            (
                "pool".to_string(),
                "7".to_string(),
                String::new(),
                vec!["~:50".to_string(), "@100:".to_string()]
            ),
            (
                "lag".to_string(),
                "0.25".to_string(),
                "s".to_string(),
                vec!["~:1".to_string()]
            ),
        ]
    );
    assert_eq!(a.long, vec!["pool: ok 7 conn", "lag: ok 0.25 s"]);

    sb.write("warn.yaml", health(PG_URL, "> 5"));
    let a = check(&sb, &["warn.yaml"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert_eq!(a.text, "db-health: pool: warning 7 conn");

    sb.write("crit.yaml", health(PG_URL, "> 5").replace(">= 100", ">= 7"));
    let a = check(&sb, &["crit.yaml"]);
    assert_eq!(a.code, 2, "{a:?}");
    assert_eq!(a.text, "db-health: pool: critical 7 conn");
    // Nothing was kept: no state store, no logs.
    let left: Vec<_> = std::fs::read_dir(sb.path())
        .expect("dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".yaml"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_database_that_refuses_is_critical_an_invalid_runbook_unknown() {
    let sb = Sandbox::new();
    sb.write(
        "down.yaml",
        health(
            "postgres://postgres@127.0.0.1:1/test?connect_timeout=2",
            "> 50",
        ),
    );
    let a = check(&sb, &["down.yaml"]);
    assert_eq!(a.code, 2, "{a:?}");
    assert!(a.text.contains("connections failed: "), "{a:?}");
    // The checks that could not run have no value: U.
    assert_eq!(a.perf[0].1, "U", "{a:?}");
    assert_eq!(a.perf[1].1, "0.25", "{a:?}");

    sb.write(
        "bad.yaml",
        "cairn: 1\nname: x\nsteps:\n  - id: a\n    shell: echo {{ nope }}\n",
    );
    let a = check(&sb, &["bad.yaml"]);
    assert_eq!(a.code, 3, "{a:?}");
    assert!(
        a.text.starts_with("bad.yaml is not a valid runbook"),
        "{a:?}"
    );
    assert!(a.long[0].contains("undefined name `nope`"), "{a:?}");

    // A value that is not a number: the check cannot say.
    sb.write(
        "nan.yaml",
        "cairn: 1\nname: x\nsteps:\n  - id: v\n    check: { value: \"n/a | x\", warning: \"> 1\" }\n",
    );
    let a = check(&sb, &["nan.yaml"]);
    assert_eq!(a.code, 3, "{a:?}");
    assert_eq!(a.perf[0].1, "U");

    // A missing secret: the runbook cannot run.
    sb.write(
        "secret.yaml",
        "cairn: 1\nname: x\nsecrets:\n  t: { env: CAIRN_CHECK_ABSENT_SECRET }\nsteps:\n  - id: a\n    shell: echo {{ secrets.t }}\n",
    );
    let a = check(&sb, &["secret.yaml"]);
    assert_eq!(a.code, 3, "{a:?}");
    assert!(a.text.starts_with("cannot run: "), "{a:?}");
}

#[test]
fn the_time_limit_answers_unknown_in_time_and_stops_the_steps() {
    let sb = Sandbox::new();
    let marker = sb.file("still-running");
    sb.write(
        "slow.yaml",
        format!(
            "cairn: 1\nname: slow\nsteps:\n  - id: wait\n    shell: sleep 5 && touch {marker}\n  - id: v\n    check: {{ value: \"1\", warning: \"> 2\" }}\n"
        ),
    );
    let started = Instant::now();
    let a = check(&sb, &["slow.yaml", "--timeout", "1s"]);
    let took = started.elapsed();
    assert_eq!(a.code, 3, "{a:?}");
    assert_eq!(a.text, "no answer within 1s");
    assert!(took < Duration::from_secs(4), "{took:?}");
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        !sb.exists("still-running"),
        "the step went on after the answer"
    );
}

#[test]
fn an_approval_is_unknown_and_state_is_kept_only_when_asked() {
    let sb = Sandbox::new();
    sb.write(
        "gate.yaml",
        "cairn: 1\nname: gate\nsteps:\n  - id: ok\n    approval: sure?\n  - id: v\n    check: { value: \"1\", warning: \"> 2\" }\n",
    );
    let a = check(
        &sb,
        &[
            "gate.yaml",
            "--state",
            "kept.db",
            "--metrics-file",
            "gate.prom",
        ],
    );
    assert_eq!(a.code, 3, "{a:?}");
    assert!(a.text.contains("paused at an approval"), "{a:?}");
    assert!(sb.exists("kept.db"));
    assert!(
        sb.read("gate.prom")
            .contains("cairn_run_status{runbook=\"gate\",status=\"paused\"} 1")
    );
}

/// A check whose value is not a finite number has no value: NaN is UNKNOWN, never OK, and an
/// infinity is UNKNOWN too (it has no number to print or to put in the perfdata).
#[test]
fn a_value_that_is_not_a_finite_number_is_unknown() {
    let sb = Sandbox::new();
    for (value, name) in [("NaN", "nan"), ("-inf", "minus_inf"), ("inf", "inf")] {
        sb.write(
            &format!("{name}.yaml"),
            format!(
                r#"
cairn: 1
name: odd
steps:
  - id: v
    check: {{ value: "{value}", warning: "< 1", critical: "> 100" }}
"#
            ),
        );
        let a = check(&sb, &[&format!("{name}.yaml")]);
        assert_eq!((a.code, a.state.as_str()), (3, "UNKNOWN"), "{value}: {a:?}");
        assert_eq!(a.long, vec!["v: unknown no value"], "{value}: {a:?}");
        assert_eq!(a.perf[0].1, "U", "{value}: {a:?}");
    }
}

/// A `for_each` check is as bad as its worst item: one critical item makes it CRITICAL, one
/// warning item (the others ok) WARNING.
#[test]
fn a_for_each_check_is_its_worst_item() {
    let sb = Sandbox::new();
    for (values, code, state) in [
        ("[1, 2, 3]", 0, "OK"),
        ("[1, 60, 3]", 1, "WARNING"),
        ("[1, 60, 300]", 2, "CRITICAL"),
    ] {
        sb.write(
            "each.yaml",
            format!(
                r#"
cairn: 1
name: each
steps:
  - id: v
    for_each: {values}
    check: {{ value: "{{{{ item }}}}", warning: "> 50", critical: "> 100" }}
"#
            ),
        );
        let a = check(&sb, &["each.yaml"]);
        assert_eq!((a.code, a.state.as_str()), (code, state), "{values}: {a:?}");
    }
}
