//! Where the state store is when no URL is given: `$CAIRN_STATE`; else, like git, the nearest
//! `.cairn/` folder in the working directory or above it (`.cairn/state.db` in it); else the
//! per-user store, `$XDG_STATE_HOME/cairn/state.db` (by default `~/.local/state/cairn/state.db`).

use std::path::{Path, PathBuf};

/// The default state store and why it is that one (for an error that says where it looked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultLocation {
    /// A path (SQLite) or a URL from `$CAIRN_STATE`.
    pub url: String,
    /// E.g. "the per-user store: there is no .cairn/ folder in /srv/ops or above it".
    pub why: String,
}

/// Resolves the default store from the environment and the working directory.
pub fn default_location() -> DefaultLocation {
    if let Ok(v) = std::env::var("CAIRN_STATE")
        && !v.trim().is_empty()
    {
        return DefaultLocation {
            url: v,
            why: "given by CAIRN_STATE".to_string(),
        };
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if let Some(dir) = cwd.ancestors().find(|d| d.join(".cairn").is_dir()) {
        return DefaultLocation {
            url: dir.join(".cairn").join("state.db").display().to_string(),
            why: format!(
                "the project store: the nearest .cairn/ folder is in {}",
                dir.display()
            ),
        };
    }
    DefaultLocation {
        url: user_store().display().to_string(),
        why: format!(
            "the per-user store: there is no .cairn/ folder in {} or above it",
            cwd.display()
        ),
    }
}

/// `$XDG_STATE_HOME/cairn/state.db`, else `~/.local/state/cairn/state.db`; `.cairn/state.db`
/// in the working directory when there is no home either.
fn user_store() -> PathBuf {
    let absolute = |v: &str| {
        std::env::var_os(v)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".local").join("state")));
    match base {
        Some(base) => base.join("cairn").join("state.db"),
        None => Path::new(".cairn").join("state.db"),
    }
}
