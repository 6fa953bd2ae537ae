//! What goes on the wire for each kind, built purely from a notice (and, for PagerDuty and the
//! webhook signature, the notifier's key).

use crate::notice::{Event, Notice};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

/// The header that carries a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "X-Cairn-Signature";
/// PagerDuty refuses a summary longer than this.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// The JSON body POSTed to a `webhook` notifier: the notice itself.
pub fn webhook_body(notice: &Notice) -> Vec<u8> {
    serde_json::to_vec(notice).unwrap_or_default()
}

/// `sha256=HEX`: the HMAC-SHA256 of `body` under `secret`, as the webhook header carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Slack incoming-webhook body: `{"text": ...}` with the summary, the message and the
/// commands, escaped as Slack asks (`&`, `<`, `>`).
pub fn slack_body(notice: &Notice) -> Value {
    let mut text = escape_slack(&notice.summary());
    if notice.message.lines().count() > 1 {
        text.push_str(&format!("\n```{}```", escape_slack(&notice.message)));
    }
    if let (Some(a), Some(r)) = (&notice.approve_command, &notice.reject_command) {
        text.push_str(&format!("\nApprove: `{a}`\nReject: `{r}`"));
    }
    if let Some(u) = &notice.url {
        // Slack's link syntax; the URL was built from the console's base and a run id.
        text.push_str(&format!("\n<{}|Open in the console>", escape_slack(u)));
    }
    json!({ "text": text })
}

fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The PagerDuty Events API v2 action for an event: a gate waiting or the run failing opens
/// an incident, an answer or the run succeeding resolves it.
pub fn pagerduty_action(event: Event) -> &'static str {
    match event {
        Event::Waiting | Event::Failed | Event::Paused => "trigger",
        Event::Answered | Event::Succeeded => "resolve",
    }
}

/// A PagerDuty Events API v2 body. A `resolve` carries no payload (the API ignores one).
pub fn pagerduty_body(notice: &Notice, routing_key: &str) -> Value {
    let action = pagerduty_action(notice.event);
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": notice.dedup_key,
    });
    if action == "trigger" {
        let severity = match notice.event {
            Event::Failed => "critical",
            _ => "warning",
        };
        let summary: String = notice
            .summary()
            .chars()
            .take(PAGERDUTY_SUMMARY_MAX)
            .collect();
        body["payload"] = json!({
            "summary": summary,
            "source": format!("cairn/{}", notice.runbook),
            "severity": severity,
            "custom_details": notice,
        });
    }
    body
}

/// A mail's subject: the summary, on one line and not too long for a mail client.
pub fn email_subject(notice: &Notice) -> String {
    const MAX: usize = 200;
    let s = notice.summary();
    if s.chars().count() <= MAX {
        return s;
    }
    let mut cut: String = s.chars().take(MAX - 1).collect();
    cut.push('…');
    cut
}
