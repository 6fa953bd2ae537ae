//! The canary: one secret routed through every path that could carry it out of the process
//! (a sub-run's `with:`, `for_each`, a long progress line on a narrow terminal, `env.X` in a
//! plan, encodings echoed back by a real HTTP server including basic auth, output over the
//! 1 MiB capture, errors, a report), then EVERY byte Cairn wrote is scanned: the state database
//! and its WAL, step logs, the report, stdout and stderr of `run` (JSON and text on a pty),
//! `plan` (text and JSON), `show` and `runs` (text and JSON). Zero hits for the canary, any
//! 12-character piece of it, and its encoded forms.

use super::common::{HttpServer, Sandbox, files_under};
use base64::Engine as _;
use std::process::Command;

/// Quote, slash, plus, equals, `?`, `&`, a space and a double quote: characters that every
/// encoding changes.
const CANARY: &str = "cAnArY-91f2'b/x+y=z?&q w\"k";

fn needles() -> Vec<(String, String)> {
    let std = base64::engine::general_purpose::STANDARD;
    let std_raw = base64::engine::general_purpose::STANDARD_NO_PAD;
    let url = base64::engine::general_purpose::URL_SAFE;
    let url_raw = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let lower: String = CANARY
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect();
    let json = serde_json::to_string(CANARY).expect("json");
    let mut out = vec![
        ("raw".to_string(), CANARY.to_string()),
        ("base64".into(), std.encode(CANARY)),
        ("base64 unpadded".into(), std_raw.encode(CANARY)),
        ("base64 url-safe".into(), url.encode(CANARY)),
        ("base64 url-safe unpadded".into(), url_raw.encode(CANARY)),
        ("basic auth".into(), std.encode(format!("admin:{CANARY}"))),
        ("percent".into(), urlencoding::encode(CANARY).into_owned()),
        ("percent lower".into(), lower),
        (
            "form".into(),
            urlencoding::encode(CANARY).replace("%20", "+"),
        ),
        ("json".into(), json[1..json.len() - 1].to_string()),
        (
            "json \\u".into(),
            json[1..json.len() - 1]
                .replace('\'', "\\u0027")
                .replace('&', "\\u0026"),
        ),
        (
            "shell-quoted".into(),
            cairn_template::shell_quote(CANARY).expect("quote"),
        ),
    ];
    let chars: Vec<char> = CANARY.chars().collect();
    for w in chars.windows(12) {
        let piece: String = w.iter().collect();
        out.push((format!("piece {piece:?}"), piece));
    }
    out
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for (form, text) in needles() {
        assert!(
            !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
            "the canary ({form}) leaked into {what}:\n{}",
            String::from_utf8_lossy(bytes)
                .lines()
                .filter(|l| l.contains(&text))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn cairn(sb: &Sandbox, args: &[&str]) -> (i32, Vec<u8>, Vec<u8>) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(sb.path())
        .args(args)
        .env("CAIRN_CANARY", CANARY)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_STATE")
        .output()
        .expect("cairn");
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

#[test]
fn the_canary_is_found_nowhere_cairn_writes() {
    let server = HttpServer::start();
    let sb = Sandbox::new();
    let long = "a".repeat(95);
    sb.write(
        "child.yaml",
        r#"
cairn: 1
name: canary-child
inputs:
  x: { type: string }
  plain: { type: string }
steps:
  - id: use_x
    shell: echo child got {{ inputs.x }}
    outputs: { echoed: "{{ result.stdout }}" }
  - id: fail_x
    shell: echo child fails {{ inputs.x }} >&2; exit 2
    on_failure: continue
outputs:
  echoed: "{{ steps.use_x.outputs.echoed }}"
  x: "{{ inputs.x }}"
  plain: "{{ inputs.plain }}"
"#,
    );
    sb.write(
        "parent.yaml",
        format!(
            r##"
cairn: 1
name: canary
secrets:
  tok: {{ env: CAIRN_CANARY }}
targets:
  api: {{ http: "{api}/", basic: {{ username: admin, password: "{{{{ secrets.tok }}}}" }} }}
steps:
  - id: long_line
    shell: echo {long} {{{{ secrets.tok }}}} done
  - id: env_x
    shell: echo {{{{ env.CAIRN_CANARY }}}}
  - id: encodings
    shell: |
      python3 - <<'EOF'
      import os, json, base64, urllib.parse as u
      t = os.environ["TOKEN"]
      print(u.quote(t, safe=""))
      print(u.quote(t))
      print("".join(c if c.isalnum() else "%%%02x" % ord(c) for c in t))
      print(u.quote_plus(t))
      print(json.dumps(t))
      print(json.dumps(t).replace("'", "\\u0027").replace("&", "\\u0026"))
      print(base64.b64encode(t.encode()).decode())
      print(base64.urlsafe_b64encode(t.encode()).decode().rstrip("="))
      print(base64.b64encode(("root:" + t).encode()).decode())
      EOF
    env: {{ TOKEN: "{{{{ secrets.tok }}}}" }}
  - id: echo_http
    http: {{ target: api, post: echo, json: {{ t: "{{{{ secrets.tok }}}}" }} }}
    outputs: {{ auth: "{{{{ result.json.headers.authorization }}}}", body: "{{{{ result.json.body }}}}" }}
  - id: query_http
    http: {{ target: api, get: "echo?t={{{{ secrets.tok }}}}" }}
  - id: big
    shell: python3 -c 'import os, sys; t = os.environ["TOKEN"]; sys.stdout.write("A" * 1000 + t + "B" * (1048576 - len(t.encode()) + 6))'
    env: {{ TOKEN: "{{{{ secrets.tok }}}}" }}
  - id: fan
    for_each: "{{{{ secrets.tok }}}}"
    shell: "true"
    on_failure: continue
  - id: fails
    shell: echo denied {{{{ secrets.tok }}}} >&2; exit 3
    on_failure: continue
  - id: check_it
    check: {{ value: "{{{{ secrets.tok }}}}", critical: "> 1" }}
    on_failure: continue
  - id: child
    uses: child.yaml
    with: {{ x: "{{{{ secrets.tok }}}}", plain: hello }}
  - id: report
    report: {{ inline: "token {{{{ secrets.tok }}}}", to: report.md }}
outputs:
  t: "{{{{ secrets.tok }}}}"
"##,
            api = server.url(""),
        ),
    );
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();

    // The run, JSON events.
    let (code, out, err) = cairn(
        &sb,
        &[
            "run",
            "parent.yaml",
            "--state",
            "state.db",
            "--log-format",
            "json",
        ],
    );
    let events = String::from_utf8_lossy(&out).to_string();
    assert_eq!(code, 0, "{events}\n{}", String::from_utf8_lossy(&err));
    outputs.push(("run json stdout".into(), out));
    outputs.push(("run json stderr".into(), err));
    // It did route the secret: the server got it, the steps ran or failed as meant.
    let reqs = server.requests();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{CANARY}"));
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some(format!("Basic {basic}").as_str())),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.body
                == serde_json::to_vec(&serde_json::json!({ "t": CANARY })).expect("json"))
    );
    for (step, status) in [
        ("long_line", "succeeded"),
        ("encodings", "succeeded"),
        ("echo_http", "succeeded"),
        ("big", "succeeded"),
        ("fan", "failed"),
        ("fails", "failed"),
        ("check_it", "failed"),
        ("child", "succeeded"),
        ("child/fail_x", "failed"),
    ] {
        assert!(
            events.lines().any(|l| l.contains("\"step_finished\"")
                && l.contains(&format!("\"step\":\"{step}\""))
                && l.contains(&format!("\"status\":\"{status}\""))),
            "{step} {status}:\n{events}"
        );
    }

    // The run again, text progress on a narrow pty.
    let (code, out, err) = cairn(
        &sb,
        &[
            "run",
            "parent.yaml",
            "--state",
            "state.db",
            "--log-format",
            "text",
        ],
    );
    assert_eq!(code, 0);
    outputs.push(("run text stdout".into(), out));
    outputs.push(("run text stderr".into(), err));
    let cairn_bin = env!("CARGO_BIN_EXE_cairn");
    let pty = Command::new("script")
        .current_dir(sb.path())
        .args([
            "-qec",
            &format!("stty cols 40; COLUMNS=40 {cairn_bin} run parent.yaml --state state.db"),
            "/dev/null",
        ])
        .env("CAIRN_CANARY", CANARY)
        .env_remove("CAIRN_STATE")
        .output()
        .expect("script");
    let pty_out = String::from_utf8_lossy(&pty.stdout).to_string();
    assert!(pty_out.contains("succeeded"), "{pty_out}");
    outputs.push(("run on a pty".into(), pty.stdout));

    // plan, runs, show.
    for args in [
        vec!["plan", "parent.yaml"],
        vec!["plan", "parent.yaml", "--output", "json"],
        vec!["runs", "--state", "state.db"],
        vec!["runs", "--state", "state.db", "--output", "json"],
    ] {
        let (_, out, err) = cairn(&sb, &args);
        outputs.push((format!("{args:?} stdout"), out));
        outputs.push((format!("{args:?} stderr"), err));
    }
    // The whole runbook does not plan (`for_each` of a string); without that step it does.
    let parent = sb.read("parent.yaml");
    let cut = parent.find("  - id: fan").expect("fan");
    let end = parent.find("  - id: fails").expect("fails");
    sb.write(
        "planned.yaml",
        format!("{}{}", &parent[..cut], &parent[end..]),
    );
    for args in [
        vec!["plan", "planned.yaml"],
        vec!["plan", "planned.yaml", "--output", "json"],
    ] {
        let (code, out, err) = cairn(&sb, &args);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        outputs.push((format!("{args:?} stdout"), out));
        outputs.push((format!("{args:?} stderr"), err));
    }
    let (_, plan, _) = cairn(&sb, &["plan", "planned.yaml"]);
    let plan = String::from_utf8_lossy(&plan).to_string();
    assert!(
        plan.contains("$ echo \"$CAIRN_V1\"\n         $CAIRN_V1 = \"***\""),
        "env.X is shown masked:\n{plan}"
    );
    let (_, runs, _) = cairn(&sb, &["runs", "--state", "state.db", "--output", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs).expect("runs json");
    let ids: Vec<String> = runs
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 6, "three parent runs and their sub-runs: {runs}");
    let steps = [
        "long_line",
        "env_x",
        "encodings",
        "echo_http",
        "query_http",
        "big",
        "fan",
        "fails",
        "check_it",
        "child",
        "report",
        "use_x",
        "fail_x",
    ];
    for id in &ids {
        for output in ["text", "json"] {
            let (_, out, err) = cairn(
                &sb,
                &["show", id, "--state", "state.db", "--output", output],
            );
            outputs.push((format!("show {id} {output}"), out));
            outputs.push((format!("show {id} {output} stderr"), err));
            for step in steps {
                let (_, out, err) = cairn(
                    &sb,
                    &[
                        "show", id, "--state", "state.db", "--step", step, "--output", output,
                    ],
                );
                outputs.push((format!("show {id} --step {step} {output}"), out));
                outputs.push((format!("show {id} --step {step} stderr"), err));
            }
        }
    }
    let shown: String = outputs
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).to_string())
        .collect();
    assert!(
        shown.contains("child got ***"),
        "show looked at real content"
    );
    assert!(shown.contains("denied ***"), "show looked at real content");

    // Every file: the state database, its WAL, logs, the report.
    let files = files_under(sb.path());
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(sb.path()).unwrap_or(p).display().to_string())
        .collect();
    for want in [
        "state.db",
        "report.md",
        "big.log",
        "encodings.log",
        "use_x.log",
    ] {
        assert!(names.iter().any(|n| n.ends_with(want)), "{want}: {names:?}");
    }
    let big = files
        .iter()
        .find(|p| p.ends_with("big.log"))
        .map(std::fs::read)
        .expect("big.log")
        .expect("read big.log");
    assert!(
        big.len() > 1_000_000,
        "the big output was kept: {}",
        big.len()
    );
    for path in &files {
        let bytes = std::fs::read(path).expect("read");
        assert_clean(&path.display().to_string(), &bytes);
    }
    for (what, bytes) in &outputs {
        assert_clean(what, bytes);
    }
}

/// A `with:` value rendered from a secret is a secret input of the sub-run: stored masked, and
/// given again by the parent when it resumes, so the sub-run goes on with the real value.
#[test]
fn a_secret_input_of_a_sub_run_is_given_again_on_resume() {
    let server = HttpServer::start();
    let sb = Sandbox::new();
    sb.write(
        "child.yaml",
        format!(
            r#"
cairn: 1
name: taint-child
inputs:
  x: {{ type: string }}
steps:
  - id: gate
    approval: {{ message: "go on?", allow_self_approval: true }}
  - id: send
    http: {{ post: "{echo}", json: {{ x: "{{{{ inputs.x }}}}" }} }}
"#,
            echo = server.url("/echo")
        ),
    );
    sb.write(
        "parent.yaml",
        r#"
cairn: 1
name: taint-parent
secrets:
  tok: { env: CAIRN_CANARY }
steps:
  - id: child
    uses: child.yaml
    with: { x: "{{ secrets.tok }}" }
"#,
    );
    let mut outputs = Vec::new();
    let (code, out, err) = cairn(
        &sb,
        &[
            "run",
            "parent.yaml",
            "--state",
            "state.db",
            "--log-format",
            "json",
        ],
    );
    assert_eq!(code, 3, "paused: {}", String::from_utf8_lossy(&err));
    outputs.push(("run".to_string(), out));
    outputs.push(("run stderr".to_string(), err));
    let (_, runs, _) = cairn(&sb, &["runs", "--state", "state.db", "--output", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs).expect("runs json");
    let id_of = |name: &str| {
        runs.as_array()
            .expect("runs")
            .iter()
            .find(|r| r["runbook"] == name)
            .and_then(|r| r["id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no run of {name}: {runs}"))
    };
    let (parent, child) = (id_of("taint-parent"), id_of("taint-child"));
    let (code, out, err) = cairn(&sb, &["approve", &child, "gate", "--state", "state.db"]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    outputs.push(("approve".to_string(), out));
    let (code, out, err) = cairn(
        &sb,
        &[
            "resume",
            &parent,
            "--state",
            "state.db",
            "--log-format",
            "json",
        ],
    );
    assert_eq!(
        code,
        0,
        "{}\n{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    outputs.push(("resume".to_string(), out));
    outputs.push(("resume stderr".to_string(), err));
    let sent = server.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).expect("json body");
    assert_eq!(body["x"], CANARY, "the sub-run got the real value back");
    let (_, shown, _) = cairn(
        &sb,
        &["show", &child, "--state", "state.db", "--output", "json"],
    );
    let shown_json: serde_json::Value = serde_json::from_slice(&shown).expect("show json");
    assert_eq!(shown_json["run"]["inputs"]["x"], "***", "{shown_json}");
    outputs.push(("show".to_string(), shown));
    for path in files_under(sb.path()) {
        let bytes = std::fs::read(&path).expect("read");
        assert_clean(&path.display().to_string(), &bytes);
    }
    for (what, bytes) in &outputs {
        assert_clean(what, bytes);
    }
}
