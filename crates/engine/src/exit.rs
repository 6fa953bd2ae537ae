//! The exit codes of the contract (docs/cli.md), for the CLI and anything else that reports
//! a run's end as a process status.

pub const OK: u8 = 0;
pub const STEP_FAILED: u8 = 1;
pub const INVALID: u8 = 2;
pub const PAUSED: u8 = 3;
/// Not a verdict on the runbook: the state store could not be opened, reached or written
/// (also mid-run), an I/O error, or a bug in Cairn.
pub const INFRA: u8 = 4;
pub const INTERRUPTED: u8 = 130;
