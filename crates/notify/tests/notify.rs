//! Notices delivered to real receivers started here: an HTTP server (webhook, Slack,
//! PagerDuty), aiosmtpd (email), a closed port and a server that never answers.

mod common;

use cairn_notify::{
    Delivery, Dispatcher, Event, Kind, Notice, NotifierConfig, RetryPolicy, Routes,
};
use common::receiver::{Receiver, Silent, closed_port};
use common::smtp::SmtpServer;
use hmac::{KeyInit, Mac};
use std::time::{Duration, Instant};

const CANARY: &str = "canary-7f3a91c2e5";

fn cfg(name: &str, kind: Kind, timeout: Duration) -> NotifierConfig {
    NotifierConfig {
        name: name.into(),
        kind,
        timeout,
    }
}

fn waiting() -> Notice {
    Notice::gate_waiting(
        "restore",
        "01JRUN",
        "gate",
        "Restore dump-42 over production?",
    )
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        delays: vec![Duration::from_millis(50), Duration::from_millis(50)],
    }
}

fn identity(t: &str) -> String {
    t.to_string()
}

/// Every delivery recorded, after the sends end.
async fn finish(d: &Dispatcher) -> Vec<Delivery> {
    let done = d.shutdown(Duration::from_secs(20)).await;
    assert_eq!(done.abandoned, 0, "{:?}", done.deliveries);
    done.deliveries
}

#[tokio::test]
async fn webhook_posts_the_notice_signed_with_hmac_sha256() {
    let rx = Receiver::start().await;
    let hook = cfg(
        "audit",
        Kind::Webhook {
            url: rx.url("/hook"),
            secret: Some(CANARY.into()),
            headers: vec![("X-Team".into(), "dba".into())],
        },
        Duration::from_secs(5),
    );
    let routes = Routes {
        waiting: vec!["audit".into()],
        ..Routes::default()
    };
    let d = Dispatcher::new(vec![hook], routes, quick_retry(), identity);
    assert_eq!(d.notify(&waiting()), ["audit"]);
    let records = finish(&d).await;
    assert_eq!(records.len(), 1);
    assert!(records[0].ok(), "{records:?}");

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-team"], "dba");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(CANARY.as_bytes()).expect("key");
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.headers["x-cairn-signature"], want);
    let body = r.json();
    assert_eq!(body["event"], "waiting");
    assert_eq!(body["runbook"], "restore");
    assert_eq!(body["run_id"], "01JRUN");
    assert_eq!(body["step"], "gate");
    assert_eq!(body["message"], "Restore dump-42 over production?");
    assert_eq!(body["approve_command"], "cairn approve 01JRUN gate");
    assert_eq!(body["reject_command"], "cairn reject 01JRUN gate");
    assert_eq!(body["dedup_key"], "cairn/01JRUN/gate");
    // The key signs; it never travels.
    let wire = format!(
        "{} {:?} {}",
        r.uri,
        r.headers,
        String::from_utf8_lossy(&r.body)
    );
    assert!(!wire.contains(CANARY), "{wire}");
}

#[tokio::test]
async fn slack_gets_incoming_webhook_text_with_the_approve_command() {
    let rx = Receiver::start().await;
    let team = cfg(
        "team",
        Kind::Slack {
            url: rx.url("/services/T0/B0/x"),
        },
        Duration::from_secs(5),
    );
    let routes = Routes {
        waiting: vec!["team".into()],
        ..Routes::default()
    };
    let d = Dispatcher::new(vec![team], routes, quick_retry(), identity);
    d.notify(&Notice::gate_waiting(
        "restore",
        "01JRUN",
        "gate",
        "Restore <dump> & go?",
    ));
    assert!(finish(&d).await.iter().all(Delivery::ok));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].uri, "/services/T0/B0/x");
    let body = reqs[0].json();
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["text"]);
    assert_eq!(
        body["text"],
        "cairn: restore run 01JRUN waits for approval at `gate`: Restore &lt;dump&gt; &amp; go?\n\
         Approve: `cairn approve 01JRUN gate`\nReject: `cairn reject 01JRUN gate`"
    );
}

#[tokio::test]
async fn pagerduty_triggers_then_resolves_with_the_same_dedup_key() {
    let rx = Receiver::start().await;
    let oncall = cfg(
        "oncall",
        Kind::PagerDuty {
            routing_key: "R0UTINGKEY0123456789".into(),
            url: rx.url("/pd/v2/enqueue"),
        },
        Duration::from_secs(5),
    );
    let routes = Routes {
        waiting: vec!["oncall".into()],
        failed: vec!["oncall".into()],
        ..Routes::default()
    };
    let d = Dispatcher::new(vec![oncall], routes, quick_retry(), identity);
    d.notify(&waiting());
    // One at a time: the receiver sees them in order.
    wait_for(&rx, 1).await;
    assert_eq!(
        d.notify(&Notice::gate_answered(
            "restore",
            "01JRUN",
            "gate",
            "approved by alice"
        )),
        ["oncall"]
    );
    wait_for(&rx, 2).await;
    d.notify(&Notice::new(
        Event::Failed,
        "restore",
        "01JRUN",
        None,
        "step `load` failed: exit 1",
    ));
    wait_for(&rx, 3).await;
    // `succeeded` lists nobody, yet the run's incident opened by `failed` is resolved.
    assert_eq!(
        d.notify(&Notice::new(
            Event::Succeeded,
            "restore",
            "01JRUN",
            None,
            ""
        )),
        ["oncall"]
    );
    let records = finish(&d).await;
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(Delivery::ok), "{records:?}");

    let bodies: Vec<serde_json::Value> = rx.requests().iter().map(|r| r.json()).collect();
    assert_eq!(bodies.len(), 4);
    let trigger = &bodies[0];
    assert_eq!(trigger["routing_key"], "R0UTINGKEY0123456789");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "cairn/01JRUN/gate");
    assert_eq!(
        trigger["payload"]["summary"],
        "cairn: restore run 01JRUN waits for approval at `gate`: Restore dump-42 over production?"
    );
    assert_eq!(trigger["payload"]["source"], "cairn/restore");
    assert_eq!(trigger["payload"]["severity"], "warning");
    assert_eq!(
        trigger["payload"]["custom_details"]["approve_command"],
        "cairn approve 01JRUN gate"
    );
    let resolve = &bodies[1];
    assert_eq!(
        resolve,
        &serde_json::json!({
            "routing_key": "R0UTINGKEY0123456789",
            "event_action": "resolve",
            "dedup_key": "cairn/01JRUN/gate",
        })
    );
    assert_eq!(bodies[2]["event_action"], "trigger");
    assert_eq!(bodies[2]["dedup_key"], "cairn/01JRUN");
    assert_eq!(bodies[2]["payload"]["severity"], "critical");
    assert_eq!(bodies[3]["event_action"], "resolve");
    assert_eq!(bodies[3]["dedup_key"], "cairn/01JRUN");
}

async fn wait_for(rx: &Receiver, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while rx.requests().len() < n {
        assert!(
            Instant::now() < until,
            "the receiver saw {:?}",
            rx.requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server() {
    let smtp = SmtpServer::start();
    let dba = cfg(
        "dba",
        Kind::Email {
            smtp: format!("smtp://127.0.0.1:{}", smtp.port),
            starttls: false,
            from: "cairn@example.org".into(),
            to: vec!["a@example.org".into(), "b@example.org".into()],
            username: None,
            password: None,
        },
        Duration::from_secs(10),
    );
    let routes = Routes {
        waiting: vec!["dba".into()],
        ..Routes::default()
    };
    let d = Dispatcher::new(vec![dba], routes, quick_retry(), identity);
    d.notify(&waiting());
    let records = finish(&d).await;
    assert!(records.iter().all(Delivery::ok), "{records:?}");
    let mails = smtp.mails(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m["mail_from"], "cairn@example.org");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["a@example.org", "b@example.org"])
    );
    assert_eq!(
        m["subject"],
        "cairn: restore run 01JRUN waits for approval at `gate`: Restore dump-42 over production?"
    );
    let body = m["body"].as_str().expect("body");
    for want in [
        "runbook: restore",
        "run:     01JRUN",
        "step:    gate",
        "Restore dump-42 over production?",
        "To approve:  cairn approve 01JRUN gate",
        "To reject:   cairn reject 01JRUN gate",
    ] {
        assert!(body.contains(want), "{want:?} not in:\n{body}");
    }
}

#[tokio::test]
async fn smtp_credentials_never_go_out_unencrypted_to_another_host() {
    let dba = cfg(
        "dba",
        Kind::Email {
            // TEST-NET-1: refused before any connection is tried.
            smtp: "smtp://192.0.2.1:25".into(),
            starttls: false,
            from: "cairn@example.org".into(),
            to: vec!["a@example.org".into()],
            username: Some("cairn".into()),
            password: Some(CANARY.into()),
        },
        Duration::from_secs(30),
    );
    let d = Dispatcher::new(
        vec![dba],
        Routes::default(),
        RetryPolicy { delays: vec![] },
        identity,
    );
    let started = Instant::now();
    d.notify_names(&["dba".into()], &waiting());
    let records = finish(&d).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].error.as_deref(),
        Some(
            "invalid settings: refusing to send SMTP credentials unencrypted: use `starttls: true` or smtps://"
        )
    );
}

/// A receiver that is down or silent costs no more than its timeout per attempt, and never
/// holds up the caller.
#[tokio::test]
async fn down_and_silent_receivers_are_bounded_by_their_timeout() {
    let down = closed_port().await;
    let silent = Silent::start().await;
    let timeout = Duration::from_millis(700);
    let notifiers = vec![
        cfg(
            "down",
            Kind::Slack {
                url: format!("http://{down}/services/{CANARY}"),
            },
            timeout,
        ),
        cfg(
            "silent",
            Kind::PagerDuty {
                routing_key: CANARY.into(),
                url: format!("http://{}/v2/enqueue?{CANARY}", silent.addr),
            },
            timeout,
        ),
        cfg(
            "silent-mail",
            Kind::Email {
                smtp: format!("smtp://{}", silent.addr),
                starttls: false,
                from: "cairn@example.org".into(),
                to: vec!["a@example.org".into()],
                username: Some("cairn".into()),
                password: Some(CANARY.into()),
            },
            timeout,
        ),
    ];
    let routes = Routes {
        failed: vec!["down".into(), "silent".into(), "silent-mail".into()],
        ..Routes::default()
    };
    let d = Dispatcher::new(notifiers, routes, quick_retry(), identity);
    let started = Instant::now();
    d.notify(&Notice::new(
        Event::Failed,
        "restore",
        "01JRUN",
        None,
        "boom",
    ));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "notify waited {:?}",
        started.elapsed()
    );
    let records = finish(&d).await;
    // Three attempts each, run side by side: about 3 timeouts and the two delays.
    assert!(
        started.elapsed() < timeout * 3 + Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    for name in ["down", "silent", "silent-mail"] {
        let mine: Vec<&Delivery> = records.iter().filter(|r| r.notifier == name).collect();
        assert_eq!(mine.len(), 3, "{name}: {records:?}");
        for r in mine {
            assert!(!r.ok(), "{r:?}");
            assert!(r.elapsed < timeout + Duration::from_millis(800), "{r:?}");
        }
    }
    let silent_err = records
        .iter()
        .find(|r| r.notifier == "silent")
        .and_then(|r| r.error.clone());
    assert_eq!(silent_err.as_deref(), Some("timed out after 700ms"));
    for r in &records {
        let e = r.error.as_deref().unwrap_or_default();
        assert!(!e.contains(CANARY), "{r:?}");
    }
}

#[tokio::test]
async fn shutdown_waits_no_longer_than_its_deadline() {
    let silent = Silent::start().await;
    let slow = cfg(
        "slow",
        Kind::Slack {
            url: format!("http://{}/x", silent.addr),
        },
        Duration::from_secs(60),
    );
    let d = Dispatcher::new(
        vec![slow],
        Routes::default(),
        RetryPolicy::default(),
        identity,
    );
    d.notify_names(&["slow".into()], &waiting());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let done = d.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(done.abandoned, 1);
    assert_eq!(done.deliveries.len(), 1, "{:?}", done.deliveries);
    assert_eq!(
        done.deliveries[0].error.as_deref(),
        Some("cancelled: the dispatcher shut down")
    );
    // After shutdown nothing more is sent or recorded.
    d.notify_names(&["slow".into()], &waiting());
    assert!(d.take_deliveries().is_empty());
}

/// Receivers echo what they were sent into their error pages; the secret settings, and the
/// values the caller's masker knows, appear in no recorded error.
#[tokio::test]
async fn secrets_appear_in_no_recorded_error() {
    let rx = Receiver::start().await;
    let url_token = "urltoken-4b1d9e";
    let notifiers = vec![
        cfg(
            "pd",
            Kind::PagerDuty {
                routing_key: CANARY.into(),
                url: rx.url("/fail/pd"),
            },
            Duration::from_secs(5),
        ),
        cfg(
            "hook",
            Kind::Webhook {
                url: rx.url(&format!("/fail/hook?token={url_token}")),
                secret: Some(CANARY.into()),
                headers: vec![("Authorization".into(), format!("Bearer {CANARY}"))],
            },
            Duration::from_secs(5),
        ),
    ];
    let routes = Routes {
        waiting: vec!["pd".into(), "hook".into()],
        ..Routes::default()
    };
    // The engine's masker knows the run's secrets: here the token in the webhook's URL.
    let masker = move |t: &str| t.replace(url_token, "***");
    let d = Dispatcher::new(notifiers, routes, quick_retry(), masker);
    d.notify(&waiting());
    let records = finish(&d).await;
    assert_eq!(records.len(), 6, "{records:?}");
    for r in &records {
        let e = r.error.as_deref().expect("a 500 is a failure");
        assert!(e.starts_with("HTTP 500: refused /fail/"), "{e}");
        assert!(!e.contains(CANARY) && !e.contains(url_token), "{e}");
    }
    // The echo did carry them: the masking was needed.
    let echoed: String = rx
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {:?} {}",
                r.uri,
                r.headers,
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect();
    assert!(echoed.contains(CANARY) && echoed.contains(url_token));
    assert!(
        records
            .iter()
            .any(|r| r.error.as_deref().is_some_and(|e| e.contains("***")))
    );
}

#[tokio::test]
async fn renotify_repeats_until_cancelled() {
    let rx = Receiver::start().await;
    let team = cfg(
        "team",
        Kind::Slack {
            url: rx.url("/services/x"),
        },
        Duration::from_secs(5),
    );
    let routes = Routes {
        waiting: vec!["team".into()],
        ..Routes::default()
    };
    let d = Dispatcher::new(vec![team], routes, quick_retry(), identity);
    let repeat = d.renotify(waiting(), Duration::from_millis(300), None);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    repeat.cancel();
    let seen = rx.requests().len();
    assert_eq!(seen, 3, "three repeats in 1.05s at 300ms");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.requests().len(), seen, "no repeat after cancel");

    // Dropping the handle stops it too; shutdown stops any left running.
    let named = d.renotify(
        waiting(),
        Duration::from_millis(100),
        Some(vec!["team".into()]),
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    drop(named);
    let after_drop = rx.requests().len();
    assert!(after_drop >= seen + 2, "{after_drop}");
    let _kept = d.renotify(waiting(), Duration::from_millis(100), None);
    let started = Instant::now();
    let records = finish(&d).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(records.iter().all(Delivery::ok), "{records:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rx.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests().len(), total, "no repeat after shutdown");
}

#[tokio::test]
async fn an_unknown_name_is_a_recorded_failure() {
    let d = Dispatcher::new(Vec::new(), Routes::default(), quick_retry(), identity);
    d.notify_names(&["ghost".into()], &waiting());
    let records = finish(&d).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].kind, "unknown");
    assert_eq!(
        records[0].error.as_deref(),
        Some("no notifier named `ghost`")
    );
}
