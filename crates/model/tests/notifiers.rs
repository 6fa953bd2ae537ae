//! `notifiers:` and `notify:`: what is read, and every mistake refused at its line and column.

use cairn_model::{Notifier, NotifyEvent, Severity, check, check_notifiers_file, check_with};
use std::path::Path;

const HEAD: &str = "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo\n";

fn templates() -> cairn_template::Templates {
    cairn_template::Templates::new()
}

/// The first error of a runbook made of `HEAD` and `tail`: (line, column, message, help).
fn first_error(tail: &str) -> (u32, u32, String, Option<String>) {
    let yaml = format!("{HEAD}{tail}");
    let (_, diags) = check(Path::new("t.yaml"), &yaml, &templates());
    let e = diags
        .0
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap_or_else(|| panic!("no error for:\n{yaml}"));
    (e.span.line, e.span.col, e.message.clone(), e.help.clone())
}

const FULL: &str = r#"secrets:
  pd_key: { env: PD_KEY }
  slack_hook: { env: SLACK_HOOK }
  hmac: { env: HMAC }
  smtp_pw: { env: SMTP_PW }
inputs:
  team: { default: dba }
vars:
  mail_domain: example.org
notifiers:
  oncall: { pagerduty: { routing_key: "{{ secrets.pd_key }}", url: "http://127.0.0.1:9/v2/enqueue" } }
  team: { slack: { url: "{{ secrets.slack_hook }}", timeout: 3s } }
  audit:
    webhook:
      url: https://hooks.example/cairn
      secret: "{{ secrets.hmac }}"
      headers: { X-Team: "{{ inputs.team }}", X-Host: "{{ env.HOSTNAME }}" }
  dba:
    email:
      smtp: smtp://mail.example:587
      starttls: true
      from: cairn@example.org
      to: [a@example.org, "b@{{ inputs.team }}.example.org"]
      username: cairn
      password: "{{ secrets.smtp_pw }}"
notify:
  on: { waiting: [oncall, team], failed: [oncall], succeeded: [team], paused: [team, dba] }
  renotify: 15m
"#;

#[test]
fn every_kind_and_route_is_read() {
    let yaml = format!("{HEAD}{FULL}");
    let (checked, diags) = check(Path::new("t.yaml"), &yaml, &templates());
    assert!(diags.0.is_empty(), "{diags:?}");
    let rb = checked.expect("valid").runbook;
    let kinds: Vec<&str> = rb.notifiers.values().map(Notifier::kind_name).collect();
    assert_eq!(kinds, ["pagerduty", "slack", "webhook", "email"]);
    let Notifier::Pagerduty(pd) = &rb.notifiers["oncall"] else {
        panic!("oncall is pagerduty")
    };
    assert_eq!(pd.routing_key.src, "{{ secrets.pd_key }}");
    assert_eq!(
        pd.url.as_ref().map(|u| u.src.as_str()),
        Some("http://127.0.0.1:9/v2/enqueue")
    );
    assert_eq!(
        rb.notifiers["team"].timeout().map(|t| t.value.0),
        Some(std::time::Duration::from_secs(3))
    );
    let Notifier::Email(mail) = &rb.notifiers["dba"] else {
        panic!("dba is email")
    };
    assert_eq!(mail.to.len(), 2);
    assert_eq!(mail.starttls, Some(true));
    let notify = rb.notify.expect("notify");
    let names = |e| -> Vec<String> { notify.on.names(e).iter().map(|n| n.value.clone()).collect() };
    assert_eq!(names(NotifyEvent::Waiting), ["oncall", "team"]);
    assert_eq!(names(NotifyEvent::Paused), ["team", "dba"]);
    assert_eq!(
        notify.renotify.map(|r| r.value.0),
        Some(std::time::Duration::from_secs(900))
    );
}

#[test]
fn mistakes_are_located() {
    let cases: &[(&str, u32, u32, &str, Option<&str>)] = &[
        (
            "notifiers:\n  x: { slak: { url: u } }\n",
            7,
            8,
            "unknown notifier kind `slak` in notifier `x`",
            Some("did you mean `slack`?"),
        ),
        (
            "notifiers:\n  x: { slack: { url: u, tiemout: 3s } }\n",
            7,
            25,
            "unknown key `tiemout` in the `slack` settings of notifier `x`",
            Some("did you mean `timeout`?"),
        ),
        (
            "notifiers:\n  x: { slack: { url: u }, webhook: { url: u } }\n",
            7,
            27,
            "notifier `x` has more than one key: a notifier is one kind",
            Some("write `x: { KIND: { ... } }` with one KIND of: webhook, slack, pagerduty, email"),
        ),
        (
            "notifiers:\n  x: {}\n",
            7,
            6,
            "notifier `x` has no kind",
            Some("write `x: { KIND: { ... } }` with one KIND of: webhook, slack, pagerduty, email"),
        ),
        (
            "notifiers:\n  x: { pagerduty: { url: u } }\n",
            7,
            19,
            "the `pagerduty` settings of notifier `x` is missing `routing_key`",
            Some("add `routing_key:`"),
        ),
        (
            "notifiers:\n  x: { email: { smtp: s, from: f, to: [] } }\n",
            7,
            39,
            "`to` lists no recipient",
            None,
        ),
        (
            "notifiers:\n  x: { slack: { url: u, timeout: 0s } }\n",
            7,
            34,
            "`timeout` must be more than 0",
            None,
        ),
        (
            "notifiers:\n  oncall: { slack: { url: u } }\nnotify:\n  on: { waiting: [oncal] }\n",
            9,
            19,
            "`notify.on.waiting` names unknown notifier `oncal`",
            Some("did you mean `oncall`?"),
        ),
        (
            "notify:\n  on: { failed: [pager] }\n",
            7,
            18,
            "`notify.on.failed` names unknown notifier `pager`",
            Some("declare it under `notifiers:` (or in the `CAIRN_NOTIFIERS` file)"),
        ),
        (
            "notify:\n  on: { waitng: [] }\n",
            7,
            9,
            "unknown key `waitng` in `notify.on`",
            Some("did you mean `waiting`?"),
        ),
        (
            "notifiers:\n  pd: { pagerduty: { routing_key: k } }\nnotify:\n  on: { paused: [pd] }\n",
            9,
            18,
            "PagerDuty notifier `pd` cannot hear `paused`",
            Some(
                "PagerDuty is triggered by `waiting` and `failed` and resolved when the gate is answered or the run ends; route `paused` to a chat or mail notifier",
            ),
        ),
        (
            "notify:\n  renotify: 0s\n",
            7,
            13,
            "`renotify` must be at least 1s",
            Some("e.g. `renotify: 15m`"),
        ),
        (
            "notifiers:\n  x: { slack: { url: \"{{ run.id }}\" } }\n",
            7,
            26,
            "`run.id` is not available in notifier settings",
            Some("notifier settings may read only: secrets, inputs, env"),
        ),
        (
            "notifiers:\n  x: { slack: { url: \"{{ steps.a.result }}\" } }\n",
            7,
            26,
            "`steps.a.result` is not available in notifier settings",
            Some("notifier settings may read only: secrets, inputs, env"),
        ),
        (
            "notifiers:\n  x: { slack: { url: \"{{ secrets.hook }}\" } }\n",
            7,
            26,
            "undefined name `secrets.hook`",
            Some("no secrets declared"),
        ),
    ];
    let mut wrong = Vec::new();
    for (tail, line, col, message, help) in cases {
        let got = first_error(tail);
        if (got.0, got.1, got.2.as_str(), got.3.as_deref()) != (*line, *col, *message, *help) {
            wrong.push(format!("{tail}  got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn renotify_without_a_waiting_notifier_is_a_warning() {
    let yaml = format!(
        "{HEAD}notifiers:\n  t: {{ slack: {{ url: u }} }}\nnotify:\n  on: {{ failed: [t] }}\n  renotify: 5m\n"
    );
    let (checked, diags) = check(Path::new("t.yaml"), &yaml, &templates());
    assert!(checked.is_some());
    let w: Vec<_> = diags
        .warnings()
        .map(|d| (d.span.line, d.message.as_str()))
        .collect();
    assert_eq!(
        w,
        [(
            10,
            "`renotify` repeats nothing: no notifier hears `waiting`"
        )]
    );
}

const FILE: &str = r#"secrets:
  pd_key: { env: PD_KEY }
notifiers:
  oncall: { pagerduty: { routing_key: "{{ secrets.pd_key }}" } }
  ops: { slack: { url: "{{ env.SLACK_URL }}" } }
"#;

#[test]
fn a_notifiers_file_adds_notifiers_and_the_runbook_wins_a_clash() {
    let (file, diags) = check_notifiers_file(Path::new("n.yaml"), FILE, &templates());
    assert!(diags.0.is_empty(), "{diags:?}");
    let file = file.expect("valid file");
    let yaml = format!(
        "{HEAD}notifiers:\n  oncall: {{ slack: {{ url: u }} }}\nnotify:\n  on: {{ waiting: [oncall, ops] }}\n"
    );
    let (checked, diags) = check(Path::new("t.yaml"), &yaml, &templates());
    assert!(checked.is_none(), "`ops` is unknown without the file");
    assert_eq!(
        diags.errors().next().map(|d| d.message.as_str()),
        Some("`notify.on.waiting` names unknown notifier `ops`")
    );
    let (checked, diags) = check_with(Path::new("t.yaml"), &yaml, &templates(), Some(&file));
    assert!(diags.0.is_empty(), "{diags:?}");
    let rb = checked.expect("valid with the file").runbook;
    let effect = cairn_model::notifiers_in_effect(&rb, Some(&file));
    let kinds: Vec<(&str, &str)> = effect
        .iter()
        .map(|(k, (n, _))| (*k, n.kind_name()))
        .collect();
    assert_eq!(kinds, [("oncall", "slack"), ("ops", "slack")]);
    assert!(matches!(
        effect["ops"].1,
        cairn_model::NotifierOrigin::File(_)
    ));
}

#[test]
fn a_notifiers_file_reads_only_its_secrets_and_env() {
    let cases: &[(&str, u32, u32, &str)] = &[
        (
            "notifiers:\n  x: { slack: { url: \"{{ inputs.hook }}\" } }\n",
            2,
            26,
            "`inputs.hook` is not available in notifier settings",
        ),
        (
            "notifiers:\n  x: { slack: { url: \"{{ secrets.hook }}\" } }\n",
            2,
            26,
            "undefined name `secrets.hook`",
        ),
        (
            "notifiers:\n  x: { slack: { url: u } }\nsteps: []\n",
            3,
            1,
            "unknown key `steps` in a notifiers file",
        ),
        (
            "secrets: {}\n",
            1,
            1,
            "a notifiers file is missing `notifiers`",
        ),
    ];
    for (text, line, col, message) in cases {
        let (file, diags) = check_notifiers_file(Path::new("n.yaml"), text, &templates());
        assert!(file.is_none(), "{text}");
        let e = diags.errors().next().expect("an error");
        assert_eq!(
            (e.span.line, e.span.col, e.message.as_str()),
            (*line, *col, *message),
            "{text}"
        );
    }
}

#[test]
fn a_gate_notifying_an_unknown_notifier_is_located() {
    let src = "cairn: 1
name: g
notifiers:
  oncall: { slack: { url: \"http://127.0.0.1:9/x\" } }
steps:
  - id: gate
    approval: { message: Go?, notify: [oncal] }
";
    let templates = cairn_template::Templates::new();
    let (checked, diags) = cairn_model::check(std::path::Path::new("g.yaml"), src, &templates);
    assert!(checked.is_none());
    let d = diags.errors().next().expect("an error");
    assert_eq!(
        d.message,
        "approval `gate` notifies unknown notifier `oncal`"
    );
    assert_eq!((d.span.line, d.span.col), (7, 40));
    assert_eq!(d.help.as_deref(), Some("did you mean `oncall`?"));
}
