//! Secrets: read at run time (and again at resume), never written anywhere, and masked as `***`
//! in everything Cairn prints, records or writes (see [`crate::masker`]).

pub use crate::masker::{MaskError, Masker};
use cairn_model::Runbook;
use serde_json::Value as Json;

/// Read every declared secret. All problems are returned together; nothing runs on any.
pub fn read(rb: &Runbook) -> Result<serde_json::Map<String, Json>, Vec<String>> {
    read_declared(&rb.secrets)
}

/// Read these secrets (a runbook's, or a `CAIRN_NOTIFIERS` file's), by the same rules.
pub fn read_declared(
    secrets: &indexmap::IndexMap<String, cairn_model::Secret>,
) -> Result<serde_json::Map<String, Json>, Vec<String>> {
    let (out, problems) = read_each(secrets);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Read every secret that can be read, and say what is wrong with the others: a run refuses
/// on any problem; a dry run masks what it could read and shows the problems as warnings.
pub fn read_each(
    secrets: &indexmap::IndexMap<String, cairn_model::Secret>,
) -> (serde_json::Map<String, Json>, Vec<String>) {
    let mut out = serde_json::Map::new();
    let mut problems = Vec::new();
    for (name, s) in secrets {
        let value = if let Some(var) = &s.env {
            match std::env::var(var) {
                Ok(v) => Some(v),
                Err(_) if s.optional => Some(String::new()),
                Err(_) => {
                    problems.push(format!(
                        "secret `{name}`: environment variable {var} is not set"
                    ));
                    None
                }
            }
        } else if let Some(path) = &s.file {
            match cairn_model::source::read_secret(std::path::Path::new(path)) {
                // A trailing newline in a secret file is never part of the secret.
                Ok(v) => Some(v.trim_end_matches(['\n', '\r']).to_string()),
                // Only a file that cannot be opened counts as absent: a FIFO, a device or an
                // oversized file is a mistake to report, optional or not.
                Err(cairn_model::source::ReadError::Io { .. }) if s.optional => Some(String::new()),
                // Not the reader's own message: it would quote the offending byte of the secret.
                Err(cairn_model::source::ReadError::NotUtf8 { .. }) => {
                    problems.push(format!("secret `{name}`: {path} is not valid UTF-8 text"));
                    None
                }
                Err(e) => {
                    problems.push(format!("secret `{name}`: {e}"));
                    None
                }
            }
        } else {
            None
        };
        if let Some(v) = value {
            out.insert(name.clone(), Json::String(v));
        }
    }
    (out, problems)
}
