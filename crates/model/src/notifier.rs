//! Notifiers: who is told that a gate waits or a run ends, and how (`notifiers:` and `notify:`).
//!
//! A notifier is one receiver of one kind (`webhook`, `slack`, `pagerduty`, `email`); its
//! settings are templates that may read only `secrets`, `inputs`, `env` and `vars` (or, in a
//! `CAIRN_NOTIFIERS` file, only that file's `secrets` and `env`). `notify.on` routes each run
//! event to notifiers by name.

use crate::span::{Span, Spanned};
use crate::values::{Dur, Secret, Tmpl};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Serialize;
use std::path::PathBuf;

/// The PagerDuty Events API v2 endpoint used when a `pagerduty` notifier names no `url`.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// How long one delivery to a notifier may take when it sets no `timeout`.
pub const DEFAULT_NOTIFIER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One receiver of notices: exactly one kind, written as `NAME: { KIND: { ...settings } }`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Notifier {
    /// A JSON POST of the notice, signed with HMAC-SHA256 when `secret` is set.
    Webhook(WebhookNotifier),
    /// A Slack incoming webhook.
    Slack(SlackNotifier),
    /// PagerDuty Events API v2: a waiting gate or a failed run triggers, an answer or the run's
    /// end resolves.
    Pagerduty(PagerDutyNotifier),
    /// A mail over SMTP.
    Email(EmailNotifier),
}

impl Notifier {
    pub const KINDS: &'static [&'static str] = &["webhook", "slack", "pagerduty", "email"];

    pub fn kind_name(&self) -> &'static str {
        match self {
            Notifier::Webhook(_) => "webhook",
            Notifier::Slack(_) => "slack",
            Notifier::Pagerduty(_) => "pagerduty",
            Notifier::Email(_) => "email",
        }
    }

    /// The `timeout` written, if any (see [`DEFAULT_NOTIFIER_TIMEOUT`]).
    pub fn timeout(&self) -> Option<&Spanned<Dur>> {
        match self {
            Notifier::Webhook(n) => n.timeout.as_ref(),
            Notifier::Slack(n) => n.timeout.as_ref(),
            Notifier::Pagerduty(n) => n.timeout.as_ref(),
            Notifier::Email(n) => n.timeout.as_ref(),
        }
    }

    /// Where the notifier's name is written.
    pub fn span(&self) -> Span {
        match self {
            Notifier::Webhook(n) => n.span,
            Notifier::Slack(n) => n.span,
            Notifier::Pagerduty(n) => n.span,
            Notifier::Email(n) => n.span,
        }
    }

    /// Every template in the settings, for checking and rendering.
    pub fn templates(&self) -> Vec<&Tmpl> {
        match self {
            Notifier::Webhook(n) => std::iter::once(&n.url)
                .chain(&n.secret)
                .chain(n.headers.values())
                .collect(),
            Notifier::Slack(n) => vec![&n.url],
            Notifier::Pagerduty(n) => std::iter::once(&n.routing_key).chain(&n.url).collect(),
            Notifier::Email(n) => [&n.smtp, &n.from]
                .into_iter()
                .chain(&n.to)
                .chain(&n.username)
                .chain(&n.password)
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookNotifier {
    /// `http(s)://...`, receives a JSON POST of each notice.
    pub url: Tmpl,
    /// Key of the `X-Cairn-Signature: sha256=HEX` header, an HMAC-SHA256 of the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Tmpl>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, Tmpl>,
    /// How long one delivery may take (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Dur>>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackNotifier {
    /// The incoming-webhook URL (a secret: write it as `{{ secrets.NAME }}`).
    pub url: Tmpl,
    /// How long one delivery may take (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Dur>>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyNotifier {
    /// The Events API v2 integration key of the service.
    pub routing_key: Tmpl,
    /// The Events API endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Tmpl>,
    /// How long one delivery may take (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Dur>>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailNotifier {
    /// `smtp://host[:port]` (port 587 by default) or `smtps://host[:port]` (TLS from the
    /// first byte, port 465 by default).
    pub smtp: Tmpl,
    /// Upgrade an `smtp://` connection with STARTTLS, refusing a server that does not offer
    /// it (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starttls: Option<bool>,
    /// The sender address.
    pub from: Tmpl,
    /// The recipients: one address or a list of at least one.
    #[schemars(schema_with = "one_or_more_addresses")]
    pub to: Vec<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<Tmpl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Tmpl>,
    /// How long one delivery may take (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Dur>>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

fn one_or_more_addresses(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let one = g.subschema_for::<Tmpl>();
    schemars::json_schema!({
        "anyOf": [one, { "type": "array", "items": one, "minItems": 1 }]
    })
}

/// The run events a runbook routes to notifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    /// An approval gate waits for an answer.
    Waiting,
    /// The run ended failed.
    Failed,
    /// The run ended succeeded.
    Succeeded,
    /// The run stopped to wait (a gate with no terminal to ask on).
    Paused,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 4] = [
        NotifyEvent::Waiting,
        NotifyEvent::Failed,
        NotifyEvent::Succeeded,
        NotifyEvent::Paused,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Waiting => "waiting",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Succeeded => "succeeded",
            NotifyEvent::Paused => "paused",
        }
    }
}

/// `notify:`: which notifiers hear which run event, and how often a waiting gate is repeated.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    #[serde(default)]
    pub on: NotifyOn,
    /// Repeat a waiting gate's notice this often while it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renotify: Option<Spanned<Dur>>,
}

/// Notifier names for each run event.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyOn {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub succeeded: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paused: Vec<Spanned<String>>,
}

impl NotifyOn {
    /// The names routed to `event`, as written.
    pub fn names(&self, event: NotifyEvent) -> &[Spanned<String>] {
        match event {
            NotifyEvent::Waiting => &self.waiting,
            NotifyEvent::Failed => &self.failed,
            NotifyEvent::Succeeded => &self.succeeded,
            NotifyEvent::Paused => &self.paused,
        }
    }
}

/// Notifiers shared by every runbook, from the file that `CAIRN_NOTIFIERS` names: a YAML map
/// with `notifiers:` and, for their templates, `secrets:` (declared as in a runbook).
#[derive(Clone, Debug, Default)]
pub struct NotifiersFile {
    pub path: PathBuf,
    pub source: String,
    pub secrets: IndexMap<String, Secret>,
    pub notifiers: IndexMap<String, Notifier>,
}

/// Where a notifier in effect for a run is declared; its templates render with that place's
/// names (a file's notifier sees the file's `secrets` and `env` only).
#[derive(Clone, Copy, Debug)]
pub enum NotifierOrigin<'a> {
    Runbook,
    File(&'a NotifiersFile),
}

/// The notifiers in effect for a runbook: its own, then the file's whose names it does not
/// use (a runbook's notifier wins a clash).
pub fn notifiers_in_effect<'a>(
    runbook: &'a crate::Runbook,
    file: Option<&'a NotifiersFile>,
) -> IndexMap<&'a str, (&'a Notifier, NotifierOrigin<'a>)> {
    let mut out: IndexMap<&str, (&Notifier, NotifierOrigin<'_>)> = runbook
        .notifiers
        .iter()
        .map(|(k, n)| (k.as_str(), (n, NotifierOrigin::Runbook)))
        .collect();
    if let Some(f) = file {
        for (k, n) in &f.notifiers {
            out.entry(k.as_str())
                .or_insert((n, NotifierOrigin::File(f)));
        }
    }
    out
}
