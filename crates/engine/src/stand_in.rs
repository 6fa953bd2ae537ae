//! The port through which a test stands in for what the engine would otherwise wait for or
//! start itself: a person's answer to a gate, and a `uses` step's sub-run. `cairn test` fills
//! it with a case's fixtures; everything else (the gate's rules and `on_reject`, the step's
//! `when`, retries, `expect`, `outputs`, `finally`, reports) stays the engine's own path.
//! External actions have their own port, [`crate::exec::Actions`].

use crate::exec::{ActionPort, Call};
use crate::gate::Answer;
use cairn_steps::StepError;
use serde_json::Value as Json;
use std::sync::Arc;

/// What a test gives in place of a person or a sub-run. `None` from a method: the engine
/// does what it does in a real run (the gate waits, the sub-run starts).
pub trait StandIns: Send + Sync {
    /// The answers given to gate `call.step`, in order. They are recorded like answers from
    /// `cairn approve` and judged by the gate's own rules.
    fn answers(&self, call: &Call<'_>) -> Option<Vec<Answer>>;

    /// The outcome of a `uses` step's sub-run without starting it: its outputs, or why it
    /// failed.
    fn sub_run(&self, call: &Call<'_>) -> Option<Result<Json, StepError>>;

    /// The ports a sub-run started by step `parent_step` (`deploy`, or `deploy[2]` for an item)
    /// is given; `None`: the parent's own.
    fn child(&self, parent_step: &str) -> Option<ChildPorts>;

    /// How long to really wait for a retry's delay or a `wait`'s interval (a test need not
    /// wait them out; a `wait` still counts the planned intervals against its deadline).
    fn pause(&self, planned: std::time::Duration) -> std::time::Duration {
        planned
    }
}

/// The ports of a sub-run (see [`StandIns::child`]).
pub struct ChildPorts {
    pub stand_ins: StandInPort,
    pub actions: Option<ActionPort>,
}

/// The port as a run option (cloned with the options).
#[derive(Clone)]
pub struct StandInPort(pub Arc<dyn StandIns>);

impl std::fmt::Debug for StandInPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandInPort(..)")
    }
}
