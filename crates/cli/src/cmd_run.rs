//! `cairn run FILE`: execute a runbook.

use crate::exit;
use crate::inputs::InputArgs;
use crate::progress::{LogFormat, Progress};
use crate::run_options::run_options;
use cairn_engine::run::{ErrorKind, execute};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The runbook
    file: PathBuf,
    #[command(flatten)]
    inputs: InputArgs,
    /// Print the plan instead of running (same as `cairn plan`)
    #[arg(long)]
    dry_run: bool,
    /// Independent steps run at once
    #[arg(long, env = "CAIRN_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// State store: a path or sqlite://PATH, or postgres://... (default: .cairn/state.db in the
    /// nearest folder up that has .cairn/, else ~/.local/state/cairn/state.db); created if needed
    #[arg(long, env = "CAIRN_STATE", value_name = "URL")]
    state: Option<String>,
    /// Approve every approval gate, recorded as `auto:<user>` (for CI drills)
    #[arg(long)]
    auto_approve: bool,
    /// text (progress on stderr) or json (one event per line on stdout)
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    reports: crate::report::ReportArgs,
    #[command(flatten)]
    warnings_exit: crate::WarningsExit,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if args.dry_run {
        return crate::plan_view::show(
            &args.file,
            &args.inputs,
            crate::plan_view::Format::Text,
            false,
        );
    }
    let templates = Arc::new(cairn_template::Templates::new());
    let checked = match crate::load(&args.file, &templates)? {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let inv = args.inputs.invocation(&checked.runbook)?;
    let runtime = crate::runtime()?;
    // Built before the runtime's work and shut down after it: the exporter's own thread sends.
    let telemetry = crate::telemetry::Telemetry::from_env();
    let spans = telemetry.as_ref().map(|t| t.run(&checked, false));
    let code = runtime.block_on(async move {
        let location = crate::location::Location::resolve(args.state.as_deref());
        let url = location.url.clone();
        let mut opts = run_options(args.concurrency, args.auto_approve, &url);
        // Steps with `runs_on` go to workers through the queue, which only PostgreSQL has.
        if crate::routing::routes_steps(&checked) {
            if !crate::location::is_postgres(&url) {
                eprint!("{}", crate::routing::refuse_without_queue(&checked));
                return Ok(exit::INVALID);
            }
            let queue = crate::location::open_queue(&location).await?;
            let router = crate::routing::Router::new(queue, &checked)
                .await
                .traced(spans.clone());
            opts.actions = Some(cairn_engine::exec::ActionPort(Arc::new(router)));
        }
        let store = location.open().await?;
        let progress: Arc<dyn cairn_engine::events::Sink> = Arc::new(RunIdFirst {
            inner: Progress::new(args.log_format),
            json: args.log_format == LogFormat::Json,
        });
        // Inputs that do not resolve are refused by the run itself, with its own message.
        let inputs =
            cairn_engine::inputs::resolve(&checked.runbook, &inv.sets, inv.inputs_file.as_ref())
                .ok()
                .and_then(|i| serde_json::to_value(i).ok())
                .unwrap_or_default();
        let (sink, notifying) =
            match crate::notifying::for_run(&checked, &templates, &inputs, progress) {
                Ok(pair) => pair,
                Err(e) => {
                    crate::output::error(&e);
                    return Ok(exit::INVALID);
                }
            };
        let sink = match &spans {
            Some(spans) => spans.sink(sink),
            None => sink,
        };
        let ran = execute(checked, templates, &inv, store.clone(), sink, opts).await;
        if let Some(n) = &notifying {
            n.finish().await;
        }
        match ran {
            Ok(report) => {
                let written =
                    crate::report::write_for_run(&store, &report.run_id, &args.reports).await;
                store.close().await;
                let code = crate::report_exit_code(&report, args.warnings_exit);
                written?;
                Ok(code)
            }
            Err(e) if e.kind() == ErrorKind::Infrastructure => Err(e.into()),
            Err(e) => {
                crate::output::error(&e);
                Ok(e.kind().exit_code())
            }
        }
    });
    if let Some(t) = &telemetry {
        t.shutdown();
    }
    code
}

/// Prints the run id on stdout's first line (text mode), as the contract says.
struct RunIdFirst {
    inner: Progress,
    json: bool,
}

impl cairn_engine::events::Sink for RunIdFirst {
    fn emit(&self, event: &cairn_engine::events::Event) {
        if let (cairn_engine::events::Event::RunStarted { run_id, .. }, false) = (event, self.json)
        {
            println!("{run_id}");
        }
        self.inner.emit(event);
    }
}
