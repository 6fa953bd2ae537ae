-- The schema as cairn created it at version 1 (before fencing), kept to test the migration.
CREATE TABLE cairn_schema (version BIGINT NOT NULL);
INSERT INTO cairn_schema (version) VALUES (1);
CREATE TABLE cairn_runs (
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
    );
CREATE INDEX cairn_runs_by_start ON cairn_runs (started_at, id);
CREATE INDEX cairn_runs_by_runbook ON cairn_runs (runbook, started_at);
CREATE INDEX cairn_runs_by_status ON cairn_runs (status);
CREATE TABLE cairn_step_defs (
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        pos BIGINT NOT NULL,
        step_id TEXT NOT NULL,
        def_hash TEXT NOT NULL,
        needs JSONB NOT NULL,
        PRIMARY KEY (run_id, pos)
    );
CREATE TABLE cairn_steps (
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
    );
CREATE TABLE cairn_locks (
        name TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        since TIMESTAMPTZ NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL,
        lease_ms BIGINT NOT NULL
    );
CREATE INDEX cairn_locks_by_run ON cairn_locks (run_id);
CREATE TABLE cairn_approvals (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        run_id TEXT NOT NULL REFERENCES cairn_runs (id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TIMESTAMPTZ NOT NULL
    );
CREATE INDEX cairn_approvals_by_run ON cairn_approvals (run_id, seq);
CREATE TABLE IF NOT EXISTS cairn_schema (version BIGINT NOT NULL);
