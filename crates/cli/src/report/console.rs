//! The console's reports port (`cairn_serve::reports::Reports`), filled in with these renderers:
//! a report downloaded from `cairn serve` is the one `cairn show RUN --report` writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cairn_serve::reports::Format;
use cairn_state::{RunRecord, Store};

use super::data::RunData;

/// A runbook's declared RTO and RPO, and the file's modification time and length they were read
/// at: a page of a run reads its runbook once, not on every view.
type Declared = (Option<SystemTime>, u64, Option<Duration>, Option<Duration>);

#[derive(Default)]
pub struct ConsoleReports {
    objectives: Mutex<HashMap<PathBuf, Declared>>,
}

impl ConsoleReports {
    /// What the runbook at `path` declares, read again only when the file changed; `None` when
    /// it cannot be read or is not valid any more.
    fn declared(&self, path: &Path) -> Option<(Option<Duration>, Option<Duration>)> {
        let meta = std::fs::metadata(path).ok()?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut cache = self
            .objectives
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&(at, len, rto, rpo)) = cache.get(path)
            && (at, len) == stamp
        {
            return Some((rto, rpo));
        }
        let templates = cairn_template::Templates::new();
        let (checked, _) = cairn_model::load(path, &templates).ok()?;
        let rb = &checked.runbook;
        let rto = rb.rto.as_ref().map(|v| v.value.0);
        let rpo = rb.rpo.as_ref().map(|v| v.value.0);
        cache.insert(path.to_path_buf(), (stamp.0, stamp.1, rto, rpo));
        Some((rto, rpo))
    }
}

#[async_trait]
impl cairn_serve::reports::Reports for ConsoleReports {
    async fn render(
        &self,
        store: &Arc<dyn Store>,
        run: RunRecord,
        format: Format,
    ) -> Result<String, String> {
        let data = RunData::load(store, run)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(match format {
            Format::Markdown => super::markdown::render(&data),
            Format::Junit => super::junit::render(&data),
            Format::Metrics => super::metrics::render(&data),
        })
    }

    async fn objectives(&self, run: &RunRecord) -> Vec<String> {
        match self.declared(Path::new(&run.path)) {
            // Only a run whose runbook declares one has objectives to show.
            Some((rto, rpo)) if rto.is_some() || rpo.is_some() => {
                super::markdown::objectives(run, rto, rpo).into()
            }
            _ => Vec::new(),
        }
    }
}
