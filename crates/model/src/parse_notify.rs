//! YAML -> `notifiers:` and `notify:` (and a `CAIRN_NOTIFIERS` file), every problem located.

use crate::diag::{Diagnostic, did_you_mean};
use crate::notifier::*;
use crate::read::*;
use crate::span::Span;
use crate::values::Tmpl;
use crate::yaml::Node;
use indexmap::IndexMap;

/// `notifiers:` of a runbook or of a notifiers file.
pub(crate) fn notifiers(d: &mut Diags, n: &Node) -> IndexMap<String, Notifier> {
    named(d, n, "`notifiers`", notifier)
}

fn notifier(d: &mut Diags, name: &str, key: Span, n: &Node) -> Option<Notifier> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        d.push(
            Diagnostic::error(key, format!("invalid notifier name `{name}`"))
                .with_help("use letters, digits, `_` and `-`"),
        );
    }
    let what = format!("notifier `{name}`");
    let f = map(d, n, &what)?;
    let entries = n.as_map().unwrap_or_default();
    let [(kind_key, settings)] = entries else {
        let help = format!(
            "write `{name}: {{ KIND: {{ ... }} }}` with one KIND of: {}",
            Notifier::KINDS.join(", ")
        );
        let (at, message) = match entries {
            [] => (f.span, format!("{what} has no kind")),
            [_, (second, _), ..] => (
                second.span,
                format!("{what} has more than one key: a notifier is one kind"),
            ),
            [_] => unreachable!("one entry matched above"),
        };
        d.push(Diagnostic::error(at, message).with_help(help));
        return None;
    };
    let kind = kind_key.text().unwrap_or_default();
    let what = format!("the `{kind}` settings of notifier `{name}`");
    let mut s = map(d, settings, &what)?;
    let timeout = s.get("timeout").and_then(|t| {
        let t = duration(d, t, "`timeout`")?;
        if t.value.0.is_zero() {
            d.push(Diagnostic::error(t.span, "`timeout` must be more than 0"));
            return None;
        }
        Some(t)
    });
    let required = |d: &mut Diags, s: &mut Fields<'_>, key: &str| match s.get(key) {
        Some(v) => tmpl(d, v, &format!("`{key}`")),
        None => {
            missing(d, s.span, key, &what);
            None
        }
    };
    let optional = |d: &mut Diags, s: &mut Fields<'_>, key: &str| {
        s.get(key).and_then(|v| tmpl(d, v, &format!("`{key}`")))
    };
    let (out, keys): (Option<Notifier>, &[&str]) = match kind {
        "webhook" => {
            let url = required(d, &mut s, "url");
            let secret = optional(d, &mut s, "secret");
            let headers = s.get("headers").map_or_else(IndexMap::new, |h| {
                named(d, h, "`headers`", |d, _, _, v| tmpl(d, v, "a header value"))
            });
            let n = url.map(|url| {
                Notifier::Webhook(WebhookNotifier {
                    url,
                    secret,
                    headers,
                    timeout,
                    span: key,
                })
            });
            (n, &["url", "secret", "headers", "timeout"])
        }
        "slack" => {
            let url = required(d, &mut s, "url");
            let n = url.map(|url| {
                Notifier::Slack(SlackNotifier {
                    url,
                    timeout,
                    span: key,
                })
            });
            (n, &["url", "timeout"])
        }
        "pagerduty" => {
            let routing_key = required(d, &mut s, "routing_key");
            let url = optional(d, &mut s, "url");
            let n = routing_key.map(|routing_key| {
                Notifier::Pagerduty(PagerDutyNotifier {
                    routing_key,
                    url,
                    timeout,
                    span: key,
                })
            });
            (n, &["routing_key", "url", "timeout"])
        }
        "email" => {
            let smtp = required(d, &mut s, "smtp");
            let starttls = s.get("starttls").and_then(|b| boolean(d, b, "`starttls`"));
            let from = required(d, &mut s, "from");
            let to = match s.get("to") {
                Some(t) => recipients(d, t),
                None => {
                    missing(d, s.span, "to", &what);
                    None
                }
            };
            let username = optional(d, &mut s, "username");
            let password = optional(d, &mut s, "password");
            if let (Some(p), None) = (&password, &username) {
                d.push(
                    Diagnostic::error(p.span, "`password` without `username`")
                        .with_help("SMTP logs in with both"),
                );
            }
            let n = match (smtp, from, to) {
                (Some(smtp), Some(from), Some(to)) => Some(Notifier::Email(EmailNotifier {
                    smtp,
                    starttls,
                    from,
                    to,
                    username,
                    password,
                    timeout,
                    span: key,
                })),
                _ => None,
            };
            (
                n,
                &[
                    "smtp", "starttls", "from", "to", "username", "password", "timeout",
                ],
            )
        }
        other => {
            d.push(
                Diagnostic::error(
                    kind_key.span,
                    format!("unknown notifier kind `{other}` in notifier `{name}`"),
                )
                .maybe_help(
                    did_you_mean(other, Notifier::KINDS.iter().copied())
                        .or_else(|| Some(format!("kinds: {}", Notifier::KINDS.join(", ")))),
                ),
            );
            return None;
        }
    };
    s.finish(d, keys, &what);
    out
}

/// `to:` of an email notifier: one address or a non-empty list.
fn recipients(d: &mut Diags, n: &Node) -> Option<Vec<Tmpl>> {
    if n.as_seq().is_none() {
        return tmpl(d, n, "`to`").map(|t| vec![t]);
    }
    let to = list(d, n, "`to`", |d, i| tmpl(d, i, "a recipient"))?;
    if to.is_empty() {
        d.push(Diagnostic::error(n.span, "`to` lists no recipient"));
        return None;
    }
    Some(to)
}

/// `notify:` of a runbook.
pub(crate) fn notify(d: &mut Diags, n: &Node) -> Option<Notify> {
    let mut f = map(d, n, "`notify`")?;
    let on = f.get("on").and_then(|n| {
        let mut o = map(d, n, "`notify.on`")?;
        let mut names = |d: &mut Diags, event: NotifyEvent| {
            o.get(event.as_str()).map_or_else(Vec::new, |n| {
                list(d, n, &format!("`on.{}`", event.as_str()), |d, i| {
                    string(d, i, "a notifier name")
                })
                .unwrap_or_default()
            })
        };
        let on = NotifyOn {
            waiting: names(d, NotifyEvent::Waiting),
            failed: names(d, NotifyEvent::Failed),
            succeeded: names(d, NotifyEvent::Succeeded),
            paused: names(d, NotifyEvent::Paused),
        };
        let events: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.as_str()).collect();
        o.finish(d, &events, "`notify.on`");
        Some(on)
    });
    let renotify = f.get("renotify").and_then(|r| {
        let r = duration(d, r, "`renotify`")?;
        if r.value.0 < std::time::Duration::from_secs(1) {
            d.push(
                Diagnostic::error(r.span, "`renotify` must be at least 1s")
                    .with_help("e.g. `renotify: 15m`"),
            );
            return None;
        }
        Some(r)
    });
    f.finish(d, &["on", "renotify"], "`notify`");
    Some(Notify {
        on: on.unwrap_or_default(),
        renotify,
    })
}

/// A `CAIRN_NOTIFIERS` file: `notifiers:` and `secrets:`, nothing else.
pub(crate) fn file(d: &mut Diags, root: &Node) -> Option<NotifiersFile> {
    let what = "a notifiers file";
    let mut f = map(d, root, what)?;
    let secrets = f.get("secrets").map_or_else(IndexMap::new, |n| {
        named(d, n, "`secrets`", crate::parse_values::secret)
    });
    let notifiers = match f.get("notifiers") {
        Some(n) => notifiers(d, n),
        None => {
            missing(d, f.span, "notifiers", what);
            IndexMap::new()
        }
    };
    f.finish(d, &["notifiers", "secrets"], what);
    Some(NotifiersFile {
        secrets,
        notifiers,
        ..NotifiersFile::default()
    })
}

/// Names in `notify.on` that no notifier in effect declares, with a did-you-mean; and
/// PagerDuty notifiers routed `paused`, which the Events API has no action for.
pub(crate) fn check_routes(
    d: &mut Diags,
    notify: &Notify,
    known: &IndexMap<&str, (&Notifier, NotifierOrigin<'_>)>,
) {
    for event in NotifyEvent::ALL {
        for name in notify.on.names(event) {
            match known.get(name.value.as_str()) {
                None => {
                    let help = did_you_mean(&name.value, known.keys().copied()).or_else(|| {
                        Some(if known.is_empty() {
                            "declare it under `notifiers:` (or in the `CAIRN_NOTIFIERS` file)"
                                .to_string()
                        } else {
                            format!("notifiers: {}", join(known.keys().copied()))
                        })
                    });
                    d.push(
                        Diagnostic::error(
                            name.span,
                            format!("`notify.on.{}` names unknown notifier `{}`", event.as_str(), name.value),
                        )
                        .maybe_help(help),
                    );
                }
                Some((Notifier::Pagerduty(_), _)) if event == NotifyEvent::Paused => d.push(
                    Diagnostic::error(
                        name.span,
                        format!("PagerDuty notifier `{}` cannot hear `paused`", name.value),
                    )
                    .with_help("PagerDuty is triggered by `waiting` and `failed` and resolved when the gate is answered or the run ends; route `paused` to a chat or mail notifier"),
                ),
                Some(_) => {}
            }
        }
    }
    if let Some(r) = &notify.renotify
        && notify.on.waiting.is_empty()
    {
        d.push(
            Diagnostic::warning(
                r.span,
                "`renotify` repeats nothing: no notifier hears `waiting`",
            )
            .with_help("add names to `notify.on.waiting`"),
        );
    }
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// Every name in an approval's `notify:` is a notifier in effect.
pub(crate) fn check_gates(
    d: &mut Vec<Diagnostic>,
    rb: &crate::Runbook,
    known: &IndexMap<&str, (&Notifier, NotifierOrigin<'_>)>,
) {
    for s in rb.steps.iter().chain(&rb.finally) {
        let crate::StepKind::Approval(a) = &s.kind else {
            continue;
        };
        for name in &a.notify {
            if known.contains_key(name.value.as_str()) {
                continue;
            }
            let help = did_you_mean(&name.value, known.keys().copied()).or_else(|| {
                Some(if known.is_empty() {
                    "declare it under `notifiers:` (or in the `CAIRN_NOTIFIERS` file)".to_string()
                } else {
                    format!("notifiers: {}", join(known.keys().copied()))
                })
            });
            d.push(
                Diagnostic::error(
                    name.span,
                    format!(
                        "approval `{}` notifies unknown notifier `{}`",
                        s.id.value, name.value
                    ),
                )
                .maybe_help(help),
            );
        }
    }
}
