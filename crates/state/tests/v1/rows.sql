-- Runs as a version-1 cairn left them: one paused at an approval, one failed on its second attempt.
INSERT INTO cairn_runs (id, runbook, path, content_hash, inputs, status, started_at, finished_at,
    heartbeat_at, host, pid, username, parent_run, outputs, error, attempt)
VALUES
    ('01JV1PAUSED0000000000000000', 'restore', '/srv/runbooks/restore.yaml', 'sha256:aa',
     '{"env": "prod", "dirs": ["/a", "/b"]}', 'paused', '2026-01-02T03:04:05.000006Z', NULL,
     '2026-01-02T03:05:00.250000Z', 'old-host', 4242, 'sre', NULL, NULL, NULL, 1),
    ('01JV1FAILED0000000000000000', 'backup', '/srv/runbooks/backup.yaml', 'sha256:bb', '{}',
     'failed', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:10:00.000000Z',
     '2026-01-01T00:09:59.000000Z', 'old-host', 4343, 'ops', NULL, '{"size": 42}',
     'step `dump`: exit status 1', 2);
INSERT INTO cairn_step_defs (run_id, pos, step_id, def_hash, needs)
VALUES
    ('01JV1PAUSED0000000000000000', 0, 'dump', 'h-dump', '[]'),
    ('01JV1PAUSED0000000000000000', 1, 'gate', 'h-gate', '["dump"]'),
    ('01JV1PAUSED0000000000000000', 2, 'load', 'h-load', '["gate"]');
INSERT INTO cairn_steps (run_id, step_id, item, status, attempt, started_at, finished_at, result,
    outputs, error, log_path, def_hash, idempotent)
VALUES
    ('01JV1PAUSED0000000000000000', 'dump', -1, 'succeeded', 1, '2026-01-02T03:04:06.000000Z',
     '2026-01-02T03:04:50.000000Z', '{"exit_code": 0}', '{"file": "/b/x.dump"}', NULL,
     '/logs/dump.log', 'h-dump', true),
    ('01JV1PAUSED0000000000000000', 'gate', -1, 'waiting', 1, '2026-01-02T03:04:51.000000Z', NULL,
     NULL, NULL, NULL, NULL, 'h-gate', false);
INSERT INTO cairn_approvals (run_id, step_id, decision, decided_by, decided_at)
VALUES ('01JV1PAUSED0000000000000000', 'gate', 'approved', 'alice', '2026-01-02T04:00:00.000000Z');
