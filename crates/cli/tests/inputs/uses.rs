//! A runbook that uses itself, or two that use each other: refused before anything runs, with
//! the chain spelled out; and refused again at run time if files change under a running run.

use super::common::Sandbox;

#[test]
fn a_uses_cycle_is_refused_before_anything_runs() {
    let sb = Sandbox::new();
    sb.write(
        "self.yaml",
        "cairn: 1\nname: self\nsteps:\n  - id: mark\n    shell: touch ran\n  - id: again\n    uses: self.yaml\n",
    );
    sb.write(
        "a.yaml",
        "cairn: 1\nname: a\nsteps:\n  - id: to_b\n    uses: b.yaml\n",
    );
    sb.write(
        "b.yaml",
        "cairn: 1\nname: b\nsteps:\n  - id: to_a\n    uses: a.yaml\n",
    );
    for cmd in ["validate", "run"] {
        sb.cairn(&[cmd, "self.yaml", "--state", "memory:"][..if cmd == "run" { 4 } else { 2 }])
            .expect(2)
            .stderr_has("error: `uses` cycle: self.yaml -> self.yaml\n")
            .stderr_has(" --> self.yaml:7:11\n");
        sb.cairn(&[cmd, "a.yaml", "--state", "memory:"][..if cmd == "run" { 4 } else { 2 }])
            .expect(2)
            .stderr_has("error: `uses` cycle: a.yaml -> b.yaml -> a.yaml\n")
            .stderr_has(" --> a.yaml:5:11\n");
    }
    assert!(!sb.join("ran").exists(), "a step ran");
}

/// Validation saw no cycle, but a step rewrites the files while the run goes on: the sub-run
/// that would start the top runbook again inside itself is refused by the run-time check of
/// the chain, and nothing below it runs.
#[test]
fn a_cycle_made_while_running_is_refused_at_run_time() {
    let sb = Sandbox::new();
    sb.write(
        "next-top.yaml",
        "cairn: 1\nname: top\nsteps:\n  - id: mark\n    shell: touch top-ran-again\n",
    );
    sb.write(
        "next-b.yaml",
        "cairn: 1\nname: b\nsteps:\n  - id: back\n    uses: top.yaml\n",
    );
    sb.write(
        "top.yaml",
        "cairn: 1\nname: top\nsteps:\n  - id: edit\n    shell: cp next-top.yaml top.yaml && cp next-b.yaml b.yaml\n  - id: sub\n    needs: [edit]\n    uses: b.yaml\n",
    );
    sb.write(
        "b.yaml",
        "cairn: 1\nname: b\nsteps:\n  - id: leaf\n    shell: 'true'\n",
    );
    let state = sb.join("state.db").display().to_string();
    let out = sb.cairn(&["run", "top.yaml", "--state", &state]);
    let top = std::fs::canonicalize(sb.join("top.yaml")).expect("top.yaml");
    let b = std::fs::canonicalize(sb.join("b.yaml")).expect("b.yaml");
    out.expect(1).stderr_has(&format!(
        "`uses` cycle: {} -> {} -> {}",
        top.display(),
        b.display(),
        top.display()
    ));
    assert!(
        !sb.join("top-ran-again").exists(),
        "the top runbook ran inside itself\n{out}"
    );
}
