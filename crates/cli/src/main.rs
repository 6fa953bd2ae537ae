//! `cairn`: run runbooks as code. See `cairn --help`.

mod cmd_check;
mod cmd_graph;
mod cmd_plan;
mod cmd_run;
mod cmd_serve;
mod cmd_state;
mod cmd_submit;
mod cmd_test;
mod cmd_validate;
mod cmd_worker;
mod cmd_workers;
mod diagnostics;
mod fixture_port;
mod graph;
mod inputs;
mod location;
mod notifying;
mod output;
mod plan_view;
mod progress;
mod queued;
mod report;
mod routed_step;
mod routed_wire;
mod routing;
mod run_options;
mod run_spans;
mod signals;
mod telemetry;
mod test_report;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes of the contract.
pub use cairn_engine::run::exit;

/// A mistake in what was asked (a file that does not exist, a bad `--inputs` file, a state
/// store that is not there): exit 2, like an invalid runbook. Every other error exits
/// [`exit::INFRA`].
#[derive(Debug)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// The async runtime of every command that talks to a store or runs steps: one thread. A
/// step is mostly waiting (on the store, the spawner process, its output pipes); on one
/// thread each of those wakes the thread that goes on with the step, where a pool of workers
/// passed every step between threads several times (measured in docs/performance.md).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `--warnings-exit N`: the exit code of a run that succeeded with warnings. 0 (the default)
/// keeps it a success; 1 makes it a failure; 5 to 125 tell it apart from both. 2, 3 and 4 keep
/// their meaning (invalid, paused, infrastructure), and codes above 125 are the shell's.
pub fn parse_warnings_exit(s: &str) -> Result<u8, String> {
    let n: u8 = s
        .parse()
        .map_err(|_| format!("`{s}` is not an exit code (0, 1, or 5 to 125)"))?;
    match n {
        0 | 1 | 5..=125 => Ok(n),
        2..=4 => Err(format!(
            "exit code {n} already means {}: use 5 (or 0, 1, 6 to 125)",
            [
                "an invalid runbook",
                "a paused run",
                "an infrastructure failure"
            ][n as usize - 2]
        )),
        _ => Err(
            "exit codes above 125 are the shell's (126, 127, 128+signal): use 5 (or 0, 1, 6 to 125)"
                .to_string(),
        ),
    }
}

/// The `--warnings-exit` option of `run` and `resume`.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct WarningsExit {
    /// Exit with N when the run succeeded with warnings (a check not ok): 0 (default), 1, or
    /// 5 to 125
    #[arg(long = "warnings-exit", value_name = "N", env = "CAIRN_WARNINGS_EXIT", default_value_t = 0, value_parser = parse_warnings_exit)]
    pub code: u8,
}

/// The exit code of a finished run: its outcome's, unless the store failed under it;
/// `--warnings-exit` for a run that succeeded with warnings.
pub fn report_exit_code(report: &cairn_engine::run::RunReport, warnings: WarningsExit) -> u8 {
    if report.store_error.is_none()
        && report.outcome == cairn_engine::events::RunOutcome::SucceededWithWarnings
    {
        return warnings.code;
    }
    match &report.store_error {
        Some(e) => {
            output::error(format!(
                "the run stopped because its state could not be recorded: {e}"
            ));
            exit::INFRA
        }
        None => report.outcome.exit_code(),
    }
}

/// The exit code of an error that ended a command.
fn exit_code(e: &anyhow::Error) -> u8 {
    use cairn_state::StateError;
    for cause in e.chain() {
        if cause.is::<Invalid>() {
            return exit::INVALID;
        }
        if let Some(s) = cause.downcast_ref::<StateError>() {
            return match s {
                StateError::BadUrl { .. }
                | StateError::AmbiguousRunId { .. }
                | StateError::RunNotFound(_) => exit::INVALID,
                _ => exit::INFRA,
            };
        }
    }
    exit::INFRA
}

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Declarative runbooks: validate, dry-run and run DAGs of SQL, shell, HTTP and Chroma steps",
    long_about = "Cairn runs runbooks written as YAML: health checks, backups, restores, maintenance, outage \
response. Each runbook is a DAG of steps (SQL, shell, HTTP, ChromaDB, checks, approvals, waits, reports, \
sub-runbooks) with a dry-run that touches nothing.",
    after_help = "Examples:\n  cairn validate runbooks/\n  cairn plan runbooks/backup/backup.yaml --set backup_dir=/tmp/b\n  \
cairn graph runbooks/drill/drill.yaml --format mermaid\n\nExit codes: 0 ok, 1 a step failed, 2 invalid runbook or usage, \
3 paused for approval, 4 state store or internal failure, 130 interrupted."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check runbook files or folders: every problem at once, with file:line:col
    #[command(
        after_help = "Examples:\n  cairn validate runbooks/\n  cairn validate backup.yaml restore.yaml\n  \
cairn validate runbooks/ --output json\n\nFolders are searched recursively for *.yaml and *.yml. Exit 2 when any \
file has an error; warnings alone exit 0."
    )]
    Validate(cmd_validate::Args),
    /// Dry-run: show every step as it would run, touching nothing
    #[command(
        after_help = "Examples:\n  cairn plan runbooks/backup/backup.yaml\n  cairn plan runbooks/backup/backup.yaml --set \
backup_dir=/tmp/b --output json > plan.json\n\nNo process is spawned, no connection opened, no file or state \
written. Outputs of steps that have not run show as placeholders like <steps.dump.result.exit_code>; secrets \
show as ***. Set SOURCE_DATE_EPOCH to fix `run.started_at` for reproducible plans."
    )]
    Plan(cmd_plan::Args),
    /// Run a runbook: prints the run id first, progress on stderr, a summary at the end
    #[command(
        after_help = "Examples:\n  cairn run runbooks/monitoring/health-check.yaml\n  cairn run runbooks/backup/backup.yaml --set \
backup_dir=/srv/backups --state postgres://cairn@db/cairn\n  cairn run runbooks/drill/drill.yaml --auto-approve --log-format json > events.jsonl\n  \
cairn run runbooks/drill/drill.yaml --auto-approve --junit junit.xml --report drill.md\n\n\
Every step transition is committed to the state store before the next step starts. Exit codes: 0 succeeded, \
1 a step failed, 2 invalid runbook or inputs, 3 paused for approval, 4 the state store failed, 130 interrupted."
    )]
    Run(cmd_run::Args),
    /// Run a health-check runbook as a monitoring plugin (Nagios plugin guidelines)
    #[command(
        after_help = "Examples:\n  cairn check runbooks/monitoring/health-check.yaml\n  \
cairn check db-check.yaml --set db=replica2 --timeout 20s --metrics-file /var/lib/node_exporter/cairn-db.prom\n\n\
Prints one line `CAIRN <STATE> - <summary> | <perfdata>` (one perfdata item per `check` step, thresholds \
in the plugin range syntax), then one line per check. Exit 0 OK, 1 WARNING, 2 CRITICAL (a check is \
critical, or a step failed), 3 UNKNOWN (the runbook cannot run, a check has no value, or the time \
limit passed). Nothing is kept unless --state is given."
    )]
    Check(cmd_check::Args),
    /// Continue a failed, interrupted or paused run
    #[command(
        after_help = "Examples:\n  cairn resume 01J9Z...\n  cairn resume 01J9Z --from verify_dump\n  \
cairn resume 01J9Z --rerun load_data   # an in-doubt step that is not idempotent\n\n\
Succeeded steps are not run again; their outputs are restored. Failed and interrupted steps run again. \
A step that succeeded and has been edited since is refused (name it, or pass --allow-changed)."
    )]
    Resume(cmd_state::ResumeArgs),
    /// Approve a waiting approval step of a paused run
    #[command(
        after_help = "Example:\n  cairn approve 01J9Z confirm_dns --by alice && cairn resume 01J9Z"
    )]
    Approve(cmd_state::AnswerArgs),
    /// Reject a waiting approval step (the step fails on resume)
    #[command(after_help = "Example:\n  cairn reject 01J9Z confirm_dns --by alice")]
    Reject(cmd_state::AnswerArgs),
    /// Run history, newest first
    #[command(
        after_help = "Examples:\n  cairn runs\n  cairn runs --runbook backup --status failed\n  cairn runs --label team=memory,kind=backup\n  cairn runs --output json | jq '.[0].id'"
    )]
    Runs(cmd_state::RunsArgs),
    /// One run: steps, attempts, timings, outputs (secrets masked), a step's captured log
    #[command(
        after_help = "Examples:\n  cairn show 01J9Z\n  cairn show 01J9Z --step pg_dump\n  cairn show 01J9Z --output json\n  \
cairn show 01J9Z --junit junit.xml --report report.md --metrics-file /var/lib/node_exporter/cairn.prom"
    )]
    Show(cmd_state::ShowArgs),
    /// Queue a run for a worker: validates here, prints the run id
    #[command(
        after_help = "Examples:\n  cairn submit /srv/runbooks/backup.yaml --set backup_dir=/srv/backups --state postgres://cairn@db/cairn\n  \
cairn submit /srv/runbooks/db/vacuum.yaml --labels host=db1\n  cairn submit --requeue 01J9Z   # a paused run, once its gate is answered\n\n\
The queue lives in a PostgreSQL state store. The runbook's absolute path is queued: keep runbooks at the same \
path on every worker. A `cairn worker` whose labels include every --labels pair runs it."
    )]
    Submit(cmd_submit::Args),
    /// Claim and run queued runs until stopped (SIGTERM or Ctrl-C)
    #[command(
        after_help = "Examples:\n  cairn worker --state postgres://cairn@db/cairn\n  cairn worker --labels host=db1,zone=a --concurrency 4\n\n\
Heartbeats every 3 s; a run held by a worker silent for 15 s is taken over by another and resumed \
(succeeded steps are not run again; an in-doubt step that is not idempotent holds the run for a human). \
SIGTERM: claim nothing more, interrupt the runs held and hand them back to the queue, exit 0."
    )]
    Worker(cmd_worker::Args),
    /// Workers of the queue: labels, last heartbeat, what they hold (--queue: the queue)
    #[command(
        after_help = "Examples:\n  cairn workers\n  cairn workers --queue\n  cairn workers --output json"
    )]
    Workers(cmd_workers::Args),
    /// Serve the web console and its JSON API over the state store
    #[command(
        after_help = "Examples:\n  cairn serve                       # read-only on http://127.0.0.1:8080/\n  \
cairn serve --auth token --tokens /etc/cairn/tokens --listen 0.0.0.0:8080\n  \
cairn serve --auth proxy --trusted-proxy 127.0.0.1/32 --state postgres://cairn@db/cairn\n\n\
Prints the URL it listens on. Roles: viewer, operator (resume), approver (answer gates), admin. \
See docs/serve.md."
    )]
    Serve(cmd_serve::Args),
    /// Print the step DAG as Graphviz dot or Mermaid
    #[command(
        after_help = "Examples:\n  cairn graph runbooks/drill/drill.yaml | dot -Tsvg > dr.svg\n  \
cairn graph runbooks/drill/drill.yaml --format mermaid\n  cairn graph --run 01J9Z --format mermaid   # coloured by status"
    )]
    Graph(cmd_graph::Args),
    /// Run the cases of runbook test files (*.test.yaml) on fixtures, through the engine
    #[command(
        after_help = "Examples:\n  cairn test runbooks/\n  cairn test runbooks/emergency/outage-response.test.yaml --filter rejected\n  \
cairn test runbooks/ --junit test-results.xml --coverage\n\nEach case runs the runbook in process on a memory store, \
with its fixtures standing in for the steps' actions, the gates' answers and sub-runs; a step without a fixture runs \
only if it is `readonly` or the case is `live`. One line per case; exit 0 all passed, 1 a case failed, 2 a test \
file is invalid. See docs/testing.md."
    )]
    Test(cmd_test::Args),
    /// Print the JSON Schema of the runbook format (--test: of the test-file format)
    #[command(
        after_help = "Examples:\n  cairn schema > schemas/runbook.schema.json\n  cairn schema --test > schemas/runbook-test.schema.json\n\nEditors use it through \
the first line of a runbook:\n  # yaml-language-server: $schema=../schemas/runbook.schema.json"
    )]
    Schema {
        /// The schema of runbook test files (*.test.yaml) instead
        #[arg(long)]
        test: bool,
    },
    /// Print shell completions
    #[command(after_help = "Example:\n  cairn completions bash > /etc/bash_completion.d/cairn")]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // Diagnostics of Cairn itself (not progress): CAIRN_LOG=debug, or a tracing filter.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Masked with every secret the process has read: no stream may carry one.
        .with_writer(diagnostics::MaskedStderr)
        // Colour only on a terminal, never with NO_COLOR: logs are often captured to files.
        .with_ansi(output::color_stderr())
        .with_target(false)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if matches!(
        cli.command,
        Command::Run(_) | Command::Resume(_) | Command::Worker(_) | Command::Test(_)
    ) {
        // Forked now, while cairn is one small thread: it starts every step's process.
        if let Err(e) = cairn_steps::shell::start_spawner() {
            tracing::warn!("{e}; shell steps will fail");
        }
    }
    // A panic is a bug in Cairn: the hook has printed it; exit as an internal error, not 101.
    let result = std::panic::catch_unwind(|| dispatch(cli)).unwrap_or_else(|_| {
        Err(anyhow::anyhow!(
            "internal error: cairn panicked (a bug; please report it with the message above)"
        ))
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if output::is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            output::error(format!("{e:#}"));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate(a) => cmd_validate::run(a),
        Command::Plan(a) => cmd_plan::run(a),
        Command::Run(a) => cmd_run::run(a),
        Command::Check(a) => Ok(cmd_check::run(a)),
        Command::Resume(a) => cmd_state::resume_cmd(a),
        Command::Approve(a) => cmd_state::answer(a, cairn_state::Decision::Approved),
        Command::Reject(a) => cmd_state::answer(a, cairn_state::Decision::Rejected),
        Command::Runs(a) => cmd_state::runs(a),
        Command::Show(a) => cmd_state::show(a),
        Command::Submit(a) => cmd_submit::run(a),
        Command::Worker(a) => cmd_worker::run(a),
        Command::Workers(a) => cmd_workers::run(a),
        Command::Graph(a) => cmd_graph::run(a),
        Command::Serve(a) => cmd_serve::run(a),
        Command::Test(a) => cmd_test::run(a),
        Command::Schema { test: false } => {
            output::print_json(&cairn_model::schema()).map(|_| exit::OK)
        }
        Command::Schema { test: true } => {
            output::print_json(&cairn_model::testfile::schema()).map(|_| exit::OK)
        }
        Command::Completions { shell } => {
            // Through a buffer: the generator writes a script of thousands of lines piecewise.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut out);
            std::io::Write::flush(&mut out)?;
            Ok(exit::OK)
        }
    }
}

/// Files named on the command line, folders searched recursively for `*.yaml`/`*.yml`.
/// A symbolic link is followed, but a folder is searched once however many links lead to it,
/// so a link back up the tree (a loop) ends the search instead of repeating it forever.
pub fn expand_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found, &mut seen)?;
            found.sort();
            out.extend(found);
        } else if p.exists() || p.is_symlink() {
            // Named files are passed on whatever they are: reading refuses what is not a
            // regular file, with the reason.
            out.push(p.clone());
        } else {
            return Err(Invalid(format!("{}: no such file or folder", p.display())).into());
        }
    }
    Ok(out)
}

fn walk(
    dir: &std::path::Path,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir)
        .map_err(|e| anyhow::anyhow!("cannot search {}: {e}", dir.display()))?;
    if !seen.insert((meta.dev(), meta.ino())) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot search {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out, seen)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && !is_test_file(&path)
        {
            out.push(path);
        }
    }
    Ok(())
}

/// A runbook's test file (`NAME.test.yaml`), which a folder search for runbooks passes over.
pub fn is_test_file(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
}

/// Load and validate a runbook; on failure print its diagnostics and give the exit code.
pub fn load(
    path: &std::path::Path,
    templates: &cairn_template::Templates,
) -> anyhow::Result<Result<cairn_model::Checked, u8>> {
    match cairn_model::load(path, templates) {
        Ok((checked, warnings)) => {
            for w in &warnings.0 {
                eprint!(
                    "{}",
                    w.render(
                        &path.display().to_string(),
                        &checked.runbook.source,
                        output::color_stderr()
                    )
                );
            }
            Ok(Ok(checked))
        }
        Err(cairn_model::LoadError::Invalid {
            path,
            text,
            diagnostics,
        }) => {
            for d in &diagnostics.0 {
                eprint!("{}", d.render(&path, &text, output::color_stderr()));
                eprintln!();
            }
            let n = diagnostics.errors().count();
            eprintln!(
                "x {path}: {n} error{}; nothing was run",
                if n == 1 { "" } else { "s" }
            );
            Ok(Err(exit::INVALID))
        }
        Err(e) => Err(Invalid(e.to_string()).into()),
    }
}
