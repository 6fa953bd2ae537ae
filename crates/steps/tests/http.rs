//! The `http` step against a real local HTTP(S) server.

mod common;

use std::time::{Duration, Instant};

use cairn_steps::StepError;
use cairn_steps::http::{BODY_CAP, HttpClients, HttpSpec, run};
use common::http_server::TestServer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn call(spec: &HttpSpec) -> Result<Value, StepError> {
    run(&HttpClients::new(), spec, &CancellationToken::new()).await
}

async fn ok(spec: &HttpSpec) -> Value {
    call(spec)
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", spec.method, spec.url))
}

#[tokio::test]
async fn every_method_reaches_the_server() {
    let server = TestServer::start().await;
    for method in ["GET", "post", "PUT", "DELETE", "PATCH"] {
        let result = ok(&HttpSpec::new(method, server.url("/echo?x=1"))).await;
        assert_eq!(result["status"], 200);
        assert_eq!(result["json"]["method"], method.to_uppercase());
        assert_eq!(result["json"]["query"], "x=1");
    }
    let head = ok(&HttpSpec::new("HEAD", server.url("/echo"))).await;
    assert_eq!(head["status"], 200);
    assert_eq!(head["body"], "");
    assert_eq!(head["json"], Value::Null);

    let err = call(&HttpSpec::new("TRACE", server.url("/echo")))
        .await
        .expect_err("TRACE is not offered");
    assert!(matches!(err, StepError::Setup { .. }));
    assert!(
        err.to_string().contains("unsupported HTTP method `TRACE`"),
        "{err}"
    );
}

#[tokio::test]
async fn headers_go_out_and_come_back_lowercased() {
    let server = TestServer::start().await;
    let mut spec = HttpSpec::new("GET", server.url("/echo"));
    spec.headers = vec![
        ("X-Trace".into(), "abc".into()),
        ("Idempotency-Key".into(), "run-1".into()),
    ];
    let result = ok(&spec).await;
    assert_eq!(result["json"]["headers"]["x-trace"], "abc");
    assert_eq!(result["json"]["headers"]["idempotency-key"], "run-1");
    assert!(
        result["json"]["headers"]["user-agent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("cairn/"))
    );

    let result = ok(&HttpSpec::new("GET", server.url("/headers"))).await;
    assert_eq!(result["headers"]["x-custom"], "yes");
    assert_eq!(result["headers"]["set-cookie"], "a=1, b=2");
    assert_eq!(result["headers"]["content-type"], "text/plain");

    spec.headers = vec![("bad header".into(), "x".into())];
    let err = call(&spec).await.expect_err("invalid header name");
    assert_eq!(err.to_string(), "invalid HTTP header name `bad header`");
}

#[tokio::test]
async fn json_and_raw_bodies_are_sent() {
    let server = TestServer::start().await;
    let mut spec = HttpSpec::new("POST", server.url("/echo"));
    spec.json = Some(json!({"actor_id": "client_1", "n": 3}));
    let result = ok(&spec).await;
    let echoed: Value =
        serde_json::from_str(result["json"]["body"].as_str().expect("body")).expect("json body");
    assert_eq!(echoed, json!({"actor_id": "client_1", "n": 3}));
    assert_eq!(
        result["json"]["headers"]["content-type"],
        "application/json"
    );

    let mut spec = HttpSpec::new("PUT", server.url("/echo"));
    spec.body = Some("plain text".into());
    spec.headers = vec![("content-type".into(), "text/plain".into())];
    let result = ok(&spec).await;
    assert_eq!(result["json"]["body"], "plain text");
    assert_eq!(result["json"]["headers"]["content-type"], "text/plain");

    spec.json = Some(json!(1));
    let err = call(&spec).await.expect_err("json and body together");
    assert_eq!(
        err.to_string(),
        "an http step takes `json` or `body`, not both"
    );
}

#[tokio::test]
async fn bearer_and_basic_auth_arrive() {
    let server = TestServer::start().await;
    let mut spec = HttpSpec::new("GET", server.url("/echo"));
    spec.bearer = Some("s3cret-token".into());
    assert_eq!(
        ok(&spec).await["json"]["headers"]["authorization"],
        "Bearer s3cret-token"
    );

    let mut spec = HttpSpec::new("GET", server.url("/echo"));
    spec.basic = Some(("user".into(), Some("pw".into())));
    assert_eq!(
        ok(&spec).await["json"]["headers"]["authorization"],
        "Basic dXNlcjpwdw=="
    );
    assert!(
        !format!("{spec:?}").contains("pw\""),
        "Debug must not show the password: {spec:?}"
    );
}

#[tokio::test]
async fn redirects_are_followed_unless_told_not_to() {
    let server = TestServer::start().await;
    let result = ok(&HttpSpec::new("GET", server.url("/redirect/3"))).await;
    assert_eq!(result["status"], 200);
    assert_eq!(result["json"]["path"], "/echo");
    assert_eq!(result["url"], server.url("/echo"));

    let mut spec = HttpSpec::new("GET", server.url("/redirect/3"));
    spec.follow_redirects = false;
    let result = ok(&spec).await;
    assert_eq!(result["status"], 302);
    assert_eq!(result["headers"]["location"], "/redirect/2");

    let err = call(&HttpSpec::new("GET", server.url("/loop")))
        .await
        .expect_err("a redirect loop");
    assert_eq!(
        err.to_string(),
        format!(
            "too many redirects (more than 10): GET {}",
            server.url("/loop")
        )
    );
}

#[tokio::test]
async fn any_status_is_a_result() {
    let server = TestServer::start().await;
    let result = ok(&HttpSpec::new("GET", server.url("/status/503"))).await;
    assert_eq!(result["status"], 503);
    assert_eq!(result["body"], "status 503");
    let result = ok(&HttpSpec::new("GET", server.url("/nowhere"))).await;
    assert_eq!(result["status"], 404);
    assert_eq!(result["json"]["error"], "NotFound");
}

#[tokio::test]
async fn timeout_is_enforced() {
    let server = TestServer::start().await;
    let mut spec = HttpSpec::new("GET", server.url("/slow/5000"));
    spec.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let err = call(&spec)
        .await
        .expect_err("the server is slower than the timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, StepError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "timeout after 0.3 s");
    assert_eq!(
        err.result().expect("request in result")["url"],
        server.url("/slow/5000")
    );
}

#[tokio::test]
async fn cancellation_stops_the_request() {
    let server = TestServer::start().await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let spec = HttpSpec::new("GET", server.url("/slow/5000"));
    let err = run(&HttpClients::new(), &spec, &cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, StepError::Cancelled { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn duration_is_measured() {
    let server = TestServer::start().await;
    let result = ok(&HttpSpec::new("GET", server.url("/slow/200"))).await;
    let ms = result["duration_ms"].as_u64().expect("duration_ms");
    assert!((200..5000).contains(&ms), "duration_ms = {ms}");
}

#[tokio::test]
async fn a_big_body_is_capped() {
    let server = TestServer::start().await;
    let result = ok(&HttpSpec::new("GET", server.url("/big/3000000"))).await;
    assert_eq!(result["body"].as_str().map(str::len), Some(BODY_CAP));
    assert_eq!(result["body_truncated"], true);
    assert_eq!(result["json"], Value::Null);

    let result = ok(&HttpSpec::new("GET", server.url("/big/10"))).await;
    assert_eq!(result["body"], "xxxxxxxxxx");
    assert_eq!(result["body_truncated"], false);
}

#[tokio::test]
async fn connection_refused_names_the_url_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let spec = HttpSpec::new(
        "GET",
        format!("http://admin:hunter2@127.0.0.1:{port}/health"),
    );
    let err = call(&spec).await.expect_err("nothing listens there");
    assert!(matches!(err, StepError::Setup { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("connection refused: GET http://admin:***@127.0.0.1:{port}/health")
    );
}

#[tokio::test]
async fn dns_failure_names_the_host() {
    let err = call(&HttpSpec::new("GET", "http://no-such-host.invalid/health"))
        .await
        .expect_err("no such host");
    assert_eq!(
        err.to_string(),
        "DNS lookup failed for `no-such-host.invalid`: GET http://no-such-host.invalid/health"
    );
}

#[tokio::test]
async fn a_self_signed_certificate_needs_insecure() {
    let server = TestServer::start_tls().await;
    let spec = HttpSpec::new("GET", server.url("/echo"));
    let err = call(&spec)
        .await
        .expect_err("self-signed certificate refused by default");
    let message = err.to_string();
    assert!(message.starts_with("TLS certificate problem"), "{message}");
    assert!(message.contains(&server.url("/echo")), "{message}");
    assert!(
        message.ends_with("set `insecure: true` for a self-signed certificate"),
        "{message}"
    );

    let clients = HttpClients::new();
    let mut spec = spec;
    spec.insecure = true;
    let result = run(&clients, &spec, &CancellationToken::new())
        .await
        .expect("insecure accepts it");
    assert_eq!(result["status"], 200);
    assert_eq!(result["json"]["method"], "GET");
}

#[test]
fn urls_on_a_target_stay_on_its_origin_and_base_path() {
    use cairn_steps::http::on_target;
    let t = "https://api.internal:8443/v1/";
    for (path, want) in [
        ("health", "https://api.internal:8443/v1/health"),
        ("/health", "https://api.internal:8443/v1/health"),
        ("", "https://api.internal:8443/v1/"),
        (
            "items/a%2Fb?x=1#f",
            "https://api.internal:8443/v1/items/a%2Fb?x=1#f",
        ),
        (
            "items/..%2Fadmin",
            "https://api.internal:8443/v1/items/..%2Fadmin",
        ),
        (
            "https://api.internal:8443/v1/x",
            "https://api.internal:8443/v1/x",
        ),
        (
            "https://API.internal:8443/v1",
            "https://api.internal:8443/v1",
        ),
    ] {
        assert_eq!(on_target(t, path).as_deref(), Ok(want), "{path}");
    }
    assert_eq!(
        on_target("http://h:80/api", "x").as_deref(),
        Ok("http://h/api/x"),
        "a base without a trailing slash is a folder"
    );
    for (path, why) in [
        ("..", "`..` segment"),
        ("a/../../x", "`..` segment"),
        ("a/./x", "`.` segment"),
        ("%2e%2E/x", "`%2e%2E` segment"),
        (".%2e", "`.%2e` segment"),
        ("a\\..\\x", "`..` segment"),
        ("http://other/v1/x", "is not on the target"),
        ("https://api.internal/v1/x", "is not on the target"),
        ("http://api.internal:8443/v1/x", "is not on the target"),
        (
            "https://user@evil.example:8443/v1/x",
            "is not on the target",
        ),
        (
            "https://api.internal:8443/v2/x",
            "leaves the target's base path",
        ),
        (
            "https://api.internal:8443/v1x",
            "leaves the target's base path",
        ),
        (
            "https://api.internal:8443/v1/../admin",
            "leaves the target's base path",
        ),
    ] {
        let err = on_target(t, path).expect_err(path);
        assert!(err.0.contains(why), "{path}: {err}");
    }
}

#[tokio::test]
async fn credentials_go_only_to_the_first_origin_across_redirects() {
    let server = TestServer::start().await;
    // The same server under another host name is another origin.
    let other = format!("http://localhost:{}/echo", server.addr.port());
    let mut spec = HttpSpec::new("GET", server.url(&format!("/goto?{other}")));
    spec.bearer = Some("tok-1".into());
    spec.headers = vec![("X-Api-Key".into(), "key-1".into())];
    let result = ok(&spec).await;
    assert_eq!(result["status"], 200);
    assert_eq!(result["json"]["headers"].get("authorization"), None);
    assert_eq!(result["json"]["headers"].get("x-api-key"), None);
    // Same origin: they go along.
    spec.url = server.url("/redirect/1");
    let result = ok(&spec).await;
    assert_eq!(result["json"]["headers"]["authorization"], "Bearer tok-1");
    assert_eq!(result["json"]["headers"]["x-api-key"], "key-1");
}
