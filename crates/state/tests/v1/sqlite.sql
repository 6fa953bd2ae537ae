-- The schema as cairn created it at version 1 (before fencing), kept to test the migration.
CREATE TABLE cairn_schema (version INTEGER NOT NULL);
INSERT INTO cairn_schema (version) VALUES (1);
CREATE TABLE cairn_runs (
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
    );
CREATE INDEX cairn_runs_by_start ON cairn_runs (started_at, id);
CREATE INDEX cairn_runs_by_runbook ON cairn_runs (runbook, started_at);
CREATE INDEX cairn_runs_by_status ON cairn_runs (status);
CREATE TABLE cairn_step_defs (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        pos INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        def_hash TEXT NOT NULL,
        needs TEXT NOT NULL,
        PRIMARY KEY (run_id, pos)
    );
CREATE TABLE cairn_steps (
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
    );
CREATE TABLE cairn_locks (
        name TEXT PRIMARY KEY NOT NULL,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since TEXT NOT NULL,
        lease_until TEXT NOT NULL,
        lease_ms INTEGER NOT NULL
    );
CREATE INDEX cairn_locks_by_run ON cairn_locks (run_id);
CREATE TABLE cairn_approvals (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TEXT NOT NULL
    );
CREATE INDEX cairn_approvals_by_run ON cairn_approvals (run_id);
