//! Notices of a real run reach real receivers: a waiting gate is posted to a signed webhook,
//! Slack and PagerDuty (trigger); its answer resolves the PagerDuty incident; the run's failure
//! triggers one of its own. A receiver that never answers holds the run up by no more than its
//! timeout, and no secret of the notifiers is written anywhere.

use super::common::{HttpServer, Request, Sandbox};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const HMAC_KEY: &str = "hmac-canary-5b1f0e";
const PD_KEY: &str = "pd-routing-canary-77aa";

fn runbook(server: &HttpServer, extra: &str) -> String {
    format!(
        r#"
cairn: 1
name: notified
secrets:
  hmac: {{ env: NOTIFY_HMAC }}
  pd: {{ env: NOTIFY_PD }}
notifiers:
  audit: {{ webhook: {{ url: "{hook}", secret: "{{{{ secrets.hmac }}}}" }} }}
  team: {{ slack: {{ url: "{slack}" }} }}
  oncall: {{ pagerduty: {{ routing_key: "{{{{ secrets.pd }}}}", url: "{pd}" }} }}
{extra}
notify:
  on: {{ waiting: [audit, oncall], failed: [oncall], paused: [audit] }}
steps:
  - id: gate
    approval:
      message: "Restore over production?"
      notify: [team]
  - id: act
    needs: [gate]
    shell: echo ACTED
"#,
        hook = server.url("/echo/hook"),
        slack = server.url("/echo/slack"),
        pd = server.url("/echo/pd"),
    )
}

fn bodies(server: &HttpServer, path: &str) -> Vec<serde_json::Value> {
    server
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| serde_json::from_slice(&r.body).expect("a JSON body"))
        .collect()
}

/// HMAC-SHA256 of `body` under `key`, as `openssl dgst` computes it.
fn hmac(key: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn with_secrets(mut c: std::process::Command) -> std::process::Command {
    c.env("NOTIFY_HMAC", HMAC_KEY).env("NOTIFY_PD", PD_KEY);
    c
}

#[test]
fn a_waiting_gate_reaches_webhook_slack_and_pagerduty_and_its_answer_resolves() {
    let server = HttpServer::start();
    let sb = Sandbox::new();
    sb.write("runbook.yaml", runbook(&server, ""));
    let run = sb.run_with(with_secrets(sb.command("runbook.yaml", &[])));
    run.expect_code(3);
    let run_id = run.run_finished()["run_id"]
        .as_str()
        .expect("run id")
        .to_string();

    // The webhook: the waiting notice and the pause, each signed over its exact body.
    let hooks: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/echo/hook")
        .collect();
    assert_eq!(hooks.len(), 2, "waiting and paused: {hooks:?}");
    for h in &hooks {
        let sig = h.header("X-Cairn-Signature").expect("signed");
        assert_eq!(sig, format!("sha256={}", hmac(HMAC_KEY, &h.body)));
    }
    // Each notice is delivered on its own: they may arrive in either order.
    let events: Vec<serde_json::Value> = hooks
        .iter()
        .map(|h| serde_json::from_slice(&h.body).expect("json"))
        .collect();
    let mut kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["paused", "waiting"], "{events:#?}");
    let waiting = events
        .iter()
        .find(|e| e["event"] == "waiting")
        .expect("the waiting notice");
    assert_eq!(waiting["run_id"], run_id.as_str());
    assert_eq!(waiting["step"], "gate");
    assert_eq!(waiting["message"], "Restore over production?");
    assert_eq!(
        waiting["approve_command"],
        format!("cairn approve {run_id} gate")
    );
    // Slack hears the gate through the gate's own `notify:`.
    let slack = bodies(&server, "/echo/slack");
    assert_eq!(slack.len(), 1, "{slack:?}");
    let text = slack[0]["text"].as_str().expect("text");
    assert!(
        text.contains(&format!("cairn approve {run_id} gate")),
        "{text}"
    );
    // PagerDuty: a trigger keyed by run and step.
    let pd = bodies(&server, "/echo/pd");
    assert_eq!(pd.len(), 1, "{pd:?}");
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[0]["routing_key"], PD_KEY);
    let key = format!("cairn/{run_id}/gate");
    assert_eq!(pd[0]["dedup_key"], key.as_str());

    // The answer resolves the gate's incident; the failed run triggers its own.
    let reject = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["reject", &run_id, "gate", "--state"])
        .arg(sb.path().join("state.db"))
        .output()
        .expect("reject");
    assert!(reject.status.success(), "{reject:?}");
    let mut resume = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    resume
        .current_dir(sb.path())
        .args(["resume", &run_id, "--log-format", "json", "--state"])
        .arg(sb.path().join("state.db"));
    let resumed = with_secrets(resume).output().expect("resume");
    assert_eq!(resumed.status.code(), Some(1), "{resumed:?}");
    let pd = bodies(&server, "/echo/pd");
    let actions: Vec<(&str, &str)> = pd
        .iter()
        .map(|b| {
            (
                b["event_action"].as_str().unwrap_or_default(),
                b["dedup_key"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("resolve", key.as_str())),
        "the answer resolves the gate's incident: {actions:?}"
    );
    let run_key = format!("cairn/{run_id}");
    assert!(
        actions.contains(&("trigger", run_key.as_str())),
        "the failed run triggers: {actions:?}"
    );
    // The HMAC key is never sent, logged or stored; the routing key only in PagerDuty's body.
    for r in server.requests() {
        let all = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(!all.contains(HMAC_KEY), "{all}");
        if r.path != "/echo/pd" {
            assert!(!all.contains(PD_KEY), "{all}");
        }
    }
    let out = format!(
        "{}{}{}{}",
        run.stdout,
        run.stderr,
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(!out.contains(HMAC_KEY) && !out.contains(PD_KEY), "{out}");
    let db = std::fs::read(sb.path().join("state.db")).expect("state");
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains(HMAC_KEY) && !db.contains(PD_KEY));
}

#[test]
fn a_receiver_that_never_answers_delays_the_run_by_at_most_its_timeout() {
    let server = HttpServer::start();
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let sb = Sandbox::new();
    let extra = format!(
        "  silent: {{ webhook: {{ url: \"http://127.0.0.1:{port}/hook\", timeout: 1s }} }}\n  down: {{ slack: {{ url: \"http://127.0.0.1:1/hook\", timeout: 1s }} }}"
    );
    let yaml = runbook(&server, &extra).replace("paused: [audit]", "paused: [audit, silent, down]");
    sb.write("runbook.yaml", &yaml);
    let clock = Instant::now();
    let run = sb.run_with(with_secrets(sb.command("runbook.yaml", &[])));
    let took = clock.elapsed();
    run.expect_code(3);
    assert!(
        took < Duration::from_secs(6),
        "a silent receiver held the run for {took:?}"
    );
    assert!(
        run.stderr.contains("notices not delivered") && run.stderr.contains("silent"),
        "{}",
        run.stderr
    );
    drop(silent);
}
