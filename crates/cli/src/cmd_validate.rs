//! `cairn validate PATH...`

use crate::exit;
use crate::output::{color_stderr, print_json};
use cairn_model::{Diagnostics, Severity};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Runbook files or folders (searched recursively for *.yaml, *.yml)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// text (diagnostics on stderr) or json (on stdout)
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let files = crate::expand_paths(&args.paths)?;
    let templates = cairn_template::Templates::new();
    let color = color_stderr();
    let (mut errors, mut warnings, mut bad_files) = (0, 0, 0);
    let mut report = Vec::new();
    for file in &files {
        let name = file.display().to_string();
        let (source, diags) = match cairn_model::read(file) {
            Ok(source) => {
                let (_, d) = cairn_model::check(file, &source, &templates);
                (source, d)
            }
            Err(cairn_model::LoadError::Invalid {
                text, diagnostics, ..
            }) => (text, diagnostics),
            Err(e) => {
                errors += 1;
                bad_files += 1;
                if args.output == Format::Json {
                    report.push(serde_json::json!({
                        "file": name,
                        "ok": false,
                        "diagnostics": [{ "severity": "error", "message": e.to_string(), "line": null, "column": null, "help": null }],
                    }));
                } else {
                    eprintln!("x {e}");
                }
                continue;
            }
        };
        let (e, w) = counts(&diags);
        errors += e;
        warnings += w;
        if e > 0 {
            bad_files += 1;
        }
        if args.output == Format::Json {
            report.push(serde_json::json!({
                "file": name,
                "ok": e == 0,
                "diagnostics": diags.0.iter().map(|d| serde_json::json!({
                    "severity": d.severity, "message": d.message, "line": d.span.line, "column": d.span.col, "help": d.help,
                })).collect::<Vec<_>>(),
            }));
            continue;
        }
        for d in &diags.0 {
            eprint!("{}", d.render(&name, &source, color));
            eprintln!();
        }
        let mark = match (e, w) {
            (0, 0) => "√".to_string(),
            (0, w) => format!("~ ({w} warning{})", plural(w)),
            (e, w) => format!("x ({e} error{}, {w} warning{})", plural(e), plural(w)),
        };
        eprintln!("{mark} {name}");
    }
    if args.output == Format::Json {
        print_json(&report)?;
    } else if files.len() > 1 {
        eprintln!(
            "{} file{} checked: {bad_files} invalid, {errors} error{}, {warnings} warning{}",
            files.len(),
            plural(files.len()),
            plural(errors),
            plural(warnings)
        );
    }
    Ok(if errors > 0 { exit::INVALID } else { exit::OK })
}

fn counts(d: &Diagnostics) -> (usize, usize) {
    let e = d.0.iter().filter(|d| d.severity == Severity::Error).count();
    (e, d.0.len() - e)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
