//! `cairn test [PATH…]`: every case of every `*.test.yaml` run by the engine itself, in
//! process, on a memory store, with the case's fixtures behind the engine's ports
//! (`fixture_port.rs`); one line per case, JUnit, coverage.

use crate::exit;
use crate::fixture_port::{CaseShared, Scope};
use crate::output::color_stderr;
use crate::test_report::{CaseResult, CaseRun, Coverage};
use cairn_engine::events::{Event, Sink};
use cairn_engine::plan::Invocation;
use cairn_engine::run::RunOptions;
use cairn_model::testfile::{Case, TestFile};
use cairn_model::{Checked, StepKind};
use cairn_state::Store;
use futures::StreamExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Test files or folders (searched recursively for *.test.yaml); default: the current folder
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Write the results as JUnit XML to this file
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Run only the cases whose name contains this text
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,
    /// After the results, list per runbook the steps and branches no case exercised
    #[arg(long)]
    coverage: bool,
    /// Cases run at once (default 16)
    #[arg(long, default_value_t = 16)]
    jobs: usize,
}

/// A test file with its runbook, checked.
pub struct Loaded {
    pub file: TestFile,
    pub checked: Arc<Checked>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let files = test_files(&paths)?;
    if files.is_empty() {
        return Err(crate::Invalid("no *.test.yaml files found".into()).into());
    }
    let templates = Arc::new(cairn_template::Templates::new());
    let mut loaded = Vec::new();
    let mut invalid = false;
    for f in &files {
        match load(f, &templates) {
            Some(l) => loaded.push(l),
            None => invalid = true,
        }
    }
    if invalid {
        return Ok(exit::INVALID);
    }
    let logs = tempfile::tempdir()?;
    let mut jobs = Vec::new();
    for (fi, l) in loaded.iter().enumerate() {
        for (ci, c) in l.file.cases.iter().enumerate() {
            if args
                .filter
                .as_deref()
                .is_none_or(|f| c.name.value.contains(f))
            {
                jobs.push((fi, ci));
            }
        }
    }
    let started = Instant::now();
    // One thread per core, each with the engine's one-thread runtime and its share of the
    // cases, run `--jobs` at a time: a case is mostly the engine's own work (rendering,
    // checkpoints in memory), which one thread cannot spread.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, jobs.len().max(1));
    let per_thread = args.jobs.max(1).div_ceil(threads);
    let mut done: Vec<(usize, CaseResult)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (loaded, jobs, logs, templates) = (&loaded, &jobs, logs.path(), &templates);
                scope.spawn(move || -> anyhow::Result<Vec<(usize, CaseResult)>> {
                    let rt = crate::runtime()?;
                    Ok(rt.block_on(
                        futures::stream::iter(
                            jobs.iter()
                                .enumerate()
                                .filter(|(k, _)| k % threads == t)
                                .map(|(k, &(fi, ci))| {
                                    let l = &loaded[fi];
                                    let dir = logs.join(k.to_string());
                                    async move {
                                        (k, run_case(l, &l.file.cases[ci], templates, &dir).await)
                                    }
                                }),
                        )
                        .buffer_unordered(per_thread)
                        .collect(),
                    ))
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            match h.join() {
                Ok(r) => all.extend(r?),
                Err(_) => anyhow::bail!("a test thread panicked"),
            }
        }
        Ok(all)
    })?;
    done.sort_by_key(|(k, _)| *k);
    let results: Vec<CaseResult> = done.into_iter().map(|(_, r)| r).collect();
    let elapsed = started.elapsed();
    let color = color_stderr();
    let mut failed = 0;
    for r in &results {
        println!("{}", r.line(color));
        if !r.passed() {
            failed += 1;
        }
    }
    println!(
        "{} case{} in {} file{}: {} passed, {failed} failed ({:.2} s)",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        loaded.len(),
        if loaded.len() == 1 { "" } else { "s" },
        results.len() - failed,
        elapsed.as_secs_f64()
    );
    if let Some(path) = &args.junit {
        std::fs::write(path, crate::test_report::junit(&results, elapsed))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if args.coverage {
        let mut cov = Coverage::default();
        for l in &loaded {
            cov.add_runbook(&l.checked);
        }
        for r in &results {
            cov.add_run(r);
        }
        print!("{}", cov.render());
    }
    Ok(if failed > 0 {
        exit::STEP_FAILED
    } else {
        exit::OK
    })
}

/// `*.test.yaml` files named, or found under the folders named.
fn test_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(crate::Invalid(format!("{}: no such file or folder", p.display())).into());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot search {}: {e}", dir.display()))?
    {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            walk(&path, out)?;
        } else if crate::is_test_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Read, parse and check a test file against its runbook; diagnostics on stderr.
fn load(path: &Path, templates: &cairn_template::Templates) -> Option<Loaded> {
    let name = path.display().to_string();
    let color = color_stderr();
    let source = match cairn_model::read(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("x {name}: {e}");
            return None;
        }
    };
    let (file, diags) = cairn_model::testfile::parse(path, &source);
    let show = |d: &cairn_model::Diagnostics| {
        for x in &d.0 {
            eprint!("{}", x.render(&name, &source, color));
            eprintln!();
        }
    };
    if diags.has_errors() {
        show(&diags);
        eprintln!("x {name}: invalid test file");
        return None;
    }
    let file = file?;
    let rb_path = file.runbook_path();
    let checked = match cairn_model::load(&rb_path, templates) {
        Ok((c, _)) => c,
        Err(e) => {
            let d = cairn_model::Diagnostic::error(
                file.runbook.span,
                format!("the runbook does not load: {e}"),
            );
            eprint!("{}", d.render(&name, &source, color));
            return None;
        }
    };
    let sub = |parent: &Checked, step: &cairn_model::Step| -> Option<Checked> {
        let StepKind::Uses(u) = &step.kind else {
            return None;
        };
        let base = parent.runbook.path.parent().unwrap_or(Path::new("."));
        cairn_model::load(&base.join(&u.path.value), templates)
            .ok()
            .map(|(c, _)| c)
    };
    let d = cairn_model::testfile::check_against(&file, &checked, &sub);
    if d.has_errors() {
        show(&d);
        eprintln!("x {name}: invalid test file");
        return None;
    }
    Some(Loaded {
        file,
        checked: Arc::new(checked),
    })
}

/// Notes the engine gave about gates (an answer not taken, …), for the difference shown.
#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl Sink for Notes {
    fn emit(&self, event: &Event) {
        if let Event::ApprovalNote { step, text } = event
            && let Ok(mut n) = self.0.lock()
        {
            n.push(format!("{step}: {text}"));
        }
    }
}

async fn run_once(
    l: &Loaded,
    case: &Case,
    templates: &Arc<cairn_template::Templates>,
    dir: &Path,
    second: bool,
) -> CaseRun {
    let shared = Arc::new(CaseShared {
        real: Default::default(),
        templates: templates.clone(),
        live: case.live,
        second,
        missing: Default::default(),
        performed: Default::default(),
    });
    let scope = Arc::new(Scope {
        shared: shared.clone(),
        checked: l.checked.clone(),
        fixtures: case.fixtures.clone(),
        prefix: String::new(),
        calls: Default::default(),
    });
    let (actions, stand_ins) = scope.ports();
    let store: Arc<dyn Store> = Arc::new(cairn_state::MemoryStore::new());
    let notes = Arc::new(Notes::default());
    let opts = RunOptions {
        concurrency: 8,
        user: "cairn-test".into(),
        logs: dir.join("logs"),
        actions: Some(actions),
        stand_ins: Some(stand_ins),
        reports_under: Some(dir.join("reports")),
        ..RunOptions::default()
    };
    let inv = Invocation {
        sets: Vec::new(),
        inputs_file: Some(case.inputs.clone().into_iter().collect()),
    };
    let sink: Arc<dyn Sink> = notes.clone();
    let res = cairn_engine::run::execute(
        l.checked.clone(),
        templates.clone(),
        &inv,
        store.clone(),
        sink,
        opts,
    )
    .await;
    shared.real.pools.close().await;
    let (report, error) = match res {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let records = match &report {
        Some(r) => store.steps(&r.run_id).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let missing = shared.missing.lock().map(|m| m.clone()).unwrap_or_default();
    let notes = notes.0.lock().map(|n| n.clone()).unwrap_or_default();
    CaseRun {
        report,
        error,
        records,
        missing,
        notes,
    }
}

async fn run_case(
    l: &Loaded,
    case: &Case,
    templates: &Arc<cairn_template::Templates>,
    dir: &Path,
) -> CaseResult {
    let started = Instant::now();
    let first = run_once(l, case, templates, dir, false).await;
    let mut diff = crate::test_report::first_difference(&l.checked, case, &first);
    if diff.is_none() && case.expect.idempotent {
        let again = run_once(l, case, templates, &dir.join("again"), true).await;
        diff = crate::test_report::idempotence(&l.checked, &first, &again);
    }
    CaseResult {
        file: l.file.path.display().to_string(),
        runbook: l.checked.runbook.name.value.clone(),
        case: case.name.value.clone(),
        diff,
        run: first,
        duration: started.elapsed(),
    }
}
