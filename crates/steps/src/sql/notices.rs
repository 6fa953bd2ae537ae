//! The messages a server sends beside a query's result: PostgreSQL's NOTICE, INFO and WARNING
//! (`VACUUM VERBOSE`'s statistics, `RAISE NOTICE`), MySQL's and MariaDB's `SHOW WARNINGS`.
//! They go into the step's result as `notices: [{severity, message}]`, bounded.
//!
//! sqlx reads PostgreSQL's NoticeResponse messages inside its connection and only logs them,
//! as `tracing` events with the target `sqlx::postgres::notice` and the message as a field.
//! [`capture`] runs the query under a subscriber of its own that keeps those events and hands
//! every other one to the subscriber that was in place, so Cairn's own diagnostics are
//! unchanged. The subscriber is the default only while the query's future is polled, so
//! queries of other steps running at the same time keep theirs apart.

use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tracing::instrument::WithSubscriber as _;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber, span};

/// The target of sqlx's notice events.
const TARGET: &str = "sqlx::postgres::notice";
/// At most this many notices are kept (the first ones).
pub(super) const MAX_NOTICES: usize = 100;
/// A message is cut to this many bytes.
pub(super) const MAX_MESSAGE: usize = 4096;
/// All messages together hold at most this many bytes.
pub(super) const MAX_TOTAL: usize = 64 * 1024;

/// Notices in arrival order, bounded.
#[derive(Debug, Default)]
pub(super) struct Notices {
    list: Vec<(String, String)>,
    bytes: usize,
    /// Some were dropped or cut.
    truncated: bool,
}

impl Notices {
    pub(super) fn push(&mut self, severity: &str, message: &str) {
        if self.list.len() >= MAX_NOTICES || self.bytes >= MAX_TOTAL {
            self.truncated = true;
            return;
        }
        let room = MAX_MESSAGE.min(MAX_TOTAL - self.bytes);
        let mut cut = message.len().min(room);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut < message.len() {
            self.truncated = true;
        }
        self.bytes += cut;
        self.list
            .push((severity.to_string(), message[..cut].to_string()));
    }

    /// `notices` and `notices_truncated` of the result.
    pub(super) fn into_json(self) -> (Value, bool) {
        let list = self
            .list
            .into_iter()
            .map(|(severity, message)| json!({ "severity": severity, "message": message }))
            .collect();
        (Value::Array(list), self.truncated)
    }
}

/// Runs `fut` with PostgreSQL's notices kept in `into`.
pub(super) async fn capture<F: Future>(into: Arc<Mutex<Notices>>, fut: F) -> F::Output {
    let inner = tracing::dispatcher::get_default(Dispatch::clone);
    let dispatch = Dispatch::new(Capture { inner, into });
    fut.with_subscriber(dispatch).await
}

/// sqlx logs PostgreSQL's severities at these levels (`PgStream::recv`): the severity back
/// from the level. INFO and LOG share one level; a client is sent INFO, not LOG.
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "NOTICE",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "INFO",
    }
}

struct Capture {
    inner: Dispatch,
    into: Arc<Mutex<Notices>>,
}

impl Subscriber for Capture {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.target() == TARGET {
            Interest::always()
        } else {
            self.inner.register_callsite(meta)
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target() == TARGET || self.inner.enabled(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // sqlx sends INFO as TRACE: every level must reach `enabled`.
        Some(LevelFilter::TRACE)
    }

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        if meta.target() != TARGET {
            self.inner.event(event);
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Ok(mut n) = self.into.lock() {
            n.push(severity(*meta.level()), &message.0);
        }
        if self.inner.enabled(meta) {
            self.inner.event(event);
        }
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        self.inner.new_span(span)
    }
    fn record(&self, span: &span::Id, values: &span::Record<'_>) {
        self.inner.record(span, values);
    }
    fn record_follows_from(&self, span: &span::Id, follows: &span::Id) {
        self.inner.record_follows_from(span, follows);
    }
    fn enter(&self, span: &span::Id) {
        self.inner.enter(span);
    }
    fn exit(&self, span: &span::Id) {
        self.inner.exit(span);
    }
    fn clone_span(&self, id: &span::Id) -> span::Id {
        self.inner.clone_span(id)
    }
    fn try_close(&self, id: span::Id) -> bool {
        self.inner.try_close(id)
    }
}

/// The `message` field of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_empty() {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_bounded_in_count_and_size() {
        let mut n = Notices::default();
        n.push("NOTICE", &"é".repeat(MAX_MESSAGE));
        let (list, truncated) = std::mem::take(&mut n).into_json();
        assert!(truncated);
        let kept = list[0]["message"].as_str().unwrap_or_default();
        assert_eq!(kept.len(), MAX_MESSAGE);
        for i in 0..MAX_NOTICES + 5 {
            n.push("INFO", &format!("line {i}"));
        }
        let (list, truncated) = n.into_json();
        assert_eq!(list.as_array().map(Vec::len), Some(MAX_NOTICES));
        assert!(truncated);
        assert_eq!(list[0], json!({"severity": "INFO", "message": "line 0"}));
    }
}
