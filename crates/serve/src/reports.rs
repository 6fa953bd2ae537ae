//! The reports of a run for download (Markdown, JUnit XML, Prometheus metrics) and its
//! objectives (RTO, RPO), through a port the `cairn` binary fills in with the renderers of
//! `cairn show RUN --report/--junit/--metrics-file`: the console has no renderer of its own, so
//! a report downloaded here and one written by the CLI are the same bytes.

use std::sync::Arc;

use async_trait::async_trait;
use cairn_state::{RunRecord, Store};

/// A report's format, as named in its URL (`/api/runs/RUN/reports/FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Junit,
    Metrics,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Markdown, Format::Junit, Format::Metrics];

    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Junit => "junit",
            Format::Metrics => "metrics",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Junit => "application/xml; charset=utf-8",
            // The Prometheus text exposition format.
            Format::Metrics => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The file a browser saves it as (a run id is a ULID: nothing to escape).
    pub fn file_name(self, run_id: &str) -> String {
        match self {
            Format::Markdown => format!("{run_id}.md"),
            Format::Junit => format!("{run_id}-junit.xml"),
            Format::Metrics => format!("{run_id}.prom"),
        }
    }
}

/// What the console asks of the CLI's report code.
#[async_trait]
pub trait Reports: Send + Sync {
    /// The run's report in `format`, from the store's records and the runbook as it is now,
    /// exactly as `cairn show RUN` writes it.
    async fn render(
        &self,
        store: &Arc<dyn Store>,
        run: RunRecord,
        format: Format,
    ) -> Result<String, String>;

    /// The run's RTO and RPO lines as its Markdown report states them (declared or not, met or
    /// missed); none when the runbook cannot be read any more.
    async fn objectives(&self, run: &RunRecord) -> Vec<String>;
}
