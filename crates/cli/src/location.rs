//! The state store a command uses: `--state URL` when given, else the default
//! ([`cairn_state::default_location`]: `CAIRN_STATE`, the nearest `.cairn/` folder from the
//! working directory up, else the per-user store). `cairn run` creates the store it resolves
//! to; `approve`, `reject`, `resume`, `show` and `runs` only open one that exists, and
//! otherwise say where they looked.

use std::sync::Arc;

/// A resolved state store and why it is that one.
pub struct Location {
    pub url: String,
    why: String,
}

impl Location {
    /// `given` is `--state` (clap has already read `CAIRN_STATE` into it when set).
    pub fn resolve(given: Option<&str>) -> Location {
        match given.filter(|u| !u.trim().is_empty()) {
            Some(url) => Location {
                url: url.to_string(),
                why: "given by --state or CAIRN_STATE".to_string(),
            },
            None => {
                let d = cairn_state::default_location();
                Location {
                    url: d.url,
                    why: d.why,
                }
            }
        }
    }

    /// Opens the store for `run`, creating it if needed.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn cairn_state::Store>> {
        Ok(cairn_state::open(&self.url).await?)
    }

    /// Opens a store that must exist: a missing one is an error (exit 2) that names where it
    /// was looked for and why there, and nothing is created.
    pub async fn open_existing(&self) -> anyhow::Result<Arc<dyn cairn_state::Store>> {
        self.missing(cairn_state::open_existing(&self.url).await)
    }

    /// [`Self::open_existing`], and the same store as the run queue when it is PostgreSQL (one
    /// set of connections for both).
    pub async fn open_existing_with_queue(
        &self,
    ) -> anyhow::Result<(Arc<dyn cairn_state::Store>, Option<cairn_state::PgStore>)> {
        if !is_postgres(&self.url) {
            return Ok((self.open_existing().await?, None));
        }
        let pg = self.missing(cairn_state::PgStore::connect_existing(self.url.trim()).await)?;
        Ok((Arc::new(pg.clone()), Some(pg)))
    }

    fn missing<T>(&self, opened: Result<T, cairn_state::StateError>) -> anyhow::Result<T> {
        match opened {
            Ok(store) => Ok(store),
            Err(e @ cairn_state::StateError::NoStore { .. }) => Err(crate::Invalid(format!(
                "{e}\n  ({}; run this where the run was started, or pass --state URL or set \
                 CAIRN_STATE)",
                self.why
            ))
            .into()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `--state URL` for the commands that read an existing store.
#[derive(clap::Args)]
pub struct StateArg {
    /// State store: a path or sqlite://PATH, or postgres://... (default: .cairn/state.db in the
    /// nearest folder up that has .cairn/, else ~/.local/state/cairn/state.db); must exist
    #[arg(long, env = "CAIRN_STATE", value_name = "URL", global = true)]
    state: Option<String>,
}

impl StateArg {
    pub fn location(&self) -> Location {
        Location::resolve(self.state.as_deref())
    }
}

/// Opens the PostgreSQL store that holds the run queue (`submit`, `worker`, `workers`),
/// creating its tables if needed. Any other store is refused (exit 2): the queue needs a
/// server that several hosts share and that can wake its workers.
pub async fn open_queue(location: &Location) -> anyhow::Result<cairn_state::PgStore> {
    open_queue_pooled(location, None).await
}

/// [`open_queue`] with at most `pool` pooled connections (the store's default when `None`).
pub async fn open_queue_pooled(
    location: &Location,
    pool: Option<u32>,
) -> anyhow::Result<cairn_state::PgStore> {
    let url = location.url.trim();
    if !is_postgres(url) {
        // The URL is not shown: a store that is not PostgreSQL may still carry a password.
        let kind = if url.starts_with("memory:") {
            "a memory store"
        } else if url.contains("://") && !url.starts_with("sqlite:") {
            "not a PostgreSQL URL"
        } else {
            "a SQLite file"
        };
        return Err(crate::Invalid(format!(
            "the run queue lives in a PostgreSQL state store (--state postgres://… or \
             CAIRN_STATE); this one is {kind} ({}). `cairn run` runs a runbook here without a \
             queue",
            location.why
        ))
        .into());
    }
    Ok(match pool {
        Some(n) => cairn_state::PgStore::connect_pooled(url, n).await?,
        None => cairn_state::PgStore::connect(url).await?,
    })
}

/// `--labels host=db1,zone=a`: labels a worker has, or a queued run wants.
pub fn parse_labels(s: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("expected KEY=VALUE[,KEY=VALUE…], got {pair:?}"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "label name {k:?}: use letters, digits, `-`, `_` or `.`"
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label `{k}` given twice"));
        }
    }
    Ok(out)
}

/// Labels as `host=db1,zone=a`, `-` for none.
pub fn show_labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A PostgreSQL state URL: the only store with a run queue.
pub fn is_postgres(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
