//! `http` steps against a real local server: status judgement, `expect`, outputs from the
//! JSON body, request bodies, timeouts.

use super::common::{HttpServer, Sandbox};

#[test]
fn http_steps_judge_status_read_json_and_send_bodies() {
    let server = HttpServer::start();
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: http
targets:
  api: {{ http: "{base}/", headers: {{ X-Team: memory }} }}
steps:
  - id: health
    http: {{ target: api, get: /health }}
    outputs: {{ status: "{{{{ result.status }}}}", body: "{{{{ result.body }}}}", ms: "{{{{ result.duration_ms }}}}" }}
  - id: down
    http: {{ get: "{base}/status/503" }}
    on_failure: continue
  - id: down_expected
    http: {{ get: "{base}/status/503", expect: {{ status: 503 }} }}
  - id: down_expected_any
    http: {{ get: "{base}/status/503" }}
    expect: {{ status: [200, 503] }}
  - id: version
    http: {{ target: api, get: json }}
    outputs: {{ version: "{{{{ result.json.version }}}}", second: "{{{{ result.json.items[1] }}}}", ok: "{{{{ result.json.ok }}}}" }}
  - id: post
    http:
      target: api
      post: /echo
      headers: {{ X-Run: "{{{{ run.id }}}}" }}
      json: {{ version: "{{{{ steps.version.outputs.version }}}}", n: "{{{{ steps.version.outputs.second }}}}", ok: true, tags: [a, b] }}
    expect:
      - result.json.method == 'POST'
    outputs: {{ team: "{{{{ result.json.headers['x-team'] }}}}" }}
outputs:
  status: "{{{{ steps.health.outputs.status }}}}"
  body: "{{{{ steps.health.outputs.body }}}}"
  ms: "{{{{ steps.health.outputs.ms }}}}"
  version: "{{{{ steps.version.outputs.version }}}}"
  second: "{{{{ steps.version.outputs.second }}}}"
  ok: "{{{{ steps.version.outputs.ok }}}}"
  team: "{{{{ steps.post.outputs.team }}}}"
"#,
            base = server.url("")
        ),
        &[],
    );
    run.expect_code(0);

    let down = run.finished("down");
    assert_eq!(down["status"], "failed");
    let error = down["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("HTTP 503 "), "{error}");
    assert_eq!(run.status("down_expected"), "succeeded");
    assert_eq!(run.status("down_expected_any"), "succeeded");

    let out = run.outputs();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "ok");
    assert!(out["ms"].is_u64(), "duration_ms is a number: {}", out["ms"]);
    assert_eq!(out["version"], "1.2.3");
    assert_eq!(out["second"], 2);
    assert_eq!(out["ok"], true);
    assert_eq!(out["team"], "memory");
    let note = run.finished("health")["note"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        note.starts_with("HTTP 200 in ") && note.ends_with(" ms"),
        "{note}"
    );

    assert_eq!(server.hits("/health"), 1);
    assert_eq!(server.hits("/status/503"), 3);
    assert_eq!(server.hits("/json"), 1);
    let posts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/echo")
        .collect();
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.method, "POST");
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(post.header("x-team"), Some("memory"));
    let run_id = run.run_finished()["run_id"].as_str().expect("run id");
    assert_eq!(post.header("x-run"), Some(run_id));
    let body: serde_json::Value = serde_json::from_slice(&post.body).expect("a JSON body");
    assert_eq!(
        body,
        serde_json::json!({ "version": "1.2.3", "n": 2, "ok": true, "tags": ["a", "b"] })
    );
}

#[test]
fn an_http_timeout_fails_the_step() {
    let server = HttpServer::start();
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: http-slow
steps:
  - id: slow
    http: {{ get: "{}" }}
    timeout: 1s
"#,
            server.url("/slow/20000")
        ),
        &[],
    );
    run.expect_code(1);
    assert_eq!(run.finished("slow")["error"], "timeout after 1 s", "{run}");
}

#[test]
fn http_retries_until_the_server_answers() {
    let server = HttpServer::start();
    let sb = Sandbox::new();
    // Every attempt reaches the server and fails on the status.
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: http-retry
steps:
  - id: flaky
    http: {{ get: "{}" }}
    retry: {{ attempts: 3, delay: 20ms }}
"#,
            server.url("/status/503")
        ),
        &[],
    );
    run.expect_code(1);
    assert_eq!(run.finished("flaky")["attempts"], 3);
    assert_eq!(server.hits("/status/503"), 3);
}
