//! `cairn submit FILE`: validate a runbook and its inputs here, then queue a run of it in the
//! PostgreSQL state store for a `cairn worker` to claim; prints the run's id.

use crate::exit;
use crate::inputs::InputArgs;
use crate::location::{Location, open_queue, parse_labels};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The runbook, at the path the workers see it at (the absolute path is queued)
    #[arg(required_unless_present = "requeue")]
    file: Option<PathBuf>,
    /// Queue again a queued run that paused for an approval (answer it first) or was held
    /// for a human, so that a worker resumes it
    #[arg(long, value_name = "RUN", conflicts_with_all = ["file", "labels"])]
    requeue: Option<String>,
    #[command(flatten)]
    inputs: InputArgs,
    /// Labels a worker must have to claim the run: --labels host=db1,zone=a
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_labels)]
    labels: Option<BTreeMap<String, String>>,
    /// State store: postgres://... (the queue lives in PostgreSQL); its tables are created if
    /// needed
    #[arg(long, env = "CAIRN_STATE", value_name = "URL")]
    state: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let Some(file) = args.file.clone() else {
        return requeue(&args);
    };
    let templates = Arc::new(cairn_template::Templates::new());
    let checked = match crate::load(&file, &templates)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rb = &checked.runbook;
    let inv = args.inputs.invocation(rb)?;
    // The inputs must resolve now: a worker would only refuse them later, out of sight.
    if let Err(e) = cairn_engine::inputs::resolve(rb, &inv.sets, inv.inputs_file.as_ref()) {
        let e = cairn_engine::run::RunError::Inputs(e);
        crate::output::error(format!("{}: {e}; nothing was queued", file.display()));
        return Ok(exit::INVALID);
    }
    let canonical = std::fs::canonicalize(&file)
        .map_err(|e| crate::Invalid(format!("{}: {e}", file.display())))?;
    let Some(path) = canonical.to_str().map(str::to_string) else {
        return Err(crate::Invalid(format!(
            "{}: the path is not UTF-8 text, so it cannot be queued",
            canonical.display()
        ))
        .into());
    };
    let submission = cairn_state::Submission {
        id: cairn_state::new_run_id(),
        path,
        sets: inv.sets,
        inputs: inv.inputs_file,
        labels: args.labels.unwrap_or_default(),
        submitter: crate::run_options::user(),
    };
    crate::runtime()?.block_on(async move {
        let location = Location::resolve(args.state.as_deref());
        let queue = open_queue(&location).await?;
        queue.submit(&submission).await?;
        cairn_state::Store::close(&queue).await;
        println!("{}", submission.id);
        Ok(exit::OK)
    })
}

/// `--requeue RUN` (an id or a unique prefix): a paused or held queued run back in the queue.
fn requeue(args: &Args) -> anyhow::Result<u8> {
    let given = args.requeue.clone().unwrap_or_default();
    crate::runtime()?.block_on(async move {
        let location = Location::resolve(args.state.as_deref());
        let queue = open_queue(&location).await?;
        let done = requeue_in(&queue, &given).await;
        cairn_state::Store::close(&queue).await;
        println!("{}", done?);
        Ok(exit::OK)
    })
}

async fn requeue_in(queue: &cairn_state::PgStore, given: &str) -> anyhow::Result<String> {
    use cairn_state::QueueStatus::{Held, Paused};
    let prefix = given.trim().to_ascii_uppercase();
    let matching: Vec<String> = queue
        .queue(0)
        .await?
        .into_iter()
        .filter(|q| matches!(q.status, Paused | Held))
        .filter(|q| !prefix.is_empty() && q.id.to_ascii_uppercase().starts_with(&prefix))
        .map(|q| q.id)
        .collect();
    let id = match matching.as_slice() {
        [id] => id.clone(),
        [] => {
            return Err(crate::Invalid(format!(
                "no queued run `{given}` is paused or held (see `cairn workers --queue`)"
            ))
            .into());
        }
        several => {
            return Err(crate::Invalid(format!(
                "`{given}` matches several paused or held queued runs: {}",
                several.join(", ")
            ))
            .into());
        }
    };
    // Answered or not, it was paused or held a moment ago; a worker that requeued or claimed
    // it since leaves nothing to do.
    if !queue.requeue(&id).await? {
        return Err(crate::Invalid(format!("queued run {id} is no longer paused or held")).into());
    }
    Ok(id)
}
