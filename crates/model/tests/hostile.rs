//! Hostile input files: special files, huge files, long lines, bad encodings and pathological
//! YAML must be refused quickly with a located error, never hang or exhaust memory.

use cairn_model::{LoadError, check, load, parse_only};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `f` on a thread and fails the test if it has not finished within `limit`: a read that
/// blocks (a FIFO) must show up as a failure, not as a hung test run.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

fn load_err(path: PathBuf) -> String {
    within(Duration::from_secs(20), move || {
        let templates = cairn_template::Templates::new();
        match load(&path, &templates) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => e.to_string(),
        }
    })
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

const VALID: &str = "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo hi\n";

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("x.yaml");
    mkfifo(&fifo);
    let e = load_err(fifo.clone());
    assert_eq!(
        e,
        format!(
            "cannot read {}: it is a FIFO (named pipe), not a regular file",
            fifo.display()
        )
    );
}

#[test]
fn dev_zero_is_refused_without_reading_it() {
    let e = load_err(PathBuf::from("/dev/zero"));
    assert_eq!(
        e,
        "cannot read /dev/zero: it is a character device, not a regular file"
    );
}

#[test]
fn a_symlink_loop_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::os::unix::fs::symlink(&b, &a).expect("symlink");
    std::os::unix::fs::symlink(&a, &b).expect("symlink");
    let e = load_err(a.clone());
    assert_eq!(
        e,
        format!(
            "cannot read {}: too many levels of symbolic links",
            a.display()
        )
    );
}

#[test]
fn a_symlink_to_a_runbook_is_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real.yaml");
    std::fs::write(&real, VALID).expect("write");
    let link = dir.path().join("link.yaml");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let templates = cairn_template::Templates::new();
    let (checked, _) = load(&link, &templates).expect("a link to a runbook loads");
    assert_eq!(checked.runbook.name.value, "demo");
}

#[test]
fn a_file_over_the_size_cap_is_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.yaml");
    let f = std::fs::File::create(&big).expect("create");
    // Sparse: no disk space used, but the size says 17 MiB.
    f.set_len(cairn_model::source::MAX_SOURCE_BYTES + 1)
        .expect("set_len");
    let e = load_err(big.clone());
    assert_eq!(
        e,
        format!(
            "cannot read {}: larger than the 16 MiB limit",
            big.display()
        )
    );
}

#[test]
fn invalid_utf8_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("latin1.yaml");
    std::fs::write(&p, b"cairn: 1\nname: caf\xe9\nsteps: []\n").expect("write");
    let templates = cairn_template::Templates::new();
    match load(&p, &templates) {
        Err(LoadError::Invalid {
            text, diagnostics, ..
        }) => {
            let d = &diagnostics.0[0];
            assert_eq!((d.span.line, d.span.col), (2, 10));
            assert_eq!(d.message, "not valid UTF-8 (byte 0xe9)");
            let shown = d.render("latin1.yaml", &text, false);
            assert!(
                shown.contains(" --> latin1.yaml:2:10\n"),
                "located: {shown}"
            );
            assert!(shown.contains("2 | name: caf\u{fffd}\n"), "line: {shown}");
        }
        Err(e) => panic!("expected a located error, got {e}"),
        Ok(_) => panic!("latin-1 loaded"),
    }
}

#[test]
fn empty_and_comment_only_files_are_refused_at_line_1() {
    let templates = cairn_template::Templates::new();
    for (text, message) in [
        ("", "the file is empty: a runbook is a YAML map"),
        ("\n  \n", "the file is empty: a runbook is a YAML map"),
        (
            "# just a comment\n# and another\n",
            "the file holds only comments: a runbook is a YAML map",
        ),
    ] {
        let (checked, diags) = check(Path::new("e.yaml"), text, &templates);
        assert!(checked.is_none(), "{text:?} is not a runbook");
        let errors: Vec<_> = diags.errors().collect();
        assert_eq!(errors.len(), 1, "{text:?}: {errors:?}");
        assert_eq!(errors[0].message, message, "{text:?}");
        assert_eq!(
            (errors[0].span.line, errors[0].span.col),
            (1, 1),
            "{text:?}"
        );
    }
}

#[test]
fn retry_backoff_is_bounded_and_finite() {
    let templates = cairn_template::Templates::new();
    for backoff in ["1e308", ".inf", ".nan", "101", "0.5", "-2"] {
        let yaml = format!(
            "cairn: 1\nname: d\nsteps:\n  - id: a\n    shell: 'true'\n    retry: {{ attempts: 3, delay: 0s, backoff: {backoff} }}\n"
        );
        let (checked, diags) = check(Path::new("r.yaml"), &yaml, &templates);
        assert!(checked.is_none(), "backoff {backoff} accepted");
        let e = diags.errors().next().expect("an error");
        assert_eq!(e.span.line, 6, "backoff {backoff}: {e:?}");
        assert!(
            e.message.contains("`backoff`"),
            "backoff {backoff}: {}",
            e.message
        );
    }
    let ok = "cairn: 1\nname: d\nsteps:\n  - id: a\n    shell: 'true'\n    retry: { attempts: 3, delay: 1s, backoff: 100 }\n";
    let (checked, diags) = check(Path::new("r.yaml"), ok, &templates);
    assert!(checked.is_some(), "{diags:?}");
}

/// A 5 MB line must not come back whole: the message quotes a short excerpt and the rendered
/// error shows a window of the line around the column.
#[test]
fn a_five_megabyte_line_is_quoted_as_an_excerpt() {
    let templates = cairn_template::Templates::new();
    let long = "k".repeat(5_000_000);

    // A value quoted in the message.
    let yaml = format!("cairn: 1\nname: d\nsteps:\n  - id: a\n    shell: x\n    timeout: {long}\n");
    let (_, diags) = check(Path::new("long.yaml"), &yaml, &templates);
    let e = diags.errors().next().expect("an invalid duration");
    assert_eq!((e.span.line, e.span.col), (6, 14));
    assert!(
        e.message.len() < 300,
        "message of {} bytes",
        e.message.len()
    );
    assert!(
        e.message.starts_with(&format!(
            "invalid duration `{}… (5000000 characters)`",
            "k".repeat(60)
        )),
        "{}",
        e.message
    );
    let shown = e.render("long.yaml", &yaml, false);
    assert!(shown.len() < 1_000, "rendered {} bytes", shown.len());
    assert!(
        shown.contains(&format!("6 |     timeout: {}…\n", "k".repeat(107))),
        "{shown}"
    );

    // An error far along the line: the window moves to it and the caret stays under it.
    let yaml = format!("cairn: 1\nname: d\n{long}: 1\nsteps: []\n");
    let (_, diags) = check(Path::new("long.yaml"), &yaml, &templates);
    let e = diags.errors().next().expect("a YAML error");
    assert_eq!((e.span.line, e.span.col), (3, 5_000_001));
    let shown = e.render("long.yaml", &yaml, false);
    assert!(shown.len() < 1_000, "rendered {} bytes", shown.len());
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[3], format!("3 | …{}: 1", "k".repeat(117)), "{shown}");
    let caret = lines[4].find('^').expect("a caret");
    assert_eq!(
        lines[3].chars().nth(caret),
        Some(':'),
        "caret under the colon:\n{shown}"
    );
}

/// Parse time must grow linearly with a flow list on one line: when every position was found
/// by walking its line from the start, 50,000 items took over a minute unoptimised (200,000:
/// about 16 times that). Linear, 200,000 take 2-6 s unoptimised on an idle machine; the bound is
/// ten times that, for a loaded CI machine, and still far below the quadratic time.
#[test]
fn long_flow_collections_parse_in_linear_time() {
    let n = 200_000;
    let cases = [
        (
            "flow list",
            format!(
                "cairn: 1\nname: d\nsteps: []\ninputs:\n  xs: {{ default: [{}] }}\n",
                vec!["1"; n].join(",")
            ),
        ),
        (
            "flow list, not ASCII",
            format!(
                "cairn: 1\nname: d\nsteps: []\ninputs:\n  xs: {{ default: [{}] }}\n",
                vec!["é"; n].join(",")
            ),
        ),
        (
            "flow map",
            format!(
                "cairn: 1\nname: d\nsteps: []\ninputs:\n  xs: {{ default: {{{}}} }}\n",
                (0..n)
                    .map(|i| format!("k{i}: 1"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
    ];
    for (what, yaml) in cases {
        let started = Instant::now();
        let (rb, diags) = within(Duration::from_secs(120), move || {
            parse_only(Path::new("flow.yaml"), &yaml)
        });
        let took = started.elapsed();
        assert!(rb.is_some(), "{what}: {diags:?}");
        assert!(
            took < Duration::from_secs(60),
            "{what}: {n} items took {took:?}"
        );
        eprintln!("{what}: {n} items parsed in {took:?}");
    }
}

/// `uses` cycles are refused by validation with the chain spelled out; diamonds are fine.
#[test]
fn uses_cycles_are_refused_with_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let uses = |name: &str, targets: &[&str]| {
        let mut text = format!(
            "cairn: 1\nname: {}\nsteps:\n",
            name.trim_end_matches(".yaml")
        );
        for (i, t) in targets.iter().enumerate() {
            text.push_str(&format!("  - id: s{i}\n    uses: {t}\n"));
        }
        if targets.is_empty() {
            text.push_str("  - id: leaf\n    shell: 'true'\n");
        }
        std::fs::write(d.join(name), text).expect("write");
    };
    uses("self.yaml", &["self.yaml"]);
    uses("a.yaml", &["b.yaml"]);
    uses("b.yaml", &["a.yaml"]);
    uses("top.yaml", &["c.yaml"]);
    uses("c.yaml", &["e.yaml"]);
    uses("e.yaml", &["c.yaml"]);
    uses("diamond.yaml", &["left.yaml", "right.yaml"]);
    uses("left.yaml", &["leaf.yaml"]);
    uses("right.yaml", &["leaf.yaml"]);
    uses("leaf.yaml", &[]);
    for i in 0..cairn_model::MAX_USES_DEPTH + 1 {
        uses(&format!("deep{i}.yaml"), &[&format!("deep{}.yaml", i + 1)]);
    }
    uses(
        &format!("deep{}.yaml", cairn_model::MAX_USES_DEPTH + 1),
        &[],
    );

    let templates = cairn_template::Templates::new();
    let first_error = |name: &str| {
        let path = d.join(name);
        match load(&path, &templates) {
            Err(LoadError::Invalid { diagnostics, .. }) => {
                let e = diagnostics.errors().next().expect("an error");
                (e.span.line, e.span.col, e.message.clone())
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => (0, 0, "valid".to_string()),
        }
    };
    assert_eq!(
        first_error("self.yaml"),
        (5, 11, "`uses` cycle: self.yaml -> self.yaml".to_string())
    );
    assert_eq!(
        first_error("a.yaml"),
        (
            5,
            11,
            "`uses` cycle: a.yaml -> b.yaml -> a.yaml".to_string()
        )
    );
    assert_eq!(
        first_error("top.yaml"),
        (
            5,
            11,
            "`uses` cycle: top.yaml -> c.yaml -> e.yaml -> c.yaml".to_string()
        )
    );
    assert_eq!(first_error("diamond.yaml").2, "valid");
    let (_, _, deep) = first_error("deep0.yaml");
    assert!(
        deep.starts_with("`uses` nested deeper than 16 runbooks: deep0.yaml -> deep1.yaml -> "),
        "{deep}"
    );
    assert!(deep.ends_with("deep15.yaml -> deep16.yaml"), "{deep}");
    // One level less is fine.
    assert_eq!(first_error("deep2.yaml").2, "valid");
}
