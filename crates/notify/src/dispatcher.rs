//! The dispatcher: sends notices in the background, each attempt bounded by its notifier's
//! timeout and retried with backoff, and keeps a record of every attempt. It never blocks or
//! fails the caller: [`Dispatcher::notify`] returns at once, and a notifier that is down costs
//! only its own task.

use crate::config::{NotifierConfig, Routes};
use crate::error::SendError;
use crate::notice::{Event, Notice};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Turns text that may hold secrets into text that holds none (the engine's masker).
pub type Masker = dyn Fn(&str) -> String + Send + Sync;

/// How often a failed delivery is tried again: after each delay in turn.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// Three attempts: at once, after 0.5s, after 2s more.
    fn default() -> Self {
        RetryPolicy {
            delays: vec![Duration::from_millis(500), Duration::from_secs(2)],
        }
    }
}

/// The outcome of one attempt to deliver one notice to one notifier.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub notifier: String,
    /// `webhook`, `slack`, `pagerduty`, `email`, or `unknown` for a name nobody declared.
    pub kind: &'static str,
    pub event: Event,
    pub dedup_key: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// `None` when delivered; else why not, masked.
    pub error: Option<String>,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

impl Delivery {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// What [`Dispatcher::shutdown`] leaves behind.
#[derive(Debug)]
pub struct Shutdown {
    /// The attempts recorded and not yet taken.
    pub deliveries: Vec<Delivery>,
    /// Sends still under way at the deadline, which were cancelled.
    pub abandoned: usize,
}

/// Sends notices to notifiers; cheap to clone (the clones share everything).
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    notifiers: Vec<NotifierConfig>,
    routes: Routes,
    retry: RetryPolicy,
    masker: Box<Masker>,
    http: reqwest::Client,
    tasks: TaskTracker,
    /// Cancels the sends under way (at the shutdown deadline).
    cancel: CancellationToken,
    /// Parent of every renotify loop's token.
    repeats: CancellationToken,
    /// Set by `shutdown`: later notices are dropped.
    closed: std::sync::atomic::AtomicBool,
    deliveries: Mutex<Vec<Delivery>>,
    runtime: tokio::runtime::Handle,
}

impl Dispatcher {
    /// A dispatcher for these notifiers and routes. Every error text it records goes through
    /// `masker` first (and has the notifier's own keys, passwords and URLs blanked).
    ///
    /// # Panics
    /// Outside a tokio runtime: the sends run on the runtime it is created in.
    pub fn new(
        notifiers: Vec<NotifierConfig>,
        routes: Routes,
        retry: RetryPolicy,
        masker: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Dispatcher {
        Dispatcher {
            inner: Arc::new(Inner {
                notifiers,
                routes,
                retry,
                masker: Box::new(masker),
                http: crate::send::http_client(),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                repeats: CancellationToken::new(),
                closed: std::sync::atomic::AtomicBool::new(false),
                deliveries: Mutex::new(Vec::new()),
                runtime: tokio::runtime::Handle::current(),
            }),
        }
    }

    /// Send `notice` to the notifiers its event is routed to (see [`Routes::recipients`]);
    /// returns their names at once, before anything is sent.
    pub fn notify(&self, notice: &Notice) -> Vec<String> {
        let names: Vec<String> = self
            .inner
            .routes
            .recipients(notice.event, &self.inner.notifiers)
            .into_iter()
            .map(str::to_string)
            .collect();
        self.notify_names(&names, notice);
        names
    }

    /// Send `notice` to the named notifiers (a gate's own `notify:` list). A name no notifier
    /// has is recorded as a failed delivery.
    pub fn notify_names(&self, names: &[String], notice: &Notice) {
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(
                event = notice.event.as_str(),
                "notice after shutdown, not sent"
            );
            return;
        }
        for name in names {
            let Some(cfg) = self.inner.notifiers.iter().find(|c| &c.name == name) else {
                self.inner.record(Delivery {
                    notifier: name.clone(),
                    kind: "unknown",
                    event: notice.event,
                    dedup_key: notice.dedup_key.clone(),
                    attempt: 1,
                    error: Some(SendError::UnknownNotifier(name.clone()).to_string()),
                    elapsed: Duration::ZERO,
                });
                continue;
            };
            let inner = Arc::clone(&self.inner);
            let cfg = cfg.clone();
            let notice = notice.clone();
            self.inner.tasks.spawn_on(
                async move { inner.deliver(&cfg, &notice).await },
                &self.inner.runtime,
            );
        }
    }

    /// Repeat `notice` every `every` until the handle is cancelled or dropped (a gate's
    /// `renotify`). The first notice is the caller's: the first repeat comes after `every`.
    /// `names` sends to those notifiers instead of the event's route.
    pub fn renotify(
        &self,
        notice: Notice,
        every: Duration,
        names: Option<Vec<String>>,
    ) -> Renotify {
        let token = self.inner.repeats.child_token();
        let stop = token.clone();
        let me = self.clone();
        self.inner.tasks.spawn_on(
            async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    match &names {
                        Some(n) => me.notify_names(n, &notice),
                        None => {
                            me.notify(&notice);
                        }
                    }
                }
            },
            &self.inner.runtime,
        );
        Renotify { token }
    }

    /// The attempts recorded since the last call, oldest first.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.inner.lock())
    }

    /// Stop taking notices and wait at most `deadline` for the sends under way; those still
    /// running then are cancelled (and recorded as such). Renotify loops end.
    pub async fn shutdown(&self, deadline: Duration) -> Shutdown {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Repeats would never end: stop them, then let the sends under way finish.
        self.inner.repeats.cancel();
        self.inner.tasks.close();
        let waited = tokio::time::timeout(deadline, self.inner.tasks.wait()).await;
        let abandoned = match waited {
            Ok(()) => 0,
            Err(_) => {
                let left = self.inner.tasks.len();
                self.inner.cancel.cancel();
                // Cancelled sends record their end at once.
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), self.inner.tasks.wait()).await;
                left
            }
        };
        Shutdown {
            deliveries: self.take_deliveries(),
            abandoned,
        }
    }
}

/// A running `renotify`: cancelled by [`Renotify::cancel`] or when dropped.
#[derive(Debug)]
pub struct Renotify {
    token: CancellationToken,
}

impl Renotify {
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

impl Drop for Renotify {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Delivery>> {
        // A panic while holding the lock leaves a Vec that is still whole.
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, d: Delivery) {
        match &d.error {
            None => {
                tracing::debug!(notifier = %d.notifier, event = d.event.as_str(), attempt = d.attempt, "notice delivered")
            }
            Some(e) => {
                tracing::warn!(notifier = %d.notifier, event = d.event.as_str(), attempt = d.attempt, error = %e, "notice not delivered")
            }
        }
        self.lock().push(d);
    }

    /// The one door of error text: the notifier's own secret settings blanked, then the
    /// caller's masker.
    fn mask(&self, cfg: &NotifierConfig, text: &str) -> String {
        let mut t = text.to_string();
        for s in cfg.sensitive() {
            t = t.replace(s, "***");
        }
        (self.masker)(&t)
    }

    async fn deliver(&self, cfg: &NotifierConfig, notice: &Notice) {
        let attempts = self.retry.delays.len() + 1;
        for attempt in 1..=attempts {
            let started = Instant::now();
            let result = tokio::select! {
                () = self.cancel.cancelled() => Err(SendError::Cancelled),
                r = tokio::time::timeout(cfg.timeout, crate::send::send(&self.http, cfg, notice)) => {
                    r.unwrap_or(Err(SendError::Timeout(cfg.timeout)))
                }
            };
            let cancelled = matches!(result, Err(SendError::Cancelled));
            let ok = result.is_ok();
            self.record(Delivery {
                notifier: cfg.name.clone(),
                kind: cfg.kind.name(),
                event: notice.event,
                dedup_key: notice.dedup_key.clone(),
                attempt: attempt as u32,
                error: result.err().map(|e| self.mask(cfg, &e.to_string())),
                elapsed: started.elapsed(),
            });
            if ok || cancelled {
                return;
            }
            if let Some(delay) = self.retry.delays.get(attempt - 1) {
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = tokio::time::sleep(*delay) => {}
                }
            }
        }
    }
}
