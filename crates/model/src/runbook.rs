//! The runbook model: typed values for every key of the format, each keeping where it was written.
//!
//! The types mirror the YAML one to one, so the JSON Schema generated from them (schemars) is the
//! schema users' editors check against. Which step kind a step is, and similar "exactly one of"
//! rules, are enforced by the parser and exposed through accessors such as [`Step::action`].

use crate::notifier::{Notifier, Notify};
use crate::span::Spanned;
use crate::step::Step;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Serialize;
use std::path::PathBuf;

pub use crate::values::*;
/// A whole runbook file.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Cairn runbook",
    description = "A Cairn runbook: a DAG of SQL, shell, HTTP, Chroma and control steps."
)]
pub struct Runbook {
    /// Format version; this Cairn reads version 1.
    #[schemars(range(min = 1, max = 1))]
    pub cairn: Spanned<u32>,
    /// `[a-z0-9][a-z0-9-]*`
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: Spanned<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// Recovery time objective: every run reports its elapsed time against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto: Option<Spanned<Dur>>,
    /// Recovery point objective (informational; reported with the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Spanned<Dur>>,
    /// At most one active (running or paused) run holds this lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<String, Input>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub secrets: IndexMap<String, Secret>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub targets: IndexMap<String, Target>,
    /// Evaluated once, in order, before the first step.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub vars: IndexMap<String, Spanned<TValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    pub steps: Vec<Step>,
    /// Run after the DAG ends, whatever its result, in written order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<Step>,
    /// What the run returns (to `cairn show`, and to a parent's `uses` step).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, Spanned<TValue>>,
    /// Receivers of notices, by name (see `notify`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub notifiers: IndexMap<String, Notifier>,
    /// Which notifiers hear which run event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    #[serde(skip)]
    #[schemars(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    #[schemars(skip)]
    pub source: String,
    /// Ids of steps dropped for errors in their definition.
    #[serde(skip)]
    #[schemars(skip)]
    pub broken_ids: Vec<String>,
}
