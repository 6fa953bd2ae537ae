//! Secrets: read at run time (and again at resume), never written anywhere, and masked as `***`
//! in everything Cairn prints, records or writes: the raw value, its base64 and URL-encoded
//! forms, and the forms Cairn itself writes it in (shell-quoted, JSON-escaped).

use base64::Engine as _;
use cairn_model::Runbook;
use serde_json::Value as Json;

/// Secrets longer than this are masked in their raw and base64 forms only: the pattern of every
/// escaping of a huge value would cost more than it protects.
const PATTERN_LIMIT: usize = 4096;
/// Base64 pieces shorter than this are not masked on their own: they would hide ordinary text.
const MIN_B64_PIECE: usize = 8;
/// Backslashes an escaped character may carry: JSON in a JSON string in a JSON string (a
/// response body echoed inside a result) is three levels deep, seven backslashes.
const ESCAPES: usize = 7;

/// Replaces every known form of a secret with `***` (see docs/runbook-format.md, "Masked forms").
///
/// One pattern matches, for each secret, any mix of: each character as itself, percent-encoded
/// (either hex case, `+` for a space), JSON-escaped (`\uXXXX` either case, `\n`, `\"`...),
/// backslash-escaped and shell-quoted (`'\''`, `'"'"'`); plus the secret's base64 in every
/// alignment (standard and URL-safe alphabets, padded or not), so that `base64(user:secret)`
/// is masked whatever the user.
///
/// Only the masking door (`door.rs`) calls it.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    values: Vec<String>,
    text: Option<regex::Regex>,
    bytes: Option<regex::bytes::Regex>,
    /// The longest text one match can cover: the overlap a stream keeps between chunks.
    longest: usize,
}

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Masker {
        let mut m = Masker::default();
        m.add(values);
        m
    }

    /// Mask these values too (credentials written straight into targets, inherited secrets).
    pub fn add(&mut self, values: impl IntoIterator<Item = String>) {
        let before = self.values.len();
        self.values
            .extend(values.into_iter().filter(|v| !v.is_empty()));
        self.values.sort();
        self.values.dedup();
        if self.values.len() != before {
            self.build();
        }
    }

    /// Every value of `other` is masked here too.
    pub fn merge(&mut self, other: &Masker) {
        self.add(other.values.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn build(&mut self) {
        let mut alternatives: Vec<(usize, String)> = Vec::new();
        for v in &self.values {
            if v.len() <= PATTERN_LIMIT {
                let (pattern, longest) = escaped_forms(v);
                alternatives.push((longest, pattern));
            } else {
                alternatives.push((v.len(), regex::escape(v)));
            }
            for piece in base64_pieces(v) {
                alternatives.push((piece.len(), regex::escape(&piece)));
            }
        }
        // Longest first, so a value that contains another is masked whole.
        alternatives.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        alternatives.dedup_by(|a, b| a.1 == b.1);
        self.longest = alternatives.first().map_or(0, |a| a.0);
        let pattern = alternatives
            .iter()
            .map(|(_, p)| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        let build_text = regex::RegexBuilder::new(&pattern)
            .size_limit(256 << 20)
            .build();
        let build_bytes = regex::bytes::RegexBuilder::new(&pattern)
            .size_limit(256 << 20)
            .build();
        match (build_text, build_bytes) {
            (Ok(t), Ok(b)) => {
                self.text = Some(t);
                self.bytes = Some(b);
            }
            _ => {
                // Cannot happen with escaped literals; fall back to the raw values alone.
                let raw = self
                    .values
                    .iter()
                    .map(|v| regex::escape(v))
                    .collect::<Vec<_>>()
                    .join("|");
                self.text = regex::Regex::new(&raw).ok();
                self.bytes = regex::bytes::Regex::new(&raw).ok();
                self.longest = self.values.iter().map(String::len).max().unwrap_or(0);
            }
        }
    }

    pub fn mask(&self, text: &str) -> String {
        match &self.text {
            Some(re) => re.replace_all(text, cairn_template::MASK).into_owned(),
            None => text.to_string(),
        }
    }

    /// Every string in a JSON value (keys too).
    pub(crate) fn mask_json(&self, v: &Json) -> Json {
        if self.text.is_none() {
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

    /// Masks the part of `data` that no later byte can change: everything but the last
    /// `longest - 1` bytes, unless `at_end`. Returns the masked bytes and how many input
    /// bytes they stand for; the rest must be given again with what follows.
    pub(crate) fn mask_stream(&self, data: &[u8], at_end: bool) -> (Vec<u8>, usize) {
        let Some(re) = &self.bytes else {
            return (data.to_vec(), data.len());
        };
        // A match starting before `safe` ends inside `data`, whatever follows.
        let safe = if at_end {
            data.len()
        } else {
            data.len().saturating_sub(self.longest.saturating_sub(1))
        };
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        for m in re.find_iter(data) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&data[pos..m.start()]);
            out.extend_from_slice(cairn_template::MASK.as_bytes());
            pos = m.end();
        }
        if pos < safe {
            out.extend_from_slice(&data[pos..safe]);
            pos = safe;
        }
        (out, pos)
    }
}

/// One pattern for every character-level escaping of `v`, and the longest text it matches.
fn escaped_forms(v: &str) -> (String, usize) {
    let mut pattern = String::new();
    let mut longest = 0;
    for c in v.chars() {
        let mut alts: Vec<String> = vec![regex::escape(&c.to_string())];
        let mut widest = c.len_utf8();
        // Percent-encoding of its UTF-8 bytes, either hex case.
        let mut buf = [0u8; 4];
        let pct: String = c
            .encode_utf8(&mut buf)
            .bytes()
            .map(|b| format!("%(?i:{b:02x})"))
            .collect();
        alts.push(pct);
        widest = widest.max(3 * c.len_utf8());
        // JSON `\uXXXX` (a surrogate pair beyond the BMP), either hex case.
        let mut units = [0u16; 2];
        let u: String = c
            .encode_utf16(&mut units)
            .iter()
            .map(|u| format!(r"\\{{1,{ESCAPES}}}u(?i:{u:04x})"))
            .collect();
        alts.push(u);
        widest = widest.max((5 + ESCAPES) * c.len_utf16());
        let escaped = |letter: char| format!(r"\\{{1,{ESCAPES}}}{letter}");
        match c {
            ' ' => alts.push(r"\+".into()),
            '\n' => alts.push(escaped('n')),
            '\r' => alts.push(escaped('r')),
            '\t' => alts.push(escaped('t')),
            '\u{8}' => alts.push(escaped('b')),
            '\u{c}' => alts.push(escaped('f')),
            // Shell single-quoting: `'\''` and `'"'"'`.
            '\'' => {
                alts.push(r"'\\''".into());
                alts.push(r#"'"'"'"#.into());
                widest = widest.max(5);
            }
            _ => {}
        }
        // Backslashes before any ASCII punctuation: JSON (`\"`, `\\`, `\/`), double quotes
        // (`\$`, `` \` ``), shell words (`\'`, `\ `); several, for JSON inside JSON (`\\\"`).
        if c.is_ascii_punctuation() || c == ' ' {
            alts.push(format!(
                r"\\{{1,{ESCAPES}}}{}",
                regex::escape(&c.to_string())
            ));
            widest = widest.max(ESCAPES + 1);
        }
        if c == '\\' {
            alts.push(format!(r"\\{{1,{}}}", ESCAPES + 1));
        }
        pattern.push_str(&format!("(?:{})", alts.join("|")));
        longest += widest;
    }
    (pattern, longest)
}

/// The secret's base64 in each of the three alignments it can have inside a longer encoded
/// text, in the standard and URL-safe alphabets: the characters that depend on the secret's
/// bytes alone (plus the whole padded and unpadded encodings of the value by itself).
fn base64_pieces(v: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = v.as_bytes();
    let mut out = vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ];
    for shift in 0..3usize {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(bytes);
        // Characters wholly made of the secret's bits: from the first sextet that starts at or
        // after bit 8*shift, to the last sextet that ends at or before the secret's last bit.
        let first = (8 * shift).div_ceil(6);
        let last = (8 * shifted.len()) / 6;
        if last <= first {
            continue;
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&shifted);
            if let Some(piece) = encoded.get(first..last) {
                out.push(piece.to_string());
            }
        }
    }
    out.retain(|p| p.len() >= MIN_B64_PIECE || p.len() >= 4 * bytes.len().div_ceil(3));
    out
}

/// Read every declared secret. All problems are returned together; nothing runs on any.
pub fn read(rb: &Runbook) -> Result<serde_json::Map<String, Json>, Vec<String>> {
    read_declared(&rb.secrets)
}

/// Read these secrets (a runbook's, or a `CAIRN_NOTIFIERS` file's), by the same rules.
pub fn read_declared(
    secrets: &indexmap::IndexMap<String, cairn_model::Secret>,
) -> Result<serde_json::Map<String, Json>, Vec<String>> {
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
    use base64::Engine as _;

    const SECRET: &str = r#"it's "a" s3cr3t/+=?&\x y"#;

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let m = Masker::new([SECRET.to_string()]);
        let shell = cairn_template::shell_quote(SECRET).expect("quotable");
        let json = serde_json::to_string(SECRET).expect("json");
        let b64 = base64::engine::general_purpose::STANDARD;
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let lower_pct: String = SECRET
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect();
        let json_u: String = SECRET
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_string()
                } else {
                    format!("\\u{:04X}", c as u32)
                }
            })
            .collect();
        for (what, text) in [
            ("raw", SECRET.to_string()),
            ("shell-quoted", format!("echo {shell}")),
            ("shell double-quote style", SECRET.replace('\'', r#"'"'"'"#)),
            ("json-escaped", format!(r#"{{"k":{json}}}"#)),
            (
                "json in json in json",
                serde_json::to_string(&serde_json::to_string(&json).expect("json")).expect("json"),
            ),
            ("json \\u", json_u),
            ("url-encoded", urlencoding::encode(SECRET).into_owned()),
            ("url-encoded lower hex", lower_pct),
            (
                "form-encoded",
                urlencoding::encode(SECRET).replace("%20", "+"),
            ),
            ("base64", b64.encode(SECRET)),
            ("base64 url-safe", url_safe.encode(SECRET)),
            (
                "basic auth",
                format!("Basic {}", b64.encode(format!("admin:{SECRET}"))),
            ),
            ("basic auth, other user", b64.encode(format!("ab:{SECRET}"))),
        ] {
            let masked = m.mask(&text);
            assert!(!masked.contains("s3cr3t"), "{what}: {masked}");
            assert!(masked.contains("***"), "{what}: {masked}");
            // Base64 forms: no 12-character piece of the encoding survives either.
            for enc in [b64.encode(SECRET), url_safe.encode(SECRET)] {
                let chars: Vec<char> = enc.chars().collect();
                for w in chars.windows(12) {
                    let piece: String = w.iter().collect();
                    assert!(!masked.contains(&piece), "{what}: {piece} in {masked}");
                }
            }
        }
        assert_eq!(m.mask(&format!("echo {shell}")), "echo '***'");
    }

    #[test]
    fn a_stream_is_masked_across_any_chunking() {
        let m = Masker::new([SECRET.to_string()]);
        let text = format!("head {SECRET} middle {SECRET}{SECRET} tail");
        let want = m.mask(&text);
        for size in [1, 2, 3, 7, 16, 1000] {
            let mut out = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                pending.extend_from_slice(chunk);
                let (masked, used) = m.mask_stream(&pending, false);
                out.extend(masked);
                pending.drain(..used);
            }
            let (masked, used) = m.mask_stream(&pending, true);
            out.extend(masked);
            assert_eq!(used, pending.len());
            assert_eq!(String::from_utf8_lossy(&out), want, "chunks of {size}");
        }
    }

    #[test]
    fn an_empty_secret_masks_nothing() {
        let m = Masker::new([String::new()]);
        assert!(m.is_empty());
        assert_eq!(m.mask("text"), "text");
    }
}
