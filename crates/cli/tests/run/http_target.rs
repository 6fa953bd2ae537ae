//! An http step on a target stays on it: templated values are percent-encoded path components,
//! a result off the target's origin or base path fails the step, and the target's credentials
//! reach only its own origin, across redirects too. Two real servers: the target and another
//! host (`localhost` on another port, so host and port both differ).

use super::common::{HttpServer, Sandbox};

const TOKEN: &str = "tok-3f9a1c";

fn runbook(target: &str, steps: &str) -> String {
    format!(
        r#"
cairn: 1
name: on-target
inputs:
  id: {{ type: string, default: "1" }}
targets:
  api: {{ http: "{target}", bearer: "{TOKEN}", headers: {{ X-Api-Key: key-77 }} }}
steps:
{steps}
"#
    )
}

fn error_of(run: &super::common::Run, step: &str) -> String {
    run.finished(step)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_templated_absolute_url_stays_a_path_on_the_target() {
    let (api, other) = (HttpServer::start(), HttpServer::start());
    let steal = format!("http://localhost:{}/steal", other.port);
    let sb = Sandbox::new();
    let yaml = runbook(
        &api.url("/api/items"),
        r#"  - id: fetch
    http: { target: api, get: "{{ inputs.id }}", expect: { status: 404 } }
    outputs: { url: "{{ result.url }}" }"#,
    );
    let run = sb.run_yaml(&yaml, &["--set", &format!("id={steal}")]);
    run.expect_code(0);
    assert_eq!(other.requests().len(), 0, "the other host was reached");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].path,
        format!("/api/items/http%3A%2F%2Flocalhost%3A{}%2Fsteal", other.port)
    );
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[test]
fn a_value_cannot_climb_out_of_the_base_path_or_add_a_query() {
    let api = HttpServer::start();
    let sb = Sandbox::new();
    let yaml = runbook(
        &api.url("/api/items"),
        r#"  - id: fetch
    http: { target: api, get: "{{ inputs.id }}", expect: { status: 404 } }"#,
    );
    sb.run_yaml(&yaml, &["--set", "id=../../admin?role=root#"])
        .expect_code(0);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/api/items/..%2F..%2Fadmin%3Frole%3Droot%23");
    assert_eq!(reqs[0].query, "");
    assert_eq!(api.hits("/admin"), 0);

    // A value that is a whole `..` or `.` segment (plain or %-encoded by the author) fails the
    // step before anything is sent.
    for (value, seg) in [("..", ".."), (".", ".")] {
        let run = sb.run_yaml(&yaml, &["--set", &format!("id={value}")]);
        run.expect_code(1);
        let err = error_of(&run, "fetch");
        assert!(
            err.contains(&format!("has a `{seg}` segment"))
                && err.contains("leave the target's base path `/api/items`"),
            "{err}"
        );
    }
    let yaml = runbook(
        &api.url("/api/items"),
        r#"  - id: fetch
    http: { target: api, get: "x/%2E%2e/../{{ inputs.id }}" }"#,
    );
    let run = sb.run_yaml(&yaml, &[]);
    run.expect_code(1);
    assert!(error_of(&run, "fetch").contains("`%2E%2e` segment"));
    // `| raw` opts out of encoding, not out of the checks.
    let yaml = runbook(
        &api.url("/api/items"),
        r#"  - id: fetch
    http: { target: api, get: "{{ inputs.id | raw }}" }"#,
    );
    let run = sb.run_yaml(&yaml, &["--set", "id=a/../../admin"]);
    run.expect_code(1);
    assert!(error_of(&run, "fetch").contains("`..` segment"));
    assert_eq!(api.requests().len(), 1, "only the first run sent a request");
}

#[test]
fn an_absolute_url_elsewhere_fails_the_step_without_a_request() {
    let (api, other) = (HttpServer::start(), HttpServer::start());
    let sb = Sandbox::new();
    for url in [
        format!("http://localhost:{}/api/items/1", other.port),
        format!("http://127.0.0.1:{}/api/items/1", other.port),
        format!("https://127.0.0.1:{}/api/items/1", api.port),
        api.url("/admin"),
        api.url("/api/itemsX"),
    ] {
        let yaml = runbook(
            &api.url("/api/items"),
            &format!("  - id: fetch\n    http: {{ target: api, get: \"{url}\" }}"),
        );
        let run = sb.run_yaml(&yaml, &[]);
        run.expect_code(1);
        let err = error_of(&run, "fetch");
        assert!(
            err.contains("is not on the target") || err.contains("leaves the target's base path"),
            "{url}: {err}"
        );
        assert!(err.contains("target `api`"), "{err}");
    }
    assert_eq!(api.requests().len() + other.requests().len(), 0);
    // On the target and under its base path: allowed.
    let yaml = runbook(
        &api.url("/api/items"),
        &format!(
            "  - id: fetch\n    http: {{ target: api, get: \"{}\", expect: {{ status: 404 }} }}",
            api.url("/api/items/7?x=1")
        ),
    );
    sb.run_yaml(&yaml, &[]).expect_code(0);
    assert_eq!(api.hits("/api/items/7"), 1);
}

#[test]
fn credentials_never_follow_a_redirect_to_another_origin() {
    let (api, other) = (HttpServer::start(), HttpServer::start());
    let sb = Sandbox::new();
    let elsewhere =
        urlencoding::encode(&format!("http://localhost:{}/echo", other.port)).into_owned();
    let yaml = runbook(
        &api.url("/"),
        &format!(
            r#"  - id: same_origin
    http: {{ target: api, get: "goto/302?to=%2Fecho" }}
    outputs: {{ auth: "{{{{ result.json.headers.authorization }}}}", key: "{{{{ result.json.headers['x-api-key'] }}}}" }}
  - id: other_origin
    http: {{ target: api, get: "goto/302?to={elsewhere}" }}
    outputs: {{ headers: "{{{{ result.json.headers | tojson }}}}" }}
  - id: other_origin_307
    http: {{ target: api, post: "goto/307?to={elsewhere}", json: {{ a: 1 }} }}
    outputs: {{ method: "{{{{ result.json.method }}}}" }}"#
        ),
    );
    let run = sb.run_yaml(&yaml, &[]);
    run.expect_code(0);
    let same = &run.finished("same_origin");
    assert_eq!(same["status"], "succeeded");
    // On the target's own origin the credentials go along (shown masked, they were sent).
    let echoed = api
        .requests()
        .into_iter()
        .find(|r| r.path == "/echo")
        .expect("same-origin hop");
    assert_eq!(
        echoed.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(echoed.header("x-api-key"), Some("key-77"));
    let reqs = other.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r.header("authorization"), None, "{r:?}");
        assert_eq!(r.header("x-api-key"), None, "{r:?}");
    }
    assert_eq!(reqs[1].method, "POST", "307 keeps the method");
}
