//! `cairn run` end to end: the real binary, real processes, a real PostgreSQL server, a real
//! local HTTP server and a real Chroma server, with every fact asserted from the JSON events,
//! the files the steps wrote and what the peers received.
//!
//! Each test writes its runbook into a temp dir and runs
//! `cairn run FILE --state <dir>/state.db --log-format json` there.
//! PostgreSQL: 127.0.0.1:5432, database `test`, user `postgres` (trust).
//! Chroma: `$CAIRN_CHROMA_BIN` or `~/.cache/cairn/chroma-venv/bin/chroma`.

mod run {
    pub mod common;

    mod approvals;
    mod authoring;
    mod branches;
    mod canary;
    mod check;
    mod checks;
    mod chroma;
    mod data;
    mod detach;
    mod drill;
    mod e2e;
    mod fanout;
    mod hostile;
    mod http;
    mod http_target;
    mod injection;
    mod inputs;
    mod keep_for_resume;
    mod locks;
    mod memory_system;
    mod notify;
    mod output;
    mod plan_agrees;
    mod probe;
    mod reports;
    mod retries;
    mod secrets;
    mod signals;
    mod subruns;
    mod timeouts;
    mod when;
}
