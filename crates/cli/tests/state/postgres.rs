//! The same resume-after-failure story against the PostgreSQL store, in a schema of its own.

use crate::common::{PgSchema, Sandbox};

#[test]
fn resume_after_fixing_the_failed_step_on_postgres() {
    let schema = PgSchema::new("resume");
    let sb = Sandbox::with_state(&schema.url());
    crate::resume::resume_after_fixing_the_failed_step(&sb);
    // The state lives in PostgreSQL: no SQLite file was made in the sandbox.
    assert!(!sb.exists("state.db"));
    assert!(!sb.exists(".cairn/state.db"));
}
