//! A worker performing a routed step (`runs_on`) it claimed: the secrets the action refers to
//! are read here, from this host's environment and files as the runbook declares them, put
//! back in place, and the action is performed as the run's own host would (timeout, stop on
//! cancel, output masked). The outcome written back is masked too, and says where the step ran.

use crate::routed_wire;
use cairn_engine::exec::{Attempt, Peers};
use cairn_engine::masking::Door;
use cairn_engine::secrets::Masker;
use cairn_state::StepItem;
use cairn_steps::StepError;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;

/// Who performs the step, as the outcome records it (`ran_on`).
pub struct RanOn<'a> {
    pub worker: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Performs the step; the outcome to write back.
pub async fn perform(item: &StepItem, ran_on: &RanOn<'_>, cancel: &CancellationToken) -> Json {
    let secrets = match read_secrets(item) {
        Ok(s) => s,
        Err(e) => return routed_wire::encode(&Err(StepError::setup(e))),
    };
    let mut wire = item.action.clone();
    routed_wire::restore(&mut wire, &secrets, &item.nonce);
    let action = match routed_wire::from_wire(&wire) {
        Ok(a) => a,
        Err(e) => {
            return routed_wire::encode(&Err(StepError::setup(format!(
                "routed step {}: {e}",
                item.id
            ))));
        }
    };
    let door = Door::new(Masker::new(secrets.into_iter().map(|(_, v)| v)));
    let targets = indexmap::IndexMap::new();
    let a = Attempt {
        timeout: item.timeout,
        cancel,
        targets: &targets,
        read_only: false,
        filter: door.stream(),
        // The step's log is the run's, on the run's host: a routed step's output comes back
        // with its result and is written there when the step ends, not line by line.
        log: None,
    };
    let peers = Peers::default();
    let r = peers.perform(&action, &a).await;
    let where_ = json!({
        "worker": ran_on.worker,
        "host": cairn_state::current_host(),
        "labels": ran_on.labels,
    });
    let r = match r {
        Ok(result) => Ok(with_ran_on(result, &where_)),
        Err(StepError::Failed { message, result }) => Err(StepError::Failed {
            message,
            result: result.map(|r| with_ran_on(r, &where_)),
        }),
        Err(StepError::Timeout { after, result }) => Err(StepError::Timeout {
            after,
            result: result.map(|r| with_ran_on(r, &where_)),
        }),
        Err(e) => Err(e),
    };
    door.json(&routed_wire::encode(&r))
}

fn with_ran_on(mut result: Json, where_: &Json) -> Json {
    if let Some(o) = result.as_object_mut() {
        o.insert("ran_on".into(), where_.clone());
    }
    result
}

/// The secrets the action refers to, read as the runbook at the row's path declares them.
fn read_secrets(item: &StepItem) -> Result<Vec<(String, String)>, String> {
    if item.secrets.is_empty() {
        return Ok(Vec::new());
    }
    let templates = cairn_template::Templates::new();
    let (checked, _) = cairn_model::load(std::path::Path::new(&item.path), &templates)
        .map_err(|_| format!("{}: not a valid runbook on this host", item.path))?;
    let mut declared = indexmap::IndexMap::new();
    for name in &item.secrets {
        match checked.runbook.secrets.get(name) {
            Some(s) => {
                declared.insert(name.clone(), s.clone());
            }
            None => {
                return Err(format!(
                    "{}: secret `{name}` is not declared there on this host",
                    item.path
                ));
            }
        }
    }
    let read = cairn_engine::secrets::read_declared(&declared).map_err(|p| p.join("; "))?;
    Ok(read
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
        .collect())
}
