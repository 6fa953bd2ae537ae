//! `cairn graph FILE --format dot|mermaid`, and `cairn graph --run RUN` coloured by status.

use crate::exit;
use crate::graph::{dot, mermaid, statuses_of};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The runbook (not needed with --run)
    #[arg(required_unless_present = "run")]
    file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
    /// Colour the DAG by the status of each step in run RUN (the runbook is the run's own)
    #[arg(long, value_name = "RUN")]
    run: Option<String>,
    #[command(flatten)]
    state: crate::location::StateArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Dot,
    Mermaid,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let templates = cairn_template::Templates::new();
    let (file, statuses) = match &args.run {
        Some(id) => {
            let location = args.state.location();
            let data = crate::runtime()?.block_on(async {
                let store = location.open_existing().await?;
                let run = store.get_run(id).await?;
                let data = match run {
                    Some(run) => Some(crate::report::RunData::load(&store, run).await?),
                    None => None,
                };
                store.close().await;
                anyhow::Ok(data)
            })?;
            let Some(data) = data else {
                eprintln!(
                    "{}error{}: no run `{id}` in {}",
                    crate::output::red(),
                    crate::output::reset(),
                    location.url
                );
                return Ok(exit::INVALID);
            };
            let statuses = statuses_of(&data);
            (
                args.file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(&data.run.path)),
                Some(statuses),
            )
        }
        None => match &args.file {
            Some(f) => (f.clone(), None),
            None => anyhow::bail!("give a runbook FILE or --run RUN"),
        },
    };
    let checked = match crate::load(&file, &templates)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let text = match args.format {
        Format::Dot => dot(&checked, statuses.as_ref()),
        Format::Mermaid => mermaid(&checked, statuses.as_ref()),
    };
    crate::output::print(&text)?;
    Ok(exit::OK)
}
