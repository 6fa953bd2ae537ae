//! `for_each` fan-out really runs items at once up to `concurrency`, and one at a time at 1.
//! Overlap is judged from the items' own timestamps, never from wall-clock thresholds.

use super::common::Sandbox;

/// Each item writes its start time, then (with `barrier`) waits until all four have started,
/// then sleeps and writes its end time. Run one at a time, the first item would wait out the
/// barrier alone (30 s, hang protection only) and fail.
fn fan(concurrency: u32, barrier: bool) -> String {
    let barrier = if barrier {
        "ok=0; for _ in $(seq 600); do [ $(ls start.* | wc -l) -ge 4 ] && { ok=1; break; }; sleep 0.05; done; [ $ok = 1 ]; "
    } else {
        ""
    };
    format!(
        r#"
cairn: 1
name: fan
steps:
  - id: fan
    for_each: [a, b, c, d]
    concurrency: {concurrency}
    shell: "date +%s.%N > start.{{{{ index }}}}; {barrier}sleep 0.5; date +%s.%N > end.{{{{ index }}}}; echo {{{{ item }}}}"
    outputs: {{ echoed: "{{{{ result.stdout | trim }}}}" }}
outputs:
  echoed: "{{{{ steps.fan.outputs.echoed }}}}"
"#
    )
}

fn intervals(sb: &Sandbox) -> Vec<(f64, f64)> {
    (0..4)
        .map(|i| {
            let t = |name: &str| -> f64 {
                sb.read(&format!("{name}.{i}"))
                    .trim()
                    .parse()
                    .expect("a timestamp")
            };
            (t("start"), t("end"))
        })
        .collect()
}

#[test]
fn four_items_at_concurrency_four_overlap() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&fan(4, true), &[]);
    run.expect_code(0);
    let iv = intervals(&sb);
    let max_start = iv.iter().map(|i| i.0).fold(f64::MIN, f64::max);
    let min_end = iv.iter().map(|i| i.1).fold(f64::MAX, f64::min);
    assert!(max_start < min_end, "items did not all run at once: {iv:?}");
    // One event per item, and the step's outputs are the items' outputs in item order.
    let items: Vec<_> = run
        .all("step_finished", "fan")
        .iter()
        .filter_map(|e| e.get("item").and_then(|i| i.as_u64()))
        .collect();
    assert_eq!(items.len(), 4, "{run}");
    assert_eq!(run.finished("fan")["note"], "4 items");
    assert_eq!(
        run.outputs()["echoed"],
        serde_json::json!(["a", "b", "c", "d"])
    );
}

#[test]
fn four_items_at_concurrency_one_do_not_overlap() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(&fan(1, false), &[]);
    run.expect_code(0);
    let mut iv = intervals(&sb);
    iv.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in iv.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "items overlapped at concurrency 1: {iv:?}"
        );
    }
    assert_eq!(
        run.outputs()["echoed"],
        serde_json::json!(["a", "b", "c", "d"])
    );
}

#[test]
fn independent_steps_run_at_once_up_to_the_run_concurrency() {
    // Three branches; each fails unless all three have started before it ends.
    let step = |id: &str| {
        format!(
            "  - id: {id}\n    needs: []\n    shell: touch started.{id}; ok=0; for _ in $(seq 600); do \
             [ $(ls started.* | wc -l) -ge 3 ] && {{ ok=1; break; }}; sleep 0.05; done; [ $ok = 1 ]\n"
        )
    };
    let yaml = format!(
        "cairn: 1\nname: branches\nsteps:\n{}{}{}",
        step("a"),
        step("b"),
        step("c")
    );
    let sb = Sandbox::new();
    let run = sb.run_yaml(&yaml, &["--concurrency", "3"]);
    run.expect_code(0);
    for id in ["a", "b", "c"] {
        assert_eq!(run.status(id), "succeeded");
    }
}

#[test]
fn a_failing_item_fails_the_step_and_names_the_item() {
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        r#"
cairn: 1
name: fan-fail
steps:
  - id: fan
    for_each: [1, 2, 3]
    concurrency: 3
    shell: "[ {{ item }} != 2 ] || { echo bad item >&2; exit 9; }"
"#,
        &[],
    );
    run.expect_code(1);
    let fan = run.finished("fan");
    assert_eq!(fan["status"], "failed");
    assert_eq!(
        fan["error"],
        "1 of 3 items failed: [1] exit code 9: bad item"
    );
}
