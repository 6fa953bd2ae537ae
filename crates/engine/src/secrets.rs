//! Secrets: read at run time (and again at resume), never written anywhere, and masked as `***`
//! in everything Cairn prints, records or writes: the raw value and its base64 and URL-encoded
//! forms.

use base64::Engine as _;
use cairn_model::Runbook;
use serde_json::Value as Json;

/// Replaces every known secret form with `***`.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so a value that contains another is masked whole.
    forms: Vec<String>,
}

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Masker {
        let mut forms = Vec::new();
        for v in values {
            if v.is_empty() {
                continue;
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
            let b64_raw = base64::engine::general_purpose::STANDARD_NO_PAD.encode(v.as_bytes());
            let url = urlencoding::encode(&v).into_owned();
            forms.extend([v, b64, b64_raw, url]);
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Masker { forms }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for f in &self.forms {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), cairn_template::MASK);
            }
        }
        out
    }

    /// Every string in a JSON value (keys too).
    pub fn mask_json(&self, v: &Json) -> Json {
        if self.forms.is_empty() {
            return v.clone();
        }
        match v {
            Json::String(s) => Json::String(self.mask(s)),
            Json::Array(a) => Json::Array(a.iter().map(|x| self.mask_json(x)).collect()),
            Json::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, x)| (self.mask(k), self.mask_json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Read every declared secret. All problems are returned together; nothing runs on any.
pub fn read(rb: &Runbook) -> Result<serde_json::Map<String, Json>, Vec<String>> {
    let mut out = serde_json::Map::new();
    let mut problems = Vec::new();
    for (name, s) in &rb.secrets {
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
            match std::fs::read_to_string(path) {
                // A trailing newline in a secret file is never part of the secret.
                Ok(v) => Some(v.trim_end_matches(['\n', '\r']).to_string()),
                Err(_) if s.optional => Some(String::new()),
                Err(e) => {
                    problems.push(format!("secret `{name}`: cannot read {path}: {e}"));
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
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}
