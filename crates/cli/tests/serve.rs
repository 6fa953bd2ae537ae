//! `cairn serve` as people meet it: a real server process over a real SQLite state, with runs
//! made by the real `cairn run`, asked over HTTP. Who may read and act (tokens, a proxy's
//! headers, roles, the gate's own rules, CSRF), the run continuing after an approval given
//! in the console, the secret canary never leaving in any body, header or event, and hostile
//! values rendered as text.

#[path = "support/process.rs"]
mod process;
#[path = "support/sandbox.rs"]
mod sandbox;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_state::{Approval, Decision, RunRecord, StepDef, StepRecord, StepStatus};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE};
use serde_json::Value;

const CANARY: &str = "sErVe-cAnArY-7d1e'q/x+y=z?&w";

struct Sandbox {
    dir: sandbox::Dir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = sandbox::Dir::new("cairn-serve-");
        dir.mkdir(".cairn");
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn state(&self) -> String {
        format!("sqlite://{}", self.path(".cairn/state.db").display())
    }

    fn cairn(&self) -> Command {
        let mut c = sandbox::cairn_command(self.dir.path());
        c.env("CAIRN_STATE", self.state())
            .env("CAIRN_CANARY", CANARY);
        c
    }

    /// `cairn run FILE`: its exit code and run id (the first line of stdout).
    fn run(&self, file: &str, text: &str) -> (i32, String) {
        std::fs::write(self.path(file), text).expect("write runbook");
        let mut c = self.cairn();
        c.arg("run").arg(file);
        let (status, out, err) = process::capture(c, Duration::from_secs(60));
        let id = String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(!id.is_empty(), "no run id; stderr:\n{err}");
        (status.code().unwrap_or(-1), id)
    }

    /// A token file: (user, roles, token) lines.
    fn tokens(&self, users: &[(&str, &str, &str)]) -> PathBuf {
        use sha2::Digest as _;
        let text: String = users
            .iter()
            .map(|(u, r, t)| {
                let h: String = sha2::Sha256::digest(t.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{u} {r} sha256:{h}\n")
            })
            .collect();
        let p = self.path("tokens");
        std::fs::write(&p, text).expect("tokens");
        p
    }

    /// Starts `cairn serve ARGS --listen 127.0.0.1:0` and reads the URL it prints.
    fn serve(&self, args: &[&str]) -> Server {
        let mut c = self.cairn();
        c.arg("serve").args(args).args(["--listen", "127.0.0.1:0"]);
        let mut child = c.spawn().expect("spawn cairn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the URL");
        let err = process::drain(child.stderr.take().expect("stderr"));
        assert!(
            line.starts_with("http://"),
            "cairn serve printed {line:?} instead of its URL"
        );
        Server {
            child,
            base: line.trim().trim_end_matches('/').to_string(),
            _stderr: err,
        }
    }
}

struct Server {
    child: Child,
    base: String,
    _stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Every byte of a response (head and body), for scans.
async fn fetch(req: reqwest::RequestBuilder) -> (StatusCode, String, String) {
    let res = req.send().await.expect("request");
    let status = res.status();
    let head = format!("{:?}", res.headers());
    let body = res.text().await.expect("body");
    (status, head, body)
}

const FORM: &str = "application/x-www-form-urlencoded";

/// A form's body as a browser sends it.
fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

const GATED: &str = "cairn: 1
name: gated
steps:
  - id: before
    shell: echo before > before.txt
  - id: gate
    approval: { message: \"Restore production?\" }
  - id: after
    shell: echo after > after.txt
";

type Auth<'a> = &'a dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder;

async fn wait_for_status(
    http: &reqwest::Client,
    base: &str,
    run: &str,
    auth: Auth<'_>,
    want: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = auth(http.get(format!("{base}/api/runs/{run}")))
            .send()
            .await
            .expect("get run")
            .json()
            .await
            .expect("json");
        if v["run"]["status"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not become {want}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An approver answers from the console; the run's starter, a viewer, nobody and a form
/// without its CSRF token are refused, and none of them leaves an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_in_the_console_continues_the_run_and_refusals_hold() {
    let sb = Sandbox::new();
    let (code, run) = sb.run("gated.yaml", GATED);
    assert_eq!(code, 3, "the run pauses at its gate");
    let starter = process::whoami();
    let tokens = sb.tokens(&[
        ("alice", "approver", "alice-token"),
        ("vic", "viewer", "vic-token"),
        (&starter, "approver,operator", "starter-token"),
    ]);
    let s = sb.serve(&[
        "--auth",
        "token",
        "--tokens",
        tokens.to_str().expect("path"),
    ]);
    let http = client();

    // The list shows the run started by the CLI; nobody unidentified reads it.
    let (st, _, body) = fetch(
        http.get(format!("{}/api/runs", s.base))
            .header(AUTHORIZATION, bearer("vic-token")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let list: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["runs"][0]["id"], run.as_str());
    assert_eq!(list["runs"][0]["status"], "paused");
    let (st, _, _) = fetch(http.get(format!("{}/api/runs", s.base))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, head, _) = fetch(http.get(format!("{}/runs", s.base))).await;
    assert_eq!(
        st,
        StatusCode::SEE_OTHER,
        "a page without identity goes to the login"
    );
    assert!(head.contains("/login"), "{head}");
    let (st, _, body) = fetch(
        http.get(format!("{}/api/approvals", s.base))
            .header(AUTHORIZATION, bearer("vic-token")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let gates: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(gates["gates"][0]["run_id"], run.as_str());
    assert_eq!(gates["gates"][0]["step_id"], "gate");

    let approve = format!("{}/api/runs/{run}/steps/gate/approve", s.base);
    // Nobody.
    let (st, _, _) = fetch(http.post(&approve)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A wrong token is nobody.
    let (st, _, _) = fetch(http.post(&approve).header(AUTHORIZATION, bearer("guess"))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A viewer.
    let (st, _, body) = fetch(
        http.post(&approve)
            .header(AUTHORIZATION, bearer("vic-token")),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("does not have the role approver"), "{body}");
    // The run's starter, although an approver: the gate's own rule.
    let (st, _, body) = fetch(
        http.post(&approve)
            .header(AUTHORIZATION, bearer("starter-token")),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("started this run"), "{body}");
    // An approver by the login cookie, but the form without its CSRF token, or another
    // user's.
    let form = format!("{}/runs/{run}/steps/gate/approve", s.base);
    let cookie = "cairn_token=alice-token";
    for fields in [
        vec![("comment", "no token")],
        vec![("csrf", "0000"), ("comment", "a made-up token")],
    ] {
        let (st, _, body) = fetch(
            http.post(&form)
                .header(COOKIE, cookie)
                .header("content-type", FORM)
                .body(form_body(&fields)),
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("CSRF"), "{body}");
    }
    let vic_csrf: Value = http
        .get(format!("{}/api/me", s.base))
        .header(COOKIE, "cairn_token=vic-token")
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    let (st, _, _) = fetch(
        http.post(&form)
            .header(COOKIE, cookie)
            .header("content-type", FORM)
            .body(form_body(&[(
                "csrf",
                vic_csrf["csrf"].as_str().expect("csrf"),
            )])),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a token is bound to its user");
    assert!(
        !sb.path("after.txt").exists(),
        "nothing went ahead on a refused answer"
    );
    let v: Value = http
        .get(format!("{}/api/runs/{run}", s.base))
        .header(AUTHORIZATION, bearer("vic-token"))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["approvals"],
        serde_json::json!([]),
        "no refused answer was recorded"
    );

    // The approver, from the page's own form: recorded, the run resumed and finished.
    let me: Value = http
        .get(format!("{}/api/me", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"], "alice");
    let page = http
        .get(format!("{}/runs/{run}", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    let csrf = me["csrf"].as_str().expect("csrf");
    assert!(
        page.contains(&format!("name=\"csrf\" value=\"{csrf}\"")),
        "the page's form carries the token"
    );
    let (st, head, body) = fetch(
        http.post(&form)
            .header(COOKIE, cookie)
            .header("content-type", FORM)
            .body(form_body(&[
                ("csrf", csrf),
                ("comment", "restore approved, INC-42"),
            ])),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert!(head.contains("done=approved"), "{head}");
    let vic = |r: reqwest::RequestBuilder| r.header(AUTHORIZATION, bearer("vic-token"));
    wait_for_status(&http, &s.base, &run, &vic, "succeeded").await;
    assert!(sb.path("after.txt").exists(), "the step after the gate ran");

    // The CLI sees the answer: alice, from the client's address, with her comment.
    let mut show = sb.cairn();
    show.args(["show", &run, "--output", "json"]);
    let (_, out, _) = process::capture(show, Duration::from_secs(30));
    let shown: Value = serde_json::from_slice(&out).expect("show json");
    let a = &shown["approvals"][0];
    assert_eq!(
        (a["by"].as_str(), a["host"].as_str(), a["comment"].as_str()),
        (
            Some("alice"),
            Some("127.0.0.1"),
            Some("restore approved, INC-42")
        )
    );
    assert_eq!(shown["approvals"].as_array().map(Vec::len), Some(1));
    // The run page tells every action with who, where from and when: the refusals too.
    let v: Value = http
        .get(format!("{}/api/runs/{run}", s.base))
        .header(AUTHORIZATION, bearer("vic-token"))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let actions: Vec<(String, String, String)> = v["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap_or_default().to_string(),
                a["by"].as_str().unwrap_or_default().to_string(),
                a["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        actions
            .iter()
            .any(|(act, by, d)| act == "approve" && by == &starter && d.starts_with("refused")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|(act, by, d)| act == "approve" && by == "alice" && d.starts_with("recorded")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|(act, _, _)| act == "resume"),
        "{actions:?}"
    );
    assert!(v["actions"][0]["source"] == "127.0.0.1" && v["actions"][0]["at"].is_string());
    let page = http
        .get(format!("{}/runs/{run}", s.base))
        .header(AUTHORIZATION, bearer("vic-token"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("by <strong>alice</strong> from 127.0.0.1"),
        "{page}"
    );
    // A decided gate takes no more answers.
    let (st, _, _) = fetch(
        http.post(&approve)
            .header(AUTHORIZATION, bearer("alice-token")),
    )
    .await;
    assert_ne!(st, StatusCode::OK);
}

/// `--auth proxy`: the identity headers are believed from a trusted proxy only; a proxy's
/// identity is sent by the browser on its own, so its forms need the CSRF token too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_only_from_trusted_addresses() {
    let sb = Sandbox::new();
    let (_, run) = sb.run("gated.yaml", GATED);
    let http = client();
    let as_alice = |r: reqwest::RequestBuilder| {
        r.header("X-Forwarded-User", "alice")
            .header("X-Forwarded-Groups", "cairn-approver")
    };
    // The server trusts another address: the headers from here are ignored.
    let untrusting = sb.serve(&["--auth", "proxy", "--trusted-proxy", "192.0.2.1/32"]);
    let (st, _, _) = fetch(as_alice(http.get(format!("{}/api/runs", untrusting.base)))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = fetch(as_alice(http.post(format!(
        "{}/api/runs/{run}/steps/gate/approve",
        untrusting.base
    ))))
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let me: Value = as_alice(http.get(format!("{}/api/me", untrusting.base)))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"], Value::Null);
    drop(untrusting);

    let trusting = sb.serve(&["--auth", "proxy", "--trusted-proxy", "127.0.0.1/32"]);
    let me: Value = as_alice(http.get(format!("{}/api/me", trusting.base)))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"], "alice");
    assert_eq!(me["roles"], serde_json::json!(["viewer", "approver"]));
    let approve = format!("{}/api/runs/{run}/steps/gate/approve", trusting.base);
    let (st, _, body) = fetch(as_alice(http.post(&approve))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no CSRF token: {body}");
    assert!(body.contains("CSRF"));
    let (st, _, body) = fetch(
        as_alice(http.post(&approve))
            .header("X-CSRF-Token", me["csrf"].as_str().expect("csrf"))
            .header("content-type", "application/json")
            .body("{\"comment\": \"via the proxy\"}"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    wait_for_status(&http, &trusting.base, &run, &as_alice, "succeeded").await;
}

/// The canary, and every form of it a page or an API could carry.
fn needles() -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let json = serde_json::to_string(CANARY).expect("json");
    let mut out = vec![
        CANARY.to_string(),
        b64.encode(CANARY),
        urlencoding::encode(CANARY).into_owned(),
        json[1..json.len() - 1].to_string(),
        // As HTML escaping writes it.
        CANARY
            .replace('\'', "&#x27;")
            .replace('/', "&#x2f;")
            .replace('&', "&amp;"),
    ];
    let chars: Vec<char> = CANARY.chars().collect();
    for w in chars.windows(12) {
        out.push(w.iter().collect());
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for n in needles() {
        assert!(!text.contains(&n), "the canary ({n}) leaked into {what}");
    }
}

/// Hostile markup stays text: the only script element of any page is the server's own file,
/// and no control character reaches a page raw.
fn assert_inert(what: &str, html: &str) {
    let scripts = html.matches("<script").count();
    let ours = html
        .matches("<script src=\"/assets/app.js\"></script>")
        .count();
    assert_eq!(scripts, ours, "a script element in {what}:\n{html}");
    assert!(!html.contains("<b>"), "markup from a value in {what}");
    assert!(
        !html
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r'),
        "a control character reached {what}"
    );
}

const HOSTILE: &str = "cairn: 1
name: hostile
secrets:
  tok: { env: CAIRN_CANARY }
steps:
  - id: noisy
    shell: |
      echo token is {{ secrets.tok }}
      printf '<script>alert(1)</script>\\n</script><b>bold</b>\\n\\033[2J\\007bell\\n\\377\\376 not utf-8\\n'
    outputs:
      said: \"{{ result.stdout }}\"
      html: \"</script><script>alert(2)</script><b>x</b>\"
  - id: gate
    approval: { message: \"Go <b>on</b> {{ secrets.tok }}?\" }
";

/// A run written straight into the store with the names no runbook may have: the console
/// must show whatever a (damaged or hand-edited) store holds as text.
async fn hostile_record(state: &str) -> String {
    let store = cairn_state::open(state).await.expect("open");
    let bad = "<script>alert(3)</script>\u{1b}[31m</text>";
    let mut run = RunRecord::start(
        bad,
        "/x/<b>.yaml",
        "h",
        serde_json::json!({ "x": bad }),
        bad,
    );
    run.error = Some(format!("{bad} failed"));
    let defs = [
        StepDef {
            step_id: bad.into(),
            def_hash: "h".into(),
            needs: vec![],
        },
        StepDef {
            step_id: "w\u{7}ait\"'<>".into(),
            def_hash: "h".into(),
            needs: vec![bad.into()],
        },
    ];
    store.create_run(&run, &defs).await.expect("create");
    let mut a = StepRecord::new(&run.id, bad, None, "h");
    a.status = StepStatus::Failed;
    a.error = Some(bad.into());
    a.outputs = Some(serde_json::json!({ bad: bad }));
    let mut b = StepRecord::new(&run.id, "w\u{7}ait\"'<>", None, "h");
    b.status = StepStatus::Waiting;
    b.started_at = Some(cairn_state::now());
    b.result = Some(serde_json::json!({ "message": bad }));
    store.put_steps(&run.claim(), &[a, b]).await.expect("steps");
    store
        .record_approval(&Approval {
            run_id: run.id.clone(),
            step_id: bad.into(),
            decision: Decision::Rejected,
            by: bad.into(),
            at: cairn_state::now(),
            comment: Some(bad.into()),
            host: Some(bad.into()),
            tty: None,
        })
        .await
        .expect("approval");
    run.status = cairn_state::RunStatus::Paused;
    store.update_run(&run).await.expect("pause");
    store.close().await;
    run.id
}

/// Every page and API, asked about a run that handled the canary and printed hostile markup,
/// and about a stored run whose every name is hostile: no body, header or event carries the
/// canary, and every value renders as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_and_no_markup_from_values_anywhere() {
    let sb = Sandbox::new();
    let (code, run) = sb.run("hostile.yaml", HOSTILE);
    assert_eq!(code, 3, "paused at the gate");
    let bad_run = hostile_record(&sb.state()).await;
    let tokens = sb.tokens(&[
        ("vic", "viewer", "vic-token"),
        ("ann", "approver", "ann-token"),
    ]);
    let s = sb.serve(&[
        "--auth",
        "token",
        "--tokens",
        tokens.to_str().expect("path"),
    ]);
    let http = client();
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    let bad = "<script>alert(3)</script>\u{1b}[31m</text>";
    let odd = "w\u{7}ait\"'<>";
    let mut urls = vec![
        "/runs".to_string(),
        "/runs?status=paused".into(),
        "/approvals".into(),
        "/login".into(),
        "/api/runs".into(),
        "/api/runs?limit=1".into(),
        "/api/approvals".into(),
        "/api/me".into(),
        "/api/openapi.json".into(),
        format!("/nothing/{}", enc(bad)),
        format!("/runs/{}", enc(bad)),
    ];
    for (r, steps) in [(&run, vec!["noisy", "gate"]), (&bad_run, vec![bad, odd])] {
        urls.push(format!("/runs/{r}"));
        urls.push(format!("/api/runs/{r}"));
        urls.push(format!("/runs/{r}/dag.svg"));
        urls.push(format!("/runs/{r}/reports/markdown"));
        urls.push(format!("/api/runs/{r}/reports/junit"));
        urls.push(format!("/api/runs/{r}/reports/metrics"));
        for st in steps {
            urls.push(format!("/runs/{r}/steps/{}", enc(st)));
            urls.push(format!("/api/runs/{r}/steps/{}", enc(st)));
            urls.push(format!("/api/runs/{r}/steps/{}/log", enc(st)));
            urls.push(format!("/api/runs/{r}/steps/{}/log?from=0", enc(st)));
        }
    }
    let mut seen_log = false;
    for u in &urls {
        for auth in ["vic-token", "ann-token", ""] {
            let mut req = http.get(format!("{}{u}", s.base));
            if !auth.is_empty() {
                req = req.header(AUTHORIZATION, bearer(auth));
            }
            let (st, head, body) = fetch(req).await;
            assert!(!st.is_server_error(), "{u}: {st}\n{body}");
            let what = format!("{u} ({st})");
            assert_clean(&what, &head);
            assert_clean(&what, &body);
            assert!(head.contains("default-src 'self'"), "{what}: {head}");
            assert!(head.contains("nosniff") && head.contains("DENY"), "{what}");
            if head.contains("text/html") {
                assert_inert(&what, &body);
            }
            if u.ends_with("dag.svg") && st.is_success() {
                assert!(
                    !body.contains("<script") && !body.contains("<b>"),
                    "{what}:\n{body}"
                );
                assert!(
                    !body.contains('\u{1b}') && !body.contains('\u{7}'),
                    "{what}"
                );
            }
            if u.contains("/noisy/log") && st.is_success() {
                assert!(
                    body.contains("event: end"),
                    "an ended step's stream ends: {body}"
                );
                assert!(!body.contains("<script"), "{body}");
                seen_log |= body.contains("\\\\x1b[2J") && body.contains("bell");
            }
        }
    }
    assert!(
        seen_log,
        "the log with its control characters shown as text was streamed"
    );
    // The gate's page for someone who may answer: its form is there, and its text is inert.
    let page = http
        .get(format!("{}/runs/{run}", s.base))
        .header(AUTHORIZATION, bearer("ann-token"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("/steps/gate/approve"), "{page}");
    assert!(
        page.contains("Go &lt;b&gt;on&lt;&#x2f;b&gt; ***?"),
        "{page}"
    );
}

/// A stream opens at the end of the log, and a reconnect with `Last-Event-ID` resumes just
/// after what was received: nothing twice, nothing missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_log_stream_opens_at_the_end_and_resumes() {
    let sb = Sandbox::new();
    let lines: String = (0..3000).map(|i| format!("echo line {i:05}\n")).collect();
    let rb = format!(
        "cairn: 1\nname: long\nsteps:\n  - id: talk\n    shell: |\n{}",
        lines
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let (code, run) = sb.run("long.yaml", &rb);
    assert_eq!(code, 0);
    let s = sb.serve(&[]);
    let http = client();
    let url = format!("{}/api/runs/{run}/steps/talk/log", s.base);
    let body = http
        .get(&url)
        .send()
        .await
        .expect("sse")
        .text()
        .await
        .expect("text");
    assert!(body.contains("line 02999"), "opens at the end");
    assert!(
        !body.contains("line 00000"),
        "not at the start of a long log"
    );
    let first_id: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .and_then(|v| v.parse().ok())
        .expect("an event id");
    // From the start, then resumed after the first event: the two together are the log once.
    let whole = http
        .get(format!("{url}?from=0"))
        .send()
        .await
        .expect("sse")
        .text()
        .await
        .expect("text");
    let text_of = |sse: &str| -> String {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_string))
            .collect()
    };
    let all = text_of(&whole);
    assert!(all.contains("line 00000") && all.contains("line 02999"));
    let resumed = http
        .get(&url)
        .header("Last-Event-ID", "1000")
        .send()
        .await
        .expect("sse")
        .text()
        .await
        .expect("text");
    let all_bytes = all.as_bytes();
    assert_eq!(
        text_of(&resumed).as_bytes(),
        &all_bytes[1000..],
        "resumed at byte 1000"
    );
    assert!(first_id > 1000);
}

/// A running step's output reaches an SSE client as the step prints it, not when it ends: a
/// real `cairn run` prints a line, sleeps, prints another, and the first line arrives (over
/// real HTTP from a real `cairn serve`) while the step still runs. A secret printed in two
/// halves with a pause between them is masked whole; when the step ends the stream says
/// `reset` and sends the step's log as `cairn run` always wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_steps_lines_reach_the_stream_before_it_ends() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("live.yaml"),
        r#"cairn: 1
name: live
secrets:
  canary: { env: CAIRN_CANARY }
steps:
  - id: talk
    shell: |
      echo "first line"
      printf 'key %s' "${TOKEN:0:6}"; sleep 0.5; printf '%s end\n' "${TOKEN:6}"
      sleep 4
      echo "second line"
    env: { TOKEN: "{{ secrets.canary }}" }
"#,
    )
    .expect("runbook");
    let mut c = sb.cairn();
    c.args(["run", "live.yaml"]);
    let mut run_proc = c.spawn().expect("spawn cairn run");
    let mut out = BufReader::new(run_proc.stdout.take().expect("stdout"));
    let err = process::drain(run_proc.stderr.take().expect("stderr"));
    let mut id = String::new();
    out.read_line(&mut id).expect("the run id");
    let run = id.trim().to_string();
    assert!(!run.is_empty(), "no run id");
    // The store exists once the run is started.
    let s = sb.serve(&[]);
    let http = client();
    // The step's record says it runs before a stream can be asked for.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = http
            .get(format!("{}/api/runs/{run}", s.base))
            .send()
            .await
            .expect("get run")
            .json()
            .await
            .unwrap_or_default();
        let running = v["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|st| st["step_id"] == "talk" && st["status"] == "running");
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "the step never ran: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut res = http
        .get(format!("{}/api/runs/{run}/steps/talk/log?from=0", s.base))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = String::new();
    let mut first_at = None;
    while let Some(chunk) = res.chunk().await.expect("chunk") {
        body.push_str(&String::from_utf8_lossy(&chunk));
        if first_at.is_none() && body.contains("first line") {
            first_at = Some(Instant::now());
            assert!(
                run_proc.try_wait().expect("try_wait").is_none(),
                "the run ended before its first line reached the stream"
            );
            assert!(!body.contains("second line"), "{body}");
        }
        if body.contains("event: end") {
            break;
        }
    }
    let first_at = first_at.expect("the first line never came");
    let status = process::wait_or_kill(&mut run_proc, Duration::from_secs(30)).expect("run ended");
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    assert!(status.success(), "{stderr}");
    assert!(
        first_at.elapsed() > Duration::from_secs(2),
        "the first line came only {:?} before the end",
        first_at.elapsed()
    );
    assert_clean("the live log stream", &body);
    assert!(
        !body.contains("sErVe-"),
        "half of the secret leaked: {body}"
    );
    let texts: Vec<(String, String)> = body
        .split("\n\n")
        .filter_map(|ev| {
            let kind = ev.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = ev.lines().find_map(|l| l.strip_prefix("data: "))?;
            let v: Value = serde_json::from_str(data).ok()?;
            Some((
                kind.to_string(),
                v["text"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let reset = texts
        .iter()
        .position(|(k, _)| k == "reset")
        .expect("a reset when the step's log was written whole");
    let live: String = texts[..reset].iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        live.starts_with("first line\nkey *** end\n"),
        "live: {live:?}"
    );
    let last: String = texts[reset + 1..].iter().map(|(_, t)| t.as_str()).collect();
    let on_disk = std::fs::read_to_string(sb.path(&format!(".cairn/logs/{run}/talk.log")))
        .expect("the step's log");
    assert_eq!(last, on_disk);
    assert_eq!(
        on_disk,
        "$ exit 0\n--- stdout ---\nfirst line\nkey *** end\nsecond line\n\n--- stderr ---\n\n"
    );
}

/// A run's page shows its RTO and RPO as its Markdown report states them, and offers the
/// three reports for download: each is, byte for byte, what `cairn show RUN` writes with
/// `--report`, `--junit` and `--metrics-file` (one renderer, the CLI's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_has_its_objectives_and_the_clis_reports() {
    let sb = Sandbox::new();
    let (code, run) = sb.run(
        "drill.yaml",
        "cairn: 1\nname: drill\nrto: 1h\nrpo: 5m\nsteps:\n  - id: restore\n    shell: echo restored\n  - id: verify\n    needs: [restore]\n    check: { value: \"42\", warning: \"> 100\" }\n",
    );
    assert_eq!(code, 0);
    let (_, plain) = sb.run(
        "plain.yaml",
        "cairn: 1\nname: plain\nsteps:\n  - id: a\n    shell: \"true\"\n",
    );
    let mut show = sb.cairn();
    show.args([
        "show",
        &run,
        "--report",
        "r.md",
        "--junit",
        "r.xml",
        "--metrics-file",
        "r.prom",
    ]);
    let (status, _, err) = process::capture(show, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let s = sb.serve(&[]);
    let http = client();
    let v: Value = http
        .get(format!("{}/api/runs/{run}", s.base))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let objectives: Vec<&str> = v["objectives"]
        .as_array()
        .expect("objectives")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let written = std::fs::read_to_string(sb.path("r.md")).expect("report");
    assert_eq!(objectives.len(), 2, "{v:#}");
    assert!(
        objectives[0].starts_with("RTO 1h: **met**"),
        "{objectives:?}"
    );
    assert!(
        objectives[1].starts_with("RPO 5m: declared"),
        "{objectives:?}"
    );
    for line in &objectives {
        assert!(
            written.contains(&format!("- {line}\n")),
            "{line} not in:\n{written}"
        );
    }
    let page = http
        .get(format!("{}/runs/{run}", s.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("RTO 1h: met"), "{page}");
    for (format, file, kind) in [
        ("markdown", "r.md", "text/markdown"),
        ("junit", "r.xml", "application/xml"),
        ("metrics", "r.prom", "text/plain"),
    ] {
        assert!(
            page.contains(&format!("/runs/{run}/reports/{format}")),
            "{page}"
        );
        for base in ["/runs", "/api/runs"] {
            let res = http
                .get(format!("{}{base}/{run}/reports/{format}", s.base))
                .send()
                .await
                .expect("report");
            assert_eq!(res.status(), StatusCode::OK);
            let head = format!("{:?}", res.headers());
            assert!(head.contains(kind) && head.contains("attachment"), "{head}");
            let body = res.text().await.expect("body");
            let cli = std::fs::read_to_string(sb.path(file)).expect("the CLI's report");
            assert_eq!(body, cli, "{base} {format}");
        }
    }
    // A runbook that declares neither has none to show; an unknown format is a 404.
    let v: Value = http
        .get(format!("{}/api/runs/{plain}", s.base))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    assert_eq!(v["objectives"], serde_json::json!([]));
    let res = http
        .get(format!("{}/api/runs/{run}/reports/pdf", s.base))
        .send()
        .await
        .expect("report");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// `--auth none` reads on loopback only and takes no action; a page of the history is read
/// by cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_none_reads_on_loopback_only_and_pages_by_cursor() {
    let sb = Sandbox::new();
    let (_, first) = sb.run("gated.yaml", GATED);
    let (_, second) = sb.run("gated.yaml", GATED);
    let mut c = sb.cairn();
    c.args(["serve", "--listen", "0.0.0.0:0"]);
    let (status, _, err) = process::capture(c, Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("loopback"), "{err}");
    let s = sb.serve(&[]);
    let http = client();
    let page: Value = http
        .get(format!("{}/api/runs?limit=1", s.base))
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("json");
    assert_eq!(page["runs"][0]["id"], second.as_str());
    let next = page["next"].as_str().expect("a next page");
    let page: Value = http
        .get(format!(
            "{}/api/runs?limit=1&after={}",
            s.base,
            urlencoding::encode(next)
        ))
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("json");
    assert_eq!(page["runs"][0]["id"], first.as_str());
    assert_eq!(page["next"], Value::Null);
    let (st, _, body) = fetch(http.get(format!("{}/api/runs?after=junk", s.base))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, _, body) =
        fetch(http.post(format!("{}/api/runs/{first}/steps/gate/approve", s.base))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("only reads"), "{body}");
}

/// An operator cancels a running run (as Ctrl-C would) and re-runs a finished one from a step;
/// a viewer may do neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cancels_and_reruns_from_a_step() {
    let sb = Sandbox::new();
    let tokens = sb.tokens(&[
        ("olga", "operator", "olga-token"),
        ("vic", "viewer", "vic-token"),
    ]);
    std::fs::write(
        sb.path("slow.yaml"),
        "cairn: 1\nname: slow\nsteps:\n  - id: first\n    shell: echo one >> first.txt\n  - id: wait\n    shell: sleep 60\n",
    )
    .expect("runbook");
    let mut run_cmd = sb.cairn();
    run_cmd.args(["run", "slow.yaml"]).stdout(Stdio::piped());
    let mut running = run_cmd.spawn().expect("cairn run");
    let mut id = String::new();
    BufReader::new(running.stdout.take().expect("stdout"))
        .read_line(&mut id)
        .expect("run id");
    let run = id.trim().to_string();
    let s = sb.serve(&[
        "--auth",
        "token",
        "--tokens",
        tokens.to_str().expect("path"),
    ]);
    let http = client();
    let olga = |r: reqwest::RequestBuilder| r.header(AUTHORIZATION, bearer("olga-token"));
    let vic = |r: reqwest::RequestBuilder| r.header(AUTHORIZATION, bearer("vic-token"));
    wait_for_status(&http, &s.base, &run, &olga, "running").await;
    let cancel = format!("{}/api/runs/{run}/cancel", s.base);
    let (st, _, _) = fetch(vic(http.post(&cancel))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, body) = fetch(olga(http.post(&cancel))).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let status = process::wait_or_kill(&mut running, Duration::from_secs(30)).expect("run ends");
    assert_eq!(status.code(), Some(130), "cancelled as by Ctrl-C");
    wait_for_status(&http, &s.base, &run, &olga, "interrupted").await;
    let (st, _, body) = fetch(olga(http.post(&cancel))).await;
    assert_eq!(st, StatusCode::CONFLICT, "not running any more: {body}");

    // Re-run from the first step: it runs again (and the sleep with it, cancelled again).
    let resume = format!("{}/api/runs/{run}/resume", s.base);
    let (st, _, body) = fetch(
        olga(http.post(&resume))
            .header("content-type", "application/json")
            .body("{\"from\": \"nope\"}"),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let (st, _, body) = fetch(
        vic(http.post(&resume))
            .header("content-type", "application/json")
            .body("{\"from\": \"first\"}"),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, _, body) = fetch(
        olga(http.post(&resume))
            .header("content-type", "application/json")
            .body("{\"from\": \"first\"}"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(sb.path("first.txt"))
        .unwrap_or_default()
        .lines()
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the step was not re-run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_status(&http, &s.base, &run, &olga, "running").await;
    let (st, _, body) = fetch(olga(http.post(&cancel))).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    wait_for_status(&http, &s.base, &run, &olga, "interrupted").await;
    let v: Value = olga(http.get(format!("{}/api/runs/{run}", s.base)))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let acts: Vec<&str> = v["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(
        acts,
        ["cancel", "cancel", "rerun", "rerun", "cancel"],
        "{v:#}"
    );
}

/// The runbooks page: each file's validation with its errors located, its last runs; only files
/// of the folder are read. Runs are found by id prefix and by day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbooks_page_and_finding_runs() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("runbooks")).expect("dir");
    let (_, run) = sb.run("runbooks/good.yaml", GATED);
    std::fs::write(
        sb.path("runbooks/bad.yaml"),
        "cairn: 1\nname: bad\nsteps:\n  - id: a\n    needs: [nope]\n    shell: echo\n",
    )
    .expect("bad");
    std::fs::write(
        sb.path("runbooks/x<b>y.yaml"),
        "cairn: 1\nname: \"</script>\"\n",
    )
    .expect("odd");
    std::fs::write(sb.path("secret.yaml"), "not under the folder").expect("outside");
    let s = sb.serve(&["--runbooks", "runbooks"]);
    let http = client();
    let get = |u: String| {
        let http = http.clone();
        async move {
            let res = http.get(u).send().await.expect("get");
            let st = res.status();
            (st, res.text().await.expect("text"))
        }
    };
    let (st, body) = get(format!("{}/api/runbooks", s.base)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    let files: Vec<(&str, bool)> = list["runbooks"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| (r["file"].as_str().unwrap_or(""), r["valid"] == true))
        .collect();
    assert_eq!(
        files,
        [
            ("bad.yaml", false),
            ("good.yaml", true),
            ("x<b>y.yaml", false)
        ]
    );
    let (_, body) = get(format!("{}/api/runbooks/view?file=bad.yaml", s.base)).await;
    let bad: Value = serde_json::from_str(&body).expect("json");
    let diag = bad["diagnostics"][0].as_str().expect("a diagnostic");
    assert!(
        diag.contains("bad.yaml:5:") && diag.contains("nope"),
        "{diag}"
    );
    let (_, body) = get(format!("{}/api/runbooks/view?file=good.yaml", s.base)).await;
    let good: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(good["runs"][0]["id"], run.as_str());
    assert_eq!(good["steps"][1]["kind"], "approval");
    for outside in ["../secret.yaml", "/etc/passwd", "secret.yaml"] {
        let (st, _) = get(format!(
            "{}/api/runbooks/view?file={}",
            s.base,
            urlencoding::encode(outside)
        ))
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{outside}");
    }
    for page in [
        "/runbooks",
        "/runbooks/view?file=x%3Cb%3Ey.yaml",
        "/runbooks/view?file=bad.yaml",
    ] {
        let (st, body) = get(format!("{}{page}", s.base)).await;
        assert_eq!(st, StatusCode::OK, "{page}: {body}");
        assert_inert(page, &body);
    }

    let prefix = &run[..12];
    let (_, body) = get(format!("{}/api/runs?id={prefix}", s.base)).await;
    let found: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(found["runs"][0]["id"], run.as_str());
    let (_, body) = get(format!("{}/api/runs?before=2000-01-01", s.base)).await;
    let none: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(none["runs"], serde_json::json!([]));
    let (_, body) = get(format!("{}/api/runs?before=2999-01-01", s.base)).await;
    let all: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(all["runs"][0]["id"], run.as_str());
    let (st, _) = get(format!("{}/api/runs?before=yesterday", s.base)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

/// The bin folder of the API checkers: `$CAIRN_SCHEMATHESIS_BIN`, as `.ci/schemathesis-venv.sh`
/// prints it (the test command sets it).
fn api_checkers() -> PathBuf {
    let dir = std::env::var_os("CAIRN_SCHEMATHESIS_BIN")
        .map(PathBuf::from)
        .expect(
            "CAIRN_SCHEMATHESIS_BIN is not set: run `bash .ci/schemathesis-venv.sh` (it installs \
         schemathesis and openapi-spec-validator into a cached virtualenv and prints the folder \
         to put in CAIRN_SCHEMATHESIS_BIN)",
        );
    assert!(
        dir.join("schemathesis").is_file(),
        "no schemathesis in {}",
        dir.display()
    );
    dir
}

/// The OpenAPI document is valid OpenAPI 3.1 by a real validator, and a real API fuzzer sends
/// every operation requests generated from it (with an identity that may do everything) without
/// one server error.
#[test]
fn openapi_is_valid_and_the_fuzzer_finds_no_server_error() {
    let bin = api_checkers();
    let sb = Sandbox::new();
    let (_, _paused) = sb.run("gated.yaml", GATED);
    let (_, _done) = sb.run(
        "plain.yaml",
        "cairn: 1\nname: plain\nsteps:\n  - id: a\n    shell: echo a\n",
    );
    let tokens = sb.tokens(&[("root-admin", "admin", "admin-token")]);
    let s = sb.serve(&[
        "--auth",
        "token",
        "--tokens",
        tokens.to_str().expect("path"),
        "--runbooks",
        ".",
    ]);
    let doc = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            client()
                .get(format!("{}/api/openapi.json", s.base))
                .send()
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body")
        });
    std::fs::write(sb.path("openapi.json"), &doc).expect("write");
    let mut validate = Command::new(bin.join("openapi-spec-validator"));
    validate.arg(sb.path("openapi.json"));
    validate.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (st, out, err) = process::capture(validate, Duration::from_secs(120));
    assert!(
        st.success(),
        "the OpenAPI document is not valid:\n{}\n{err}",
        String::from_utf8_lossy(&out)
    );

    let mut fuzz = Command::new(bin.join("schemathesis"));
    // In the sandbox: schemathesis keeps a cache folder where it runs.
    fuzz.current_dir(sb.dir.path())
        .args(["run", &format!("{}/api/openapi.json", s.base)])
        .args(["--checks", "not_a_server_error"])
        .args(["--header", "Authorization: Bearer admin-token"])
        .args(["--max-examples", "40"])
        // A fixed seed: CI is reproducible (another seed explores more, by hand).
        .args(["--seed", "24301"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (st, out, err) = process::capture(fuzz, Duration::from_secs(600));
    let out = String::from_utf8_lossy(&out);
    assert!(
        st.success(),
        "the fuzzer found server errors:\n{out}\n{err}"
    );
    assert!(out.contains("passed"), "{out}");
}

/// The console in a real browser: Debian's chromium driven by playwright-core
/// (`tests/browser/console.cjs`), against a real server and runs of the real CLI. The node
/// modules come from `.ci/playwright.sh` (`$CAIRN_PLAYWRIGHT_NODE_MODULES`); the screenshots of
/// each page are kept in `$CAIRN_SCREENSHOTS` (default: the test's target folder).
#[test]
fn browser_console() {
    let modules = std::env::var_os("CAIRN_PLAYWRIGHT_NODE_MODULES")
        .map(PathBuf::from)
        .expect(
            "CAIRN_PLAYWRIGHT_NODE_MODULES is not set: run `bash .ci/playwright.sh` (it installs \
             Debian's chromium and playwright-core into a cached folder and prints the \
             node_modules to put in CAIRN_PLAYWRIGHT_NODE_MODULES)",
        );
    assert!(
        modules.join("playwright-core").is_dir(),
        "no playwright-core in {}",
        modules.display()
    );
    let sb = Sandbox::new();
    let (code, run) = sb.run("gated.yaml", GATED);
    assert_eq!(code, 3);
    let starter = process::whoami();
    let tokens = sb.tokens(&[
        ("alice", "approver", "alice-token"),
        ("vic", "viewer", "vic-token"),
        (&starter, "approver", "starter-token"),
    ]);
    // A run whose step is still running while the browser watches its log.
    std::fs::write(
        sb.path("slow.yaml"),
        "cairn: 1\nname: slow\nsteps:\n  - id: talk\n    shell: sleep 8; echo done-marker\n",
    )
    .expect("runbook");
    let mut slow_cmd = sb.cairn();
    slow_cmd.args(["run", "slow.yaml"]);
    let mut slow = slow_cmd.spawn().expect("cairn run");
    let mut id = String::new();
    BufReader::new(slow.stdout.take().expect("stdout"))
        .read_line(&mut id)
        .expect("run id");
    let slow_err = process::drain(slow.stderr.take().expect("stderr"));
    let s = sb.serve(&[
        "--auth",
        "token",
        "--tokens",
        tokens.to_str().expect("path"),
    ]);
    let untrusting = sb.serve(&["--auth", "proxy", "--trusted-proxy", "192.0.2.1/32"]);
    let shots = std::env::var_os("CAIRN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-screenshots"));
    std::fs::create_dir_all(&shots).expect("screenshots folder");
    let mut node = Command::new("node");
    node.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/console.cjs"
    ))
    .env("NODE_PATH", &modules)
    .env("CAIRN_BASE", &s.base)
    .env("CAIRN_PROXY_BASE", &untrusting.base)
    .env("CAIRN_RUN", &run)
    .env("CAIRN_SLOW_RUN", id.trim())
    .env("CAIRN_SHOTS", &shots)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let (st, out, err) = process::capture(node, Duration::from_secs(180));
    assert!(
        st.success(),
        "the browser test failed:\n{}\n{err}",
        String::from_utf8_lossy(&out)
    );
    let _ = process::wait_or_kill(&mut slow, Duration::from_secs(30));
    let _ = slow_err.join();
    // The CLI sees the answer given in the browser.
    let mut show = sb.cairn();
    show.args(["show", &run, "--output", "json"]);
    let (_, out, _) = process::capture(show, Duration::from_secs(30));
    let shown: Value = serde_json::from_slice(&out).expect("show json");
    assert_eq!(shown["run"]["status"], "succeeded");
    assert_eq!(shown["approvals"][0]["by"], "alice");
    assert_eq!(
        shown["approvals"][0]["comment"],
        "approved from the browser"
    );
    for name in [
        "runs",
        "approvals",
        "run-waiting",
        "run-done",
        "step",
        "step-live",
        "dag",
        "refused",
    ] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "screenshot {name}"
        );
    }
}

/// A gated runbook with labels.
fn gated_with(name: &str, labels: &str) -> String {
    GATED.replacen(
        "name: gated\n",
        &format!("name: {name}\nlabels: {labels}\n"),
        1,
    )
}

/// Runs carry their runbook's labels: the runs page and its API filter by them and show them
/// as text. An approver scoped by label answers in a run whose labels match and is refused
/// (403, written to the run's audit trail) in any other; the page offers buttons only where
/// they can be used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_filter_and_label_scoped_roles() {
    let sb = Sandbox::new();
    let hostile = "<b>x</b>&\\\"q'";
    let (code, memory) = sb.run(
        "memory.yaml",
        &gated_with(
            "memory-gate",
            &format!("{{ team: memory, note: \"{hostile}\" }}"),
        ),
    );
    assert_eq!(code, 3, "the run pauses at its gate");
    let (code, storage) = sb.run(
        "storage.yaml",
        &gated_with("storage-gate", "{ team: storage }"),
    );
    assert_eq!(code, 3, "the run pauses at its gate");
    let tokens = sb.tokens(&[
        ("alice", "approver[team=memory]", "alice-token"),
        ("olga", "viewer,operator[team=storage]", "olga-token"),
    ]);
    let s = sb.serve(&[
        "--auth",
        "token",
        "--tokens",
        tokens.to_str().expect("path"),
    ]);
    let http = client();
    let alice = |r: reqwest::RequestBuilder| r.header(AUTHORIZATION, bearer("alice-token"));
    let runs = |q: String| {
        let http = http.clone();
        let base = s.base.clone();
        async move {
            let (st, _, body) = fetch(
                http.get(format!("{base}/api/runs?{q}"))
                    .header(AUTHORIZATION, bearer("olga-token")),
            )
            .await;
            (st, body)
        }
    };

    // The filter, by the API.
    let (st, body) = runs(format!("label={}", urlencoding::encode("team=memory"))).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let listed: Vec<&str> = v["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(listed, [memory.as_str()]);
    assert_eq!(v["runs"][0]["labels"]["team"], "memory");
    assert_eq!(v["runs"][0]["labels"]["note"], hostile.replace('\\', ""));
    assert_eq!(v["filter"]["label"], "team=memory");
    let (_, body) = runs(format!("label={}", urlencoding::encode("team=storage"))).await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["runs"][0]["id"], storage.as_str());
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(1));
    let (_, body) = runs(format!(
        "label={}&limit=1",
        urlencoding::encode("team=memory,kind=none")
    ))
    .await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["runs"], serde_json::json!([]), "every label must match");
    let (st, body) = runs("label=team".to_string()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

    // The filter, by the page's form: the runs matching, the hostile label as text.
    let (st, _, html) = fetch(alice(http.get(format!(
        "{}/runs?label={}",
        s.base,
        urlencoding::encode("team=memory")
    ))))
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains(&memory) && !html.contains(&storage), "{html}");
    assert!(!html.contains("<b>x</b>"), "the label is markup: {html}");
    assert!(
        html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;x&lt;/b&gt;"),
        "{html}"
    );
    assert!(
        html.contains(r#"name="label" value="team=memory""#),
        "{html}"
    );

    // Alice's role and its scope.
    let me: Value = alice(http.get(format!("{}/api/me", s.base)))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["roles"], serde_json::json!(["approver[team=memory]"]));

    // The run pages offer the answer only where alice may give it.
    let (_, _, page) = fetch(alice(http.get(format!("{}/runs/{storage}", s.base)))).await;
    assert!(
        page.contains("Waiting for approval") && !page.contains("/steps/gate/approve"),
        "{page}"
    );
    let (_, _, page) = fetch(alice(http.get(format!("{}/runs/{memory}", s.base)))).await;
    assert!(page.contains("/steps/gate/approve"), "{page}");

    // Out of her scope: refused, recorded, nothing answered.
    let (st, _, body) = fetch(alice(
        http.post(format!("{}/api/runs/{storage}/steps/gate/approve", s.base)),
    ))
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("approver[team=memory]"), "{body}");
    let v: Value = alice(http.get(format!("{}/api/runs/{storage}", s.base)))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    assert_eq!(v["approvals"], serde_json::json!([]));
    let refusal = &v["actions"][0];
    assert_eq!(
        (refusal["by"].as_str(), refusal["action"].as_str()),
        (Some("alice"), Some("approve")),
        "{v:#}"
    );
    assert!(
        refusal["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("refused:") && d.contains("team=storage")),
        "{v:#}"
    );
    // An operator scoped to storage may not resume the memory run.
    let (st, _, body) = fetch(
        http.post(format!("{}/api/runs/{memory}/resume", s.base))
            .header(AUTHORIZATION, bearer("olga-token")),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");

    // In her scope: recorded, and the run resumed to its end.
    let (st, _, body) = fetch(alice(
        http.post(format!("{}/api/runs/{memory}/steps/gate/approve", s.base)),
    ))
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    wait_for_status(&http, &s.base, &memory, &alice, "succeeded").await;
    wait_for_status(&http, &s.base, &storage, &alice, "paused").await;
}

/// A scope the token file does not spell right stops the server at startup, at its line:
/// never a role over every run.
#[test]
fn a_malformed_label_scope_in_the_token_file_is_refused_at_startup() {
    let sb = Sandbox::new();
    for (roles, why) in [
        ("approver[team]", "KEY=VALUE"),
        ("approver[team=memory", "`]`"),
        ("approver[=memory]", "label key or value"),
        ("approver[team=a b]", ""),
        ("wizard[team=memory]", "unknown role"),
    ] {
        let tokens = sb.tokens(&[
            ("vic", "viewer", "vic-token"),
            ("alice", roles, "alice-token"),
        ]);
        let mut c = sb.cairn();
        c.args([
            "serve",
            "--auth",
            "token",
            "--tokens",
            tokens.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
        ]);
        let (status, out, err) = process::capture(c, Duration::from_secs(30));
        assert_ne!(status.code(), Some(0), "{roles}: {err}");
        assert!(out.is_empty(), "{roles}: the server did not start");
        assert!(
            err.contains(&format!("{}:2:", tokens.display())) && err.contains(why),
            "{roles}: {err}"
        );
    }
}
