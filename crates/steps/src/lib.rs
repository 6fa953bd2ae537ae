//! cairn-steps: one module per step kind that touches the outside world.
//!
//! Each kind takes a fully rendered specification (templates already applied by the engine)
//! and returns its result as JSON, the shape documented in docs/runbook-format.md.
//! Steps never know the engine: cancellation arrives as a `CancellationToken`.

pub mod chroma;
pub mod error;
pub mod http;
pub mod shell;
pub mod sql;

pub use error::StepError;
