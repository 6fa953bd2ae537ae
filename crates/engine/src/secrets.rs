//! Secrets: read at run time (and again at resume), never written anywhere, and masked as `***`
//! in everything Cairn prints, records or writes: the raw value, its base64 and URL-encoded
//! forms, and the forms Cairn itself writes it in (shell-quoted, JSON-escaped).

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
        let mut m = Masker::default();
        m.add(values);
        m
    }

    /// Mask these values too (credentials written straight into targets).
    pub fn add(&mut self, values: impl IntoIterator<Item = String>) {
        let mut forms = std::mem::take(&mut self.forms);
        for v in values {
            if v.is_empty() {
                continue;
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
            let b64_raw = base64::engine::general_purpose::STANDARD_NO_PAD.encode(v.as_bytes());
            let url = urlencoding::encode(&v).into_owned();
            // How the value looks once Cairn has quoted it into a shell command (`'` becomes
            // `'\''`) or a JSON string (`"` and `\` escaped): a value holding a quote must not
            // show through the command printed in progress, events or logs.
            let shell = v.replace('\'', "'\\''");
            let json = serde_json::to_string(&v)
                .map(|q| q[1..q.len() - 1].to_string())
                .unwrap_or_default();
            forms.extend([v, b64, b64_raw, url, shell, json]);
        }
        forms.retain(|f| !f.is_empty());
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        self.forms = forms;
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

/// The password in a URL's user info (`scheme://user:PASSWORD@host`), if any.
pub fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty())
        .then(|| urlencoding::decode(pw).map_or_else(|_| pw.to_string(), |d| d.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::Masker;

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let secret = r#"it's "a" s3cr3t/+=?&\x"#;
        let m = Masker::new([secret.to_string()]);
        let shell = cairn_template::shell_quote(secret).expect("quotable");
        let json = serde_json::to_string(secret).expect("json");
        for (what, text) in [
            ("raw", secret.to_string()),
            ("shell-quoted", format!("echo {shell}")),
            ("json-escaped", format!(r#"{{"k":{json}}}"#)),
            ("url-encoded", urlencoding::encode(secret).into_owned()),
        ] {
            let masked = m.mask(&text);
            assert!(!masked.contains("s3cr3t"), "{what}: {masked}");
        }
        assert_eq!(m.mask(&format!("echo {shell}")), "echo '***'");
    }

    #[test]
    fn an_empty_secret_masks_nothing() {
        let m = Masker::new([String::new()]);
        assert!(m.is_empty());
        assert_eq!(m.mask("text"), "text");
    }
}
