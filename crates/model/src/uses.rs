//! `uses` chains: a runbook that uses itself, directly or through others, would start sub-runs
//! without end. `uses` paths are literal, so the chain is followed statically through the files
//! (each read through the bounded reader and parsed for its shape only) and a cycle is refused
//! at validation with the chain spelled out; the engine bounds the depth again at run time.

use crate::Runbook;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The deepest chain of `uses` sub-runs: a runbook, its sub-runbook, and so on.
pub const MAX_USES_DEPTH: usize = 16;

/// What is wrong with a chain of `uses`, spelled as the files from the validated runbook on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// `a.yaml -> b.yaml -> a.yaml`.
    Cycle(Vec<String>),
    /// More than [`MAX_USES_DEPTH`] runbooks deep.
    TooDeep(Vec<String>),
}

/// The identity of a runbook file: its canonical path, else the path as written.
pub fn file_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Follows the `uses` of `sub` (read from `path`, used by the runbook at `root`) and of every
/// runbook it uses in turn; the first cycle or over-deep chain found.
/// Files are named relative to the validated runbook's folder, as its `uses` are written.
pub(crate) fn check(root: &Path, path: &Path, sub: &Runbook) -> Option<Problem> {
    let folder = root.parent().unwrap_or(Path::new(""));
    let name = |p: &Path| p.strip_prefix(folder).unwrap_or(p).display().to_string();
    let mut chain = vec![(file_key(root), name(root))];
    let mut clear = HashSet::new();
    walk(path, Some(sub), &mut chain, &mut clear, &name)
}

fn walk(
    path: &Path,
    parsed: Option<&Runbook>,
    chain: &mut Vec<(PathBuf, String)>,
    clear: &mut HashSet<PathBuf>,
    spell: &dyn Fn(&Path) -> String,
) -> Option<Problem> {
    let key = file_key(path);
    let name = spell(path);
    let names = |chain: &[(PathBuf, String)], from: usize| {
        let mut v: Vec<String> = chain[from..].iter().map(|(_, n)| n.clone()).collect();
        v.push(name.clone());
        v
    };
    if chain.iter().any(|(k, _)| *k == key) {
        return Some(Problem::Cycle(names(chain, 0)));
    }
    if clear.contains(&key) {
        return None;
    }
    if chain.len() >= MAX_USES_DEPTH {
        return Some(Problem::TooDeep(names(chain, 0)));
    }
    // A file that cannot be read or parsed is reported where it is used, or by its own
    // validation: here it simply ends the chain.
    let owned;
    let rb = match parsed {
        Some(rb) => rb,
        None => {
            let source = crate::source::read(path).ok()?;
            owned = crate::parse_only(path, &source).0?;
            &owned
        }
    };
    chain.push((key.clone(), name));
    let base = path.parent().unwrap_or(Path::new("."));
    for step in rb.steps.iter().chain(&rb.finally) {
        if let crate::step::StepKind::Uses(u) = &step.kind
            && let Some(p) = walk(&base.join(&u.path.value), None, chain, clear, spell)
        {
            return Some(p);
        }
    }
    chain.pop();
    clear.insert(key);
    None
}
