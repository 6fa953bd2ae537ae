//! The console's shared state and what it is started with.

use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::Auth;
use crate::{actions, csrf, logs, pages, reports};

/// What the console is started with.
pub struct Config {
    pub auth: Auth,
    pub resumer: actions::Resumer,
    /// Where the engine writes step logs (beside a SQLite store, else `.cairn/logs`).
    pub logs_dir: PathBuf,
    /// `--runbooks DIR`: the runbooks the console shows.
    pub runbooks: Option<PathBuf>,
    /// The CLI's report renderers (downloads, RTO/RPO); without them the run page has neither.
    pub reports: Option<Arc<dyn reports::Reports>>,
}

/// The console's shared state.
pub struct App {
    pub(crate) store: Arc<dyn cairn_state::Store>,
    pub(crate) config: Config,
    pub(crate) csrf: csrf::CsrfKey,
    pub(crate) pages: pages::Pages,
    /// The one watcher of each running step's log that streams follow.
    pub(crate) watches: logs::Watches,
}

impl App {
    pub fn new(store: Arc<dyn cairn_state::Store>, config: Config) -> Arc<App> {
        Arc::new(App {
            store,
            config,
            csrf: csrf::CsrfKey::random(),
            pages: pages::Pages::new(),
            watches: logs::Watches::default(),
        })
    }
}
