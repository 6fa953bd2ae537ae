//! Performing a [`Prepared`] action with the step kinds of cairn-steps. Clients and pools are
//! shared for the whole run and opened lazily.

use crate::prepare::{Prepared, ResolvedTarget};
use cairn_steps::StepError;
use cairn_steps::chroma::{ChromaAction, ChromaClient, ChromaTarget};
use cairn_steps::http::{HttpClients, HttpSpec};
use cairn_steps::shell::{Command, ShellSpec};
use cairn_steps::sql::{Pools, SqlSpec, SqlTarget};
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One call through the [`Actions`] port: which step (and `for_each` item) of which run, and
/// which attempt of it (1, then +1 per retry; back to 1 in a new attempt of the run).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub run_id: &'a str,
    pub step: &'a str,
    pub item: Option<usize>,
    pub attempt: u32,
    /// The step's `runs_on`: the labels of the worker that must perform it. [`Peers`]
    /// refuses such a call: only a routing implementation of the port may take it.
    pub runs_on: Option<&'a std::collections::BTreeMap<String, String>>,
    /// The step may run again after a crash interrupted it (`idempotent`, default true).
    pub idempotent: bool,
}

/// The port through which the engine performs every external action (shell, argv, SQL, HTTP,
/// Chroma, and the probe of a `wait … until`). [`Peers`] performs them for real; a test puts a
/// scripted implementation here (through [`crate::options::RunOptions::actions`]) and runs the real
/// scheduler, checkpoints and resume around it. The engine's own kinds (check, approval, wait,
/// report, uses) are not behind it.
#[async_trait::async_trait]
pub trait Actions: Send + Sync {
    /// Perform one attempt of an action; the JSON is the step kind's result.
    async fn perform(
        &self,
        call: &Call<'_>,
        action: &Prepared,
        a: &Attempt<'_>,
    ) -> Result<Json, StepError>;

    /// The run is over: close connections.
    async fn close(&self) {}
}

/// The port as a run option (cloned with the options, shared by sub-runs).
#[derive(Clone)]
pub struct ActionPort(pub std::sync::Arc<dyn Actions>);

impl std::fmt::Debug for ActionPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionPort(..)")
    }
}

#[async_trait::async_trait]
impl Actions for Peers {
    async fn perform(
        &self,
        call: &Call<'_>,
        action: &Prepared,
        a: &Attempt<'_>,
    ) -> Result<Json, StepError> {
        // Fail closed: a step meant for another host never runs here by default.
        if call.runs_on.is_some() {
            return Err(StepError::setup(format!(
                "step `{}` has `runs_on`, and this run has no workers to send it to \
                 (run it with `cairn run`, `cairn resume` or `cairn worker` on a PostgreSQL state)",
                call.step
            )));
        }
        Peers::perform(self, action, a).await
    }

    async fn close(&self) {
        self.pools.close().await;
    }
}

/// Connections of one run.
#[derive(Default)]
pub struct Peers {
    pub pools: Pools,
    pub http: HttpClients,
    chroma: Mutex<HashMap<String, ChromaClient>>,
}

/// How one action attempt is run.
pub struct Attempt<'a> {
    pub timeout: Option<Duration>,
    pub cancel: &'a CancellationToken,
    pub targets: &'a IndexMap<String, ResolvedTarget>,
    /// Run `readonly` SQL inside a read-only transaction (`plan --probe`).
    pub read_only: bool,
    /// Applied to a process's output as it arrives (the door's masking).
    pub filter: Option<std::sync::Arc<dyn cairn_steps::shell::OutputFilter>>,
    /// The step's live log: a process's output is written to it as it arrives, line by line,
    /// and only as `filter` returns it (the door's masking; no filter when there is no secret).
    pub log: Option<PathBuf>,
}

impl Peers {
    fn chroma(&self, t: &ResolvedTarget) -> Result<ChromaClient, StepError> {
        let mut map = self
            .chroma
            .lock()
            .map_err(|_| StepError::setup("chroma client cache poisoned"))?;
        if let Some(c) = map.get(&t.name) {
            return Ok(c.clone());
        }
        let mut target = ChromaTarget::new(t.url.clone());
        if let Some(tenant) = &t.tenant {
            target.tenant = tenant.clone();
        }
        if let Some(db) = &t.database {
            target.database = db.clone();
        }
        target.token = t.bearer.clone();
        let client = ChromaClient::new(target, self.http.client(t.insecure, true)?);
        map.insert(t.name.clone(), client.clone());
        Ok(client)
    }

    /// Perform an external action: shell, argv, sql, http or chroma. Control actions (check,
    /// approval, wait, report, uses) are the executor's own.
    pub async fn perform(&self, action: &Prepared, a: &Attempt<'_>) -> Result<Json, StepError> {
        let target = |name: &str| {
            a.targets
                .get(name)
                .ok_or_else(|| StepError::setup(format!("unknown target `{name}`")))
        };
        match action {
            Prepared::Shell {
                command,
                values,
                env,
                cwd,
                detach,
            } => {
                let command = Command::Shell(command.clone());
                self.shell(command, values, env, cwd, *detach, a).await
            }
            Prepared::Argv {
                argv,
                values,
                env,
                cwd,
                detach,
            } => {
                let command = Command::Argv(argv.clone());
                self.shell(command, values, env, cwd, *detach, a).await
            }
            Prepared::Sql {
                target: name,
                sql,
                params,
                lexed,
                ..
            } => {
                let t = target(name)?;
                let st = SqlTarget {
                    name: t.name.clone(),
                    url: t.url.clone(),
                    password: t.password.clone().filter(|p| !p.is_empty()),
                };
                let spec = SqlSpec {
                    query: sql.clone(),
                    params: params.clone(),
                    timeout: a.timeout,
                    read_only: a.read_only,
                    lexed: *lexed,
                };
                cairn_steps::sql::run(&self.pools, &st, &spec, a.cancel).await
            }
            Prepared::Http {
                method,
                url,
                headers,
                json,
                body,
                insecure,
                follow_redirects,
                target: tname,
                ..
            } => {
                let mut spec = HttpSpec::new(method.clone(), url.clone());
                spec.headers = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                spec.json = json.clone();
                spec.body = body.clone();
                spec.timeout = a.timeout;
                spec.insecure = *insecure;
                spec.follow_redirects = *follow_redirects;
                if let Some(name) = tname {
                    let t = target(name)?;
                    spec.bearer = t.bearer.clone().filter(|b| !b.is_empty());
                    spec.basic = t.basic.clone();
                }
                cairn_steps::http::run(&self.http, &spec, a.cancel).await
            }
            Prepared::Chroma {
                target: name,
                action,
                params,
                ..
            } => {
                let client = self.chroma(target(name)?)?;
                let params = if params.is_null() {
                    Json::Object(Default::default())
                } else {
                    params.clone()
                };
                let wrapped = serde_json::json!({ action.as_str(): params });
                let action: ChromaAction = serde_json::from_value(wrapped)
                    .map_err(|e| StepError::setup(format!("chroma `{action}`: {e}")))?;
                let cancel = a.cancel.child_token();
                let call = cairn_steps::chroma::run(&client, &action, &cancel);
                match a.timeout {
                    Some(t) => match tokio::time::timeout(t, call).await {
                        Ok(r) => r,
                        Err(_) => {
                            cancel.cancel();
                            Err(StepError::Timeout {
                                after: t,
                                result: None,
                            })
                        }
                    },
                    None => call.await,
                }
            }
            other => Err(StepError::setup(format!(
                "`{}` is not an external action",
                other.kind()
            ))),
        }
    }

    async fn shell(
        &self,
        command: Command,
        values: &IndexMap<String, String>,
        env: &IndexMap<String, String>,
        cwd: &Option<String>,
        detach: bool,
        a: &Attempt<'_>,
    ) -> Result<Json, StepError> {
        let mut spec = ShellSpec::new(command);
        // The script's values last: a step's `env` cannot shadow what its references read.
        spec.env = env
            .iter()
            .chain(values)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        spec.cwd = cwd.as_ref().map(PathBuf::from);
        spec.timeout = a.timeout;
        spec.detach = detach;
        spec.filter = a.filter.clone();
        // Only what the door's filter let through reaches the live log: never raw to disk.
        spec.log_path = a.log.clone();
        cairn_steps::shell::run(&spec, a.cancel).await
    }
}
