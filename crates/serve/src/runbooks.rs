//! The runbooks under `--runbooks DIR`: each file's validation (its diagnostics rendered as
//! `cairn validate` renders them, at their line and column), its steps, its last runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// At most this many files are listed, and folders this deep searched: a console must not
/// walk a whole disk because `--runbooks /` was given.
const MAX_FILES: usize = 2000;
const MAX_DEPTH: usize = 16;

/// The `*.yaml` and `*.yml` files under `dir`, sorted; each folder searched once however many
/// links lead to it.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk(dir, 0, &mut out, &mut seen);
    out.sort();
    out.truncate(MAX_FILES);
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, seen: &mut HashSet<(u64, u64)>) {
    use std::os::unix::fs::MetadataExt as _;
    if depth > MAX_DEPTH || out.len() >= MAX_FILES {
        return;
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    if !seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, depth + 1, out, seen);
        } else if path.is_file()
            && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            // A runbook's test file (`NAME.test.yaml`) is no runbook.
            && !path.to_string_lossy().ends_with(".test.yaml")
        {
            out.push(path);
        }
    }
}

/// A file's name under the folder, as shown and as asked for.
pub fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// A runbook validated: `{file, name, valid, errors, warnings, diagnostics, steps}`.
pub fn check(dir: &Path, path: &Path) -> Value {
    let file = relative(dir, path);
    let templates = cairn_template::Templates::new();
    match cairn_model::load(path, &templates) {
        Ok((checked, warnings)) => {
            let text = checked.runbook.source.clone();
            json!({
                "file": file,
                "name": checked.runbook.name.value,
                "valid": true,
                "errors": 0,
                "warnings": warnings.0.len(),
                "diagnostics": warnings
                    .0
                    .iter()
                    .map(|d| d.render(&file, &text, false))
                    .collect::<Vec<_>>(),
                "steps": checked
                    .all_steps()
                    .map(|s| json!({
                        "id": s.id.value,
                        "kind": s.kind.name(),
                        "needs": s.needs.as_ref().map(|n| n.iter().map(|x| x.value.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                    }))
                    .collect::<Vec<_>>(),
            })
        }
        Err(cairn_model::LoadError::Invalid {
            text, diagnostics, ..
        }) => json!({
            "file": file,
            "name": null,
            "valid": false,
            "errors": diagnostics.errors().count(),
            "warnings": diagnostics.warnings().count(),
            "diagnostics": diagnostics
                .0
                .iter()
                .map(|d| d.render(&file, &text, false))
                .collect::<Vec<_>>(),
            "steps": [],
        }),
        Err(e) => json!({
            "file": file,
            "name": null,
            "valid": false,
            "errors": 1,
            "warnings": 0,
            "diagnostics": [e.to_string()],
            "steps": [],
        }),
    }
}
