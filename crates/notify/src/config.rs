//! Notifiers with their settings rendered to plain strings, and the routes from run events to
//! them. Built by the caller (from the runbook model with [`NotifierConfig::from_model`], or by
//! hand); nothing here renders templates.

use crate::notice::Event;
use cairn_model::{Notifier, NotifyEvent, Tmpl};
use std::fmt;
use std::time::Duration;

/// One notifier, ready to send.
#[derive(Clone)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: Kind,
    /// How long one attempt may take, connecting included.
    pub timeout: Duration,
}

/// A notifier's kind and its rendered settings.
#[derive(Clone)]
pub enum Kind {
    Webhook {
        url: String,
        /// HMAC-SHA256 key of the `X-Cairn-Signature` header.
        secret: Option<String>,
        headers: Vec<(String, String)>,
    },
    Slack {
        url: String,
    },
    PagerDuty {
        routing_key: String,
        url: String,
    },
    Email {
        /// `smtp://host[:port]` or `smtps://host[:port]`.
        smtp: String,
        starttls: bool,
        from: String,
        to: Vec<String>,
        username: Option<String>,
        password: Option<String>,
    },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Webhook { .. } => "webhook",
            Kind::Slack { .. } => "slack",
            Kind::PagerDuty { .. } => "pagerduty",
            Kind::Email { .. } => "email",
        }
    }
}

// Settings hold secrets (keys, passwords, webhook URLs): Debug shows the name and kind only.
impl fmt::Debug for NotifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifierConfig")
            .field("name", &self.name)
            .field("kind", &self.kind.name())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NotifierConfig {
    /// Render a model notifier: `render` turns each template of its settings into text (the
    /// engine renders them with the run's secrets, inputs, env and vars, or for a
    /// `CAIRN_NOTIFIERS` file's notifier with that file's secrets and env).
    pub fn from_model<E>(
        name: &str,
        notifier: &Notifier,
        mut render: impl FnMut(&Tmpl) -> Result<String, E>,
    ) -> Result<NotifierConfig, E> {
        let kind = match notifier {
            Notifier::Webhook(w) => Kind::Webhook {
                url: render(&w.url)?,
                secret: w.secret.as_ref().map(&mut render).transpose()?,
                headers: w
                    .headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), render(v)?)))
                    .collect::<Result<_, E>>()?,
            },
            Notifier::Slack(s) => Kind::Slack {
                url: render(&s.url)?,
            },
            Notifier::Pagerduty(p) => Kind::PagerDuty {
                routing_key: render(&p.routing_key)?,
                url: match &p.url {
                    Some(u) => render(u)?,
                    None => cairn_model::PAGERDUTY_EVENTS_URL.to_string(),
                },
            },
            Notifier::Email(m) => Kind::Email {
                smtp: render(&m.smtp)?,
                starttls: m.starttls.unwrap_or(true),
                from: render(&m.from)?,
                to: m.to.iter().map(&mut render).collect::<Result<_, E>>()?,
                username: m.username.as_ref().map(&mut render).transpose()?,
                password: m.password.as_ref().map(&mut render).transpose()?,
            },
        };
        Ok(NotifierConfig {
            name: name.to_string(),
            kind,
            timeout: notifier
                .timeout()
                .map_or(cairn_model::DEFAULT_NOTIFIER_TIMEOUT, |t| t.value.0),
        })
    }

    /// The settings that may be secret: masked out of every error this notifier reports,
    /// whether or not the caller's masker knows them.
    pub(crate) fn sensitive(&self) -> Vec<&str> {
        let mut v: Vec<&str> = match &self.kind {
            Kind::Webhook {
                url,
                secret,
                headers,
            } => std::iter::once(url.as_str())
                .chain(secret.as_deref())
                .chain(headers.iter().map(|(_, v)| v.as_str()))
                .collect(),
            Kind::Slack { url } => vec![url],
            Kind::PagerDuty { routing_key, .. } => vec![routing_key],
            Kind::Email {
                username, password, ..
            } => username
                .as_deref()
                .into_iter()
                .chain(password.as_deref())
                .collect(),
        };
        // Short values (`yes`, a port) would blank out ordinary words in the error.
        v.retain(|s| s.len() >= 6);
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v
    }
}

/// Which notifiers hear which event (`notify.on` of the runbook).
#[derive(Clone, Debug, Default)]
pub struct Routes {
    pub waiting: Vec<String>,
    pub failed: Vec<String>,
    pub succeeded: Vec<String>,
    pub paused: Vec<String>,
}

impl Routes {
    pub fn from_model(notify: &cairn_model::Notify) -> Routes {
        let names = |e| notify.on.names(e).iter().map(|n| n.value.clone()).collect();
        Routes {
            waiting: names(NotifyEvent::Waiting),
            failed: names(NotifyEvent::Failed),
            succeeded: names(NotifyEvent::Succeeded),
            paused: names(NotifyEvent::Paused),
        }
    }

    /// The notifiers that hear `event`, each once:
    /// - `answered` goes to those told the gate waits (PagerDuty resolves the gate's incident);
    /// - `succeeded` goes to its own list and to the PagerDuty notifiers of `failed`, which
    ///   resolve the run's incident opened by an earlier failure of the same run.
    pub fn recipients<'a>(&'a self, event: Event, notifiers: &[NotifierConfig]) -> Vec<&'a str> {
        let pagerduty = |n: &&String| {
            notifiers
                .iter()
                .any(|c| &c.name == *n && matches!(c.kind, Kind::PagerDuty { .. }))
        };
        let names: Vec<&String> = match event {
            Event::Waiting | Event::Answered => self.waiting.iter().collect(),
            Event::Failed => self.failed.iter().collect(),
            Event::Paused => self.paused.iter().collect(),
            Event::Succeeded => self
                .succeeded
                .iter()
                .chain(self.failed.iter().filter(pagerduty))
                .collect(),
        };
        let mut out: Vec<&str> = Vec::new();
        for n in names {
            if !out.contains(&n.as_str()) {
                out.push(n);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, kind: Kind) -> NotifierConfig {
        NotifierConfig {
            name: name.into(),
            kind,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn recipients_per_event() {
        let notifiers = vec![
            n(
                "pd",
                Kind::PagerDuty {
                    routing_key: "k".into(),
                    url: "u".into(),
                },
            ),
            n("chat", Kind::Slack { url: "u".into() }),
        ];
        let routes = Routes {
            waiting: vec!["pd".into(), "chat".into(), "pd".into()],
            failed: vec!["pd".into(), "chat".into()],
            succeeded: vec!["chat".into()],
            paused: vec![],
        };
        let r = |e| routes.recipients(e, &notifiers);
        assert_eq!(r(Event::Waiting), ["pd", "chat"]);
        assert_eq!(r(Event::Answered), ["pd", "chat"]);
        assert_eq!(r(Event::Failed), ["pd", "chat"]);
        assert_eq!(r(Event::Succeeded), ["chat", "pd"]);
        assert!(r(Event::Paused).is_empty());
    }

    #[test]
    fn debug_shows_no_setting() {
        let c = n(
            "pd",
            Kind::PagerDuty {
                routing_key: "s3cret-key".into(),
                url: "https://x/s3cret".into(),
            },
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("pagerduty"), "{shown}");
    }
}
