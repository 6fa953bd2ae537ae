//! The OpenAPI 3.1 document of the JSON API, served at `/api/openapi.json`.

use serde_json::{Value, json};

fn id_params(step: bool) -> Value {
    let mut p = vec![
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "description": "The run id (exact)" }),
    ];
    if step {
        p.push(json!({ "name": "step", "in": "path", "required": true, "schema": { "type": "string" }, "description": "The step id" }));
    }
    Value::Array(p)
}

fn errors() -> Value {
    let e = json!({ "description": "Refused or failed", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    json!({ "401": e, "403": e, "404": e, "500": e })
}

fn ok(schema: &str, description: &str) -> Value {
    let mut r = errors();
    r["200"] = json!({ "description": description, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    r
}

fn action(summary: &str, role: &str, body: bool) -> Value {
    let mut op = json!({
        "summary": summary,
        "description": format!("Needs the role `{role}` (or `admin`), unscoped or with a scope the run's labels match (403 otherwise, written to the run's audit trail). With a cookie or a proxy identity, the header `X-CSRF-Token` (from `/api/me`) is required; with `Authorization: Bearer` it is not."),
        "parameters": id_params(summary.contains("gate")),
        "responses": ok("ActionResult", "Done"),
    });
    if body {
        op["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "comment": { "type": "string", "maxLength": 2000 } } } } } });
    }
    op["responses"]["409"] = json!({ "description": "Not in a state to do this", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    op
}

fn resume_op() -> Value {
    let mut op = action(
        "Resume a failed, interrupted or paused run (`cairn resume` as a process of its own); with `from`, re-run that step and what follows it, also of a succeeded run",
        "operator",
        false,
    );
    op["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "from": { "type": "string" } } } } } });
    op
}

pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Cairn console API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs, steps, approvals and live step logs of a Cairn state store. Every page of the console is a client of this API, under the same identity and role rules.",
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "--auth token: a token of the token file" },
                "cookie": { "type": "apiKey", "in": "cookie", "name": "cairn_token", "description": "--auth token: set by the login form" },
                "proxy": { "type": "apiKey", "in": "header", "name": "X-Forwarded-User", "description": "--auth proxy: believed only from a --trusted-proxy address" },
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "ActionResult": { "type": "object", "required": ["ok", "message"], "properties": { "ok": { "type": "boolean" }, "message": { "type": "string" } } },
                "RunRow": { "type": "object", "required": ["id", "status"], "properties": {
                    "id": { "type": "string" }, "runbook": { "type": "string" },
                    "status": { "type": "string", "enum": ["running", "succeeded", "failed", "paused", "interrupted", "unreadable"] },
                    "outcome": { "type": "string" }, "unconfirmed": { "type": "boolean" },
                    "started_at": { "type": ["string", "null"], "format": "date-time" },
                    "finished_at": { "type": ["string", "null"], "format": "date-time" },
                    "duration_s": { "type": ["number", "null"] }, "attempt": { "type": "integer" },
                    "user": { "type": "string" }, "host": { "type": "string" },
                    "parent_run": { "type": ["string", "null"] }, "error": { "type": ["string", "null"] },
                    "labels": { "type": "object", "additionalProperties": { "type": "string" }, "description": "The runbook's labels, recorded when the run was created (none for a run recorded before they were)" } } },
                "RunsPage": { "type": "object", "required": ["runs", "next"], "properties": {
                    "runs": { "type": "array", "items": { "$ref": "#/components/schemas/RunRow" } },
                    "next": { "type": ["string", "null"], "description": "Pass as `after` for the next page" },
                    "filter": { "type": "object" } } },
                "Step": { "type": "object", "properties": {
                    "step_id": { "type": "string" }, "item": { "type": ["integer", "null"] },
                    "status": { "type": "string" }, "attempt": { "type": "integer" },
                    "started_at": { "type": ["string", "null"] }, "finished_at": { "type": ["string", "null"] },
                    "duration_s": { "type": ["number", "null"] }, "outputs": {}, "result": {},
                    "error": { "type": ["string", "null"] }, "has_log": { "type": "boolean" },
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/Step" } } } },
                "Gate": { "type": "object", "properties": {
                    "run_id": { "type": "string" }, "runbook": { "type": "string" }, "step_id": { "type": "string" },
                    "waiting_since": { "type": ["string", "null"] }, "message": {}, "rules": { "type": ["string", "null"] },
                    "deadline": { "type": ["string", "null"] }, "starter": { "type": "string" },
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } } } },
                "Run": { "type": "object", "required": ["run", "steps"], "properties": {
                    "run": { "$ref": "#/components/schemas/RunRow" },
                    "warnings": { "type": "array" },
                    "steps": { "type": "array", "items": { "$ref": "#/components/schemas/Step" } },
                    "waiting": { "type": "array", "items": { "$ref": "#/components/schemas/Gate" } },
                    "approvals": { "type": "array", "items": { "type": "object" } },
                    "actions": { "type": "array", "items": { "type": "object" } },
                    "objectives": { "type": "array", "items": { "type": "string" }, "description": "The RTO and RPO lines of the run's Markdown report (Markdown), when its runbook declares either; empty otherwise" } } },
                "StepDetail": { "type": "object", "properties": {
                    "run": { "$ref": "#/components/schemas/RunRow" }, "step_id": { "type": "string" },
                    "records": { "type": "array", "items": { "$ref": "#/components/schemas/Step" } } } },
                "Gates": { "type": "object", "required": ["gates"], "properties": { "gates": { "type": "array", "items": { "$ref": "#/components/schemas/Gate" } } } },
                "Me": { "type": "object", "properties": { "user": { "type": ["string", "null"] }, "roles": { "type": "array", "items": { "type": "string" }, "description": "Each role, with its scope if it has one: `approver[team=memory]` counts only in runs with that label" }, "auth": { "type": "string" }, "csrf": { "type": "string" } } },
            },
        },
        "security": [{ "bearer": [] }, { "cookie": [] }, { "proxy": [] }, {}],
        "paths": {
            "/api/me": { "get": { "summary": "Who the server takes the caller for, and the CSRF token of its forms", "responses": ok("Me", "The caller") } },
            "/api/runs": { "get": {
                "summary": "The run history, newest first, one page at a time",
                "parameters": [
                    { "name": "runbook", "in": "query", "schema": { "type": "string" } },
                    { "name": "status", "in": "query", "schema": { "type": "string", "enum": ["running", "succeeded", "failed", "paused", "interrupted"] } },
                    { "name": "after", "in": "query", "schema": { "type": "string" }, "description": "The `next` of the previous page" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 50 } },
                    { "name": "before", "in": "query", "schema": { "type": "string" }, "description": "Only runs started before this day (YYYY-MM-DD, UTC) or RFC 3339 time" },
                    { "name": "id", "in": "query", "schema": { "type": "string" }, "description": "A run id or a unique prefix: that run alone" },
                    { "name": "label", "in": "query", "schema": { "type": "string" }, "example": "team=memory,kind=backup", "description": "Only runs whose runbook had every one of these labels: KEY=VALUE pairs, comma-separated (exact match)" },
                ],
                "responses": { "400": { "description": "Bad filter or cursor", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }, "200": ok("RunsPage", "A page")["200"], "401": errors()["401"] },
            } },
            "/api/runs/{id}": { "get": { "summary": "One run: steps, attempts, timings, outputs (masked), answers, actions", "parameters": id_params(false), "responses": ok("Run", "The run") } },
            "/api/runs/{id}/dag.svg": { "get": { "summary": "The step DAG as SVG, coloured by status", "parameters": id_params(false), "responses": { "200": { "description": "SVG", "content": { "image/svg+xml": {} } } } } },
            "/api/runs/{id}/reports/{format}": { "get": {
                "summary": "A report of the run for download, as `cairn show RUN --report/--junit/--metrics-file` writes it",
                "parameters": [
                    id_params(false)[0].clone(),
                    { "name": "format", "in": "path", "required": true, "schema": { "type": "string", "enum": ["markdown", "junit", "metrics"] } },
                ],
                "responses": {
                    "200": { "description": "The report (an attachment)", "content": { "text/markdown": {}, "application/xml": {}, "text/plain": {} } },
                    "404": errors()["404"], "401": errors()["401"],
                },
            } },
            "/api/runs/{id}/steps/{step}": { "get": { "summary": "One step and its for_each items", "parameters": id_params(true), "responses": ok("StepDetail", "The step") } },
            "/api/runs/{id}/steps/{step}/log": { "get": {
                "summary": "The step's log as Server-Sent Events",
                "description": "Opens at the end of the log (its last 16 KiB), at `from`, or after `Last-Event-ID` on a reconnect. Events: `log` (data `{\"text\": ...}`, id = byte offset after it), `reset` (the log was replaced, at the step's end or by a new attempt: the text starts anew), then `end`.",
                "parameters": [
                    id_params(true)[0].clone(), id_params(true)[1].clone(),
                    { "name": "item", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "from", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "Last-Event-ID", "in": "header", "schema": { "type": "string" } },
                ],
                "responses": { "200": { "description": "An event stream", "content": { "text/event-stream": {} } }, "404": errors()["404"], "401": errors()["401"] },
            } },
            "/api/runs/{id}/steps/{step}/approve": { "post": action("Approve a waiting gate (the gate's own rules apply: approvers, min_approvals, self-approval, deadline); a decided gate resumes the run", "approver", true) },
            "/api/runs/{id}/steps/{step}/reject": { "post": action("Reject a waiting gate; the run is resumed to record it", "approver", true) },
            "/api/runs/{id}/resume": { "post": resume_op() },
            "/api/runs/{id}/cancel": { "post": action("Cancel a running run as Ctrl-C would (SIGTERM to its process, on this host only)", "operator", false) },
            "/api/runbooks": { "get": { "summary": "The runbooks under --runbooks DIR with their validation", "responses": { "200": { "description": "The list", "content": { "application/json": {} } }, "404": errors()["404"], "401": errors()["401"] } } },
            "/api/runbooks/view": { "get": { "summary": "One runbook: its diagnostics (file:line:column), steps, last runs", "parameters": [{ "name": "file", "in": "query", "required": true, "schema": { "type": "string" } }], "responses": { "200": { "description": "The runbook", "content": { "application/json": {} } }, "404": errors()["404"], "401": errors()["401"] } } },
            "/api/approvals": { "get": { "summary": "Gates waiting for an answer across runs, oldest first", "responses": ok("Gates", "The gates") } },
            "/api/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } } } },
        },
    })
}
