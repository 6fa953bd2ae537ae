//! The state schema's migrations, one list of statements per version, for SQLite and
//! PostgreSQL. Opening a store applies those its database has not seen (see `schema.rs`).

use crate::SCHEMA_VERSION;

pub(crate) const SQLITE_MIGRATIONS: &[&[&str]] = &[
    // 1: the tables.
    &[
        "CREATE TABLE cairn_runs (
        id TEXT PRIMARY KEY NOT NULL,
        runbook TEXT NOT NULL,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        inputs TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        heartbeat_at TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        username TEXT NOT NULL,
        parent_run TEXT,
        outputs TEXT,
        error TEXT,
        attempt INTEGER NOT NULL
    )",
        "CREATE INDEX cairn_runs_by_start ON cairn_runs (started_at, id)",
        "CREATE INDEX cairn_runs_by_runbook ON cairn_runs (runbook, started_at)",
        "CREATE INDEX cairn_runs_by_status ON cairn_runs (status)",
        "CREATE TABLE cairn_step_defs (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        pos INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        def_hash TEXT NOT NULL,
        needs TEXT NOT NULL,
        PRIMARY KEY (run_id, pos)
    )",
        // item -1 is the step as a whole (NULL cannot be part of a primary key). Rows are read
        // back in rowid order, which an upsert keeps: the order steps were first written.
        "CREATE TABLE cairn_steps (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        item INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        result TEXT,
        outputs TEXT,
        error TEXT,
        log_path TEXT,
        def_hash TEXT NOT NULL,
        idempotent INTEGER NOT NULL,
        PRIMARY KEY (run_id, step_id, item)
    )",
        // No foreign key to runs: a lock outlives nothing, but its holder row may be missing.
        "CREATE TABLE cairn_locks (
        name TEXT PRIMARY KEY NOT NULL,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since TEXT NOT NULL,
        lease_until TEXT NOT NULL,
        lease_ms INTEGER NOT NULL
    )",
        "CREATE INDEX cairn_locks_by_run ON cairn_locks (run_id)",
        "CREATE TABLE cairn_approvals (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TEXT NOT NULL
    )",
        "CREATE INDEX cairn_approvals_by_run ON cairn_approvals (run_id)",
    ],
    // 2: fencing (when the latest attempt was claimed) and one sub-run per parent step or item.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN claimed_at TEXT",
        "UPDATE cairn_runs SET claimed_at = heartbeat_at",
        "ALTER TABLE cairn_runs ADD COLUMN parent_step TEXT",
        "CREATE INDEX cairn_runs_by_parent ON cairn_runs (parent_run)",
    ],
    // 3: who answered a gate, where from, and their comment.
    &[
        "ALTER TABLE cairn_approvals ADD COLUMN comment TEXT",
        "ALTER TABLE cairn_approvals ADD COLUMN host TEXT",
        "ALTER TABLE cairn_approvals ADD COLUMN tty TEXT",
    ],
    // 4: liveness on the run's host by process identity (pid and start time), not by clocks.
    &["ALTER TABLE cairn_runs ADD COLUMN pid_start INTEGER NOT NULL DEFAULT 0"],
    // 5: liveness across hosts by a heartbeat counter, and what each host has seen of it (when,
    // by its own boot clock) instead of comparing the clocks of two hosts.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN heartbeat_seq INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE cairn_sightings (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        observer TEXT NOT NULL,
        boot_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        since_ns INTEGER NOT NULL,
        PRIMARY KEY (run_id, observer)
    )",
    ],
    // 6: the run history read page by page from an index (status or runbook, start, id), and
    // the audit trail of actions taken from outside a terminal (the web console).
    &[
        "CREATE INDEX cairn_runs_by_status_start ON cairn_runs (status, started_at, id)",
        "CREATE INDEX cairn_runs_by_runbook_start ON cairn_runs (runbook, started_at, id)",
        "CREATE TABLE cairn_actions (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        by_user TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        step_id TEXT,
        detail TEXT
    )",
        "CREATE INDEX cairn_actions_by_run ON cairn_actions (run_id)",
    ],
    // 7: the run queue and its workers. Only PostgreSQL serves them (`cairn submit` refuses
    // SQLite); the tables exist on SQLite so that both schemas stay one list of versions.
    &[
        "CREATE TABLE cairn_queue (
        id TEXT PRIMARY KEY NOT NULL,
        path TEXT NOT NULL,
        sets TEXT NOT NULL,
        inputs TEXT,
        labels TEXT NOT NULL,
        submitter TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        status TEXT NOT NULL,
        worker TEXT,
        claims INTEGER NOT NULL DEFAULT 0,
        claimed_at TEXT,
        heartbeat_at TEXT,
        finished_at TEXT,
        outcome TEXT
    )",
        "CREATE TABLE cairn_workers (
        id TEXT PRIMARY KEY NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        labels TEXT NOT NULL,
        concurrency INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        stopped_at TEXT
    )",
    ],
    // 8: steps routed to a worker (`runs_on`). PostgreSQL only, as the queue.
    &["CREATE TABLE cairn_step_queue (
        id TEXT PRIMARY KEY NOT NULL,
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        item INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        labels TEXT NOT NULL,
        path TEXT NOT NULL,
        action TEXT NOT NULL,
        secrets TEXT NOT NULL,
        nonce TEXT NOT NULL,
        timeout_ms INTEGER,
        idempotent INTEGER NOT NULL,
        status TEXT NOT NULL,
        worker TEXT,
        claims INTEGER NOT NULL DEFAULT 0,
        submitted_at TEXT NOT NULL,
        claimed_at TEXT,
        heartbeat_at TEXT,
        finished_at TEXT,
        cancel INTEGER NOT NULL DEFAULT 0,
        outcome TEXT
    )"],
    // 9: a run's labels (its runbook's), kept with the run as the record reads them and,
    // one row per label, beside it for the label filter: the index leads with the label and
    // orders by the run's start, so a page of runs with a label is a range of it.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN labels TEXT",
        "CREATE TABLE cairn_run_labels (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        run_started_at TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    )",
        "CREATE INDEX cairn_run_labels_by_label \
         ON cairn_run_labels (name, value, run_started_at, run_id)",
    ],
];

const _: () = assert!(SQLITE_MIGRATIONS.len() as i64 == SCHEMA_VERSION);

// Columns mirror the SQLite schema, with native types: JSONB, TIMESTAMPTZ, BIGINT, BOOLEAN.
pub(crate) const PG_MIGRATIONS: &[&[&str]] = &[
    // 1: the tables.
    &[
        "CREATE TABLE cairn_runs (
        id TEXT PRIMARY KEY,
        runbook TEXT NOT NULL,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        inputs JSONB NOT NULL,
        status TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        username TEXT NOT NULL,
        parent_run TEXT,
        outputs JSONB,
        error TEXT,
        attempt BIGINT NOT NULL
    )",
        "CREATE INDEX cairn_runs_by_start ON cairn_runs (started_at, id)",
        "CREATE INDEX cairn_runs_by_runbook ON cairn_runs (runbook, started_at)",
        "CREATE INDEX cairn_runs_by_status ON cairn_runs (status)",
        "CREATE TABLE cairn_step_defs (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        pos BIGINT NOT NULL,
        step_id TEXT NOT NULL,
        def_hash TEXT NOT NULL,
        needs JSONB NOT NULL,
        PRIMARY KEY (run_id, pos)
    )",
        // item -1 is the step as a whole (NULL cannot be part of a primary key); seq keeps the
        // order steps were first written, which an upsert does not change.
        "CREATE TABLE cairn_steps (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        item BIGINT NOT NULL,
        status TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        result JSONB,
        outputs JSONB,
        error TEXT,
        log_path TEXT,
        def_hash TEXT NOT NULL,
        idempotent BOOLEAN NOT NULL,
        PRIMARY KEY (run_id, step_id, item)
    )",
        "CREATE TABLE cairn_locks (
        name TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        since TIMESTAMPTZ NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL,
        lease_ms BIGINT NOT NULL
    )",
        "CREATE INDEX cairn_locks_by_run ON cairn_locks (run_id)",
        "CREATE TABLE cairn_approvals (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TIMESTAMPTZ NOT NULL
    )",
        "CREATE INDEX cairn_approvals_by_run ON cairn_approvals (run_id, seq)",
    ],
    // 2: fencing (when the latest attempt was claimed) and one sub-run per parent step or item.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN claimed_at TIMESTAMPTZ",
        "UPDATE cairn_runs SET claimed_at = heartbeat_at",
        "ALTER TABLE cairn_runs ALTER COLUMN claimed_at SET NOT NULL",
        "ALTER TABLE cairn_runs ADD COLUMN parent_step TEXT",
        "CREATE INDEX cairn_runs_by_parent ON cairn_runs (parent_run)",
    ],
    // 3: who answered a gate, where from, and their comment.
    &[
        "ALTER TABLE cairn_approvals ADD COLUMN comment TEXT",
        "ALTER TABLE cairn_approvals ADD COLUMN host TEXT",
        "ALTER TABLE cairn_approvals ADD COLUMN tty TEXT",
    ],
    // 4: liveness on the run's host by process identity (pid and start time), not by clocks.
    &["ALTER TABLE cairn_runs ADD COLUMN pid_start BIGINT NOT NULL DEFAULT 0"],
    // 5: liveness across hosts by a heartbeat counter, and what each host has seen of it (when,
    // by its own boot clock) instead of comparing the clocks of two hosts.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN heartbeat_seq BIGINT NOT NULL DEFAULT 0",
        "CREATE TABLE cairn_sightings (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        observer TEXT NOT NULL,
        boot_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        since_ns BIGINT NOT NULL,
        PRIMARY KEY (run_id, observer)
    )",
    ],
    // 6: the run history read page by page from an index (status or runbook, start, id), and
    // the audit trail of actions taken from outside a terminal (the web console).
    &[
        "CREATE INDEX cairn_runs_by_status_start ON cairn_runs (status, started_at, id)",
        "CREATE INDEX cairn_runs_by_runbook_start ON cairn_runs (runbook, started_at, id)",
        "CREATE TABLE cairn_actions (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        at TIMESTAMPTZ NOT NULL,
        by_user TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        step_id TEXT,
        detail TEXT
    )",
        "CREATE INDEX cairn_actions_by_run ON cairn_actions (run_id, seq)",
    ],
    // 7: the run queue (one row per submitted run; its id is the run's) and the workers that
    // claim from it. Leases are judged by the server's clock alone (`now()`), never a worker's.
    &[
        "CREATE TABLE cairn_queue (
        id TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        sets JSONB NOT NULL,
        inputs JSONB,
        labels JSONB NOT NULL,
        submitter TEXT NOT NULL,
        submitted_at TIMESTAMPTZ NOT NULL,
        status TEXT NOT NULL,
        worker TEXT,
        claims BIGINT NOT NULL DEFAULT 0,
        claimed_at TIMESTAMPTZ,
        heartbeat_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        outcome TEXT
    )",
        // What a claim looks for: queued items in order, and claimed ones whose lease ran out.
        "CREATE INDEX cairn_queue_open ON cairn_queue (submitted_at, id) \
         WHERE status IN ('queued', 'claimed')",
        "CREATE INDEX cairn_queue_by_worker ON cairn_queue (worker) WHERE status = 'claimed'",
        "CREATE TABLE cairn_workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        labels JSONB NOT NULL,
        concurrency BIGINT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        stopped_at TIMESTAMPTZ
    )",
    ],
    // 8: steps routed to a worker (`runs_on`): the step's prepared action (secrets by name,
    // resolved on the worker), claimed as runs are; `outcome` is what comes back to the run.
    &[
        "CREATE TABLE cairn_step_queue (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        item BIGINT NOT NULL,
        attempt BIGINT NOT NULL,
        labels JSONB NOT NULL,
        path TEXT NOT NULL,
        action JSONB NOT NULL,
        secrets JSONB NOT NULL,
        nonce TEXT NOT NULL,
        timeout_ms BIGINT,
        idempotent BOOLEAN NOT NULL,
        status TEXT NOT NULL,
        worker TEXT,
        claims BIGINT NOT NULL DEFAULT 0,
        submitted_at TIMESTAMPTZ NOT NULL,
        claimed_at TIMESTAMPTZ,
        heartbeat_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        cancel BOOLEAN NOT NULL DEFAULT false,
        outcome JSONB
    )",
        "CREATE INDEX cairn_step_queue_open ON cairn_step_queue (submitted_at) WHERE status <> 'done'",
    ],
    // 9: a run's labels, as in SQLite.
    &[
        "ALTER TABLE cairn_runs ADD COLUMN labels JSONB",
        "CREATE TABLE cairn_run_labels (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        run_started_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (run_id, name)
    )",
        "CREATE INDEX cairn_run_labels_by_label \
         ON cairn_run_labels (name, value, run_started_at, run_id)",
    ],
];

const _: () = assert!(PG_MIGRATIONS.len() as i64 == SCHEMA_VERSION);
