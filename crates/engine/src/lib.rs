//! cairn-engine: turns a checked runbook into actions, and prints them (dry-run) or performs
//! them (run), sharing one path so the plan cannot drift from the run.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let templates = cairn_template::Templates::new();
//! let (checked, _warnings) = cairn_model::load("runbooks/monitoring/health-check.yaml".as_ref(), &templates)?;
//! let plan = cairn_engine::plan::plan(&checked, &templates, &Default::default(), chrono::Utc::now())?;
//! println!("{}", serde_json::to_string_pretty(&plan)?);
//! # Ok(()) }
//! ```

pub mod action;
pub mod answer;
mod attempt;
mod builtin;
pub mod context;
mod decide;
#[cfg(test)]
mod def_hash_pin;
pub mod events;
pub mod exec;
pub mod exit;
mod finally;
pub mod gate;
pub mod inputs;
pub mod masker;
pub mod masking;
pub mod options;
pub mod outcome;
pub mod plan;
pub mod prepare;
pub mod probe;
mod prompt;
mod reclaim;
pub mod resume;
pub mod run;
mod schedule;
pub mod secrets;
pub(crate) mod shared;
pub mod stand_in;
mod start;
mod step_runner;
mod subrun;
pub mod warnings;
