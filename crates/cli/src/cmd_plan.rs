//! `cairn plan FILE`: the dry-run, as text or JSON.

use crate::inputs::InputArgs;
use crate::plan_view::{Format, show};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The runbook
    file: PathBuf,
    #[command(flatten)]
    inputs: InputArgs,
    /// text, or json (stable key order, for diffing plans in CI)
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
    /// Rehearse against the live targets: steps that only read run for real and their results
    /// flow into later steps; every other step is shown, never run
    #[arg(long)]
    probe: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    show(&args.file, &args.inputs, args.output, args.probe)
}
