//! cairn-notify: tells people that a gate waits or a run ended, through webhooks, Slack,
//! PagerDuty (Events API v2) and email, without ever holding up or failing the run.
//!
//! The caller builds [`NotifierConfig`]s with their settings rendered (from the runbook model
//! with [`NotifierConfig::from_model`]), the [`Routes`] of `notify.on`, and a [`Dispatcher`]
//! with its masker; then hands it [`Notice`]s. Sends run in the background; each attempt is
//! recorded as a [`Delivery`] whose error text went through the masker.
//!
//! Contract: a notice's text (runbook name, run id, step id, message) must already be masked
//! by the caller; the dispatcher adds only the notifier's own settings to the request (the
//! signature header, the routing key) and masks every error text it records.
//!
//! ```no_run
//! use cairn_notify::{Dispatcher, Kind, Notice, NotifierConfig, RetryPolicy, Routes};
//! use std::time::Duration;
//! # async fn demo() {
//! let team = NotifierConfig {
//!     name: "team".into(),
//!     kind: Kind::Slack { url: "https://hooks.slack.example/T/B/X".into() },
//!     timeout: Duration::from_secs(10),
//! };
//! let routes = Routes { waiting: vec!["team".into()], ..Routes::default() };
//! let d = Dispatcher::new(vec![team], routes, RetryPolicy::default(), |t: &str| t.to_string());
//! d.notify(&Notice::gate_waiting("restore", "01J0RUN", "gate", "Restore over production?"));
//! let done = d.shutdown(Duration::from_secs(5)).await;
//! assert!(done.deliveries.iter().all(|x| x.notifier == "team"));
//! # }
//! ```

mod config;
mod dispatcher;
mod error;
mod notice;
pub mod payload;
mod send;

pub use config::{Kind, NotifierConfig, Routes};
pub use dispatcher::{Delivery, Dispatcher, Masker, Renotify, RetryPolicy, Shutdown};
pub use error::SendError;
pub use notice::{Event, Notice};
