//! `cairn run FILE`: execute a runbook.

use crate::cmd_plan::{inputs_file, parse_set};
use crate::exit;
use crate::progress::{LogFormat, Progress};
use cairn_engine::plan::Invocation;
use cairn_engine::run::{RunError, RunOptions, execute};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The runbook
    file: PathBuf,
    /// Set an input: --set key=value (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// A YAML or JSON file of inputs (--set wins over it)
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// Ignore the keys of --inputs that the runbook does not declare, with a warning for each
    /// (one environment file shared by several runbooks); --set keys are always checked
    #[arg(long, requires = "inputs")]
    inputs_ignore_unknown: bool,
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

/// Who runs this command: the operating-system user of the process's real uid, or, for root
/// running a command through sudo, the user who ran sudo (`SUDO_USER`). Never `$USER` or a
/// flag: those say whatever the caller writes, and this is the identity approvals rest on.
pub fn user() -> String {
    let uid = nix::unistd::getuid();
    if uid.is_root()
        && let Ok(by) = std::env::var("SUDO_USER")
        && nix::unistd::User::from_name(&by).ok().flatten().is_some()
    {
        return by;
    }
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// Where per-step logs go: beside a SQLite state file, else `.cairn/logs`.
pub fn logs_dir(state_url: &str) -> PathBuf {
    let dir = logs_dir_as_given(state_url);
    // Absolute, so `cairn show --step` finds a log from any folder.
    std::path::absolute(&dir).unwrap_or(dir)
}

fn logs_dir_as_given(state_url: &str) -> PathBuf {
    let path = state_url
        .strip_prefix("sqlite://")
        .or_else(|| state_url.strip_prefix("sqlite:"))
        .unwrap_or(state_url);
    if state_url.contains("://") && !state_url.starts_with("sqlite") || state_url == "memory:" {
        return PathBuf::from(".cairn/logs");
    }
    let path = path.split('?').next().unwrap_or(path);
    PathBuf::from(path).parent().map_or_else(
        || PathBuf::from(".cairn/logs"),
        |p| {
            if p.as_os_str().is_empty() {
                PathBuf::from("logs")
            } else {
                p.join("logs")
            }
        },
    )
}

/// How `run` and `resume` run: Ctrl-C and SIGTERM cancel, approvals prompt when both stdin and
/// stderr are terminals, `--auto-approve` answers as `auto:<user>`.
pub fn run_options(concurrency: usize, auto_approve: bool, state_url: &str) -> RunOptions {
    let cancel = tokio_util::sync::CancellationToken::new();
    crate::signals::cancel_on_signals(cancel.clone());
    let who = user();
    RunOptions {
        concurrency: concurrency.max(1),
        auto_approve: auto_approve.then(|| format!("auto:{who}")),
        interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        user: who,
        logs: logs_dir(state_url),
        cancel,
        ..RunOptions::default()
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if args.dry_run {
        return crate::cmd_plan::run(crate::cmd_plan::Args::from_run(
            args.file,
            args.sets,
            args.inputs,
            args.inputs_ignore_unknown,
        ));
    }
    let templates = Arc::new(cairn_template::Templates::new());
    let checked = match crate::load(&args.file, &templates)? {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let inv = Invocation {
        sets: args.sets,
        inputs_file: inputs_file(
            &checked.runbook,
            args.inputs.as_ref(),
            args.inputs_ignore_unknown,
        )?,
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let location = crate::location::Location::resolve(args.state.as_deref());
        let url = location.url.clone();
        let store = location.open().await?;
        let opts = run_options(args.concurrency, args.auto_approve, &url);
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
            Err(
                e @ (RunError::Inputs(_)
                | RunError::Secrets(_)
                | RunError::Render { .. }
                | RunError::Masking(_)
                | RunError::PathNotUtf8(_)),
            ) => {
                crate::output::error(&e);
                Ok(exit::INVALID)
            }
            Err(e @ RunError::Locked(_)) => {
                crate::output::error(&e);
                Ok(exit::STEP_FAILED)
            }
            Err(e) => Err(e.into()),
        }
    })
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
