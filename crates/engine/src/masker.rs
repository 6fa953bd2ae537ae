//! The masks of a run's secrets: every form a secret can take in what Cairn writes, replaced by
//! `***`. Only the masking door (`masking.rs`) and Cairn's own diagnostics writer use a [`Masker`].
//!
//! Cost is linear in the secrets' total length, and small: a secret up to [`PATTERN_LIMIT`]
//! bytes is one regex alternative covering every escaping of each character; a longer one (a
//! key file, a certificate) is masked in its raw and base64 forms by substring search
//! ([`memchr::memmem`]), which needs no automaton at all.
//!
//! Every value any masker of the process is given is also remembered process-wide
//! ([`diagnostics`]), for the `tracing` output that no run's door sees, and from the first secret
//! on the process is marked not dumpable: a core dump would hold the secrets in clear.

use base64::Engine as _;
use memchr::memmem::Finder;
use serde_json::Value as Json;
use std::sync::{Arc, RwLock};

/// Secrets longer than this are masked in their raw and base64 forms only, by substring
/// search: the pattern of every escaping of a huge value would cost more than it protects.
pub const PATTERN_LIMIT: usize = 4096;
/// Base64 pieces shorter than this are not masked on their own: they would hide ordinary text.
const MIN_B64_PIECE: usize = 8;
/// Backslashes an escaped character may carry: JSON in a JSON string in a JSON string (a
/// response body echoed inside a result) is three levels deep, seven backslashes.
const ESCAPES: usize = 7;
/// The compiled size one masker's regex may take; beyond it the masker refuses (fails closed).
const REGEX_SIZE_LIMIT: usize = 256 << 20;

/// Replaces every known form of a secret with `***` (see docs/runbook-format.md, "Masked forms").
///
/// One pattern matches, for each secret, any mix of: each character as itself, percent-encoded
/// (either hex case, `+` for a space), JSON-escaped (`\uXXXX` either case, `\n`, `\"`...),
/// backslash-escaped and shell-quoted (`'\''`, `'"'"'`); plus the secret's base64 in every
/// alignment (standard and URL-safe alphabets, padded or not), so that `base64(user:secret)`
/// is masked whatever the user.
///
/// A masker whose pattern cannot be built is broken: it masks every text whole, and
/// [`Masker::check`] says why, so that a run refuses to start rather than write unmasked.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    values: Vec<String>,
    regex: Option<regex::bytes::Regex>,
    /// The forms of secrets longer than [`PATTERN_LIMIT`], found by substring search.
    literals: Vec<Finder<'static>>,
    /// The longest text one match can cover: the overlap a stream keeps between chunks.
    longest: usize,
    /// Whether a match can hold a newline (a secret holds one): then a stream's whole lines
    /// are not safe to release before [`Masker::longest`] more bytes follow.
    multiline: bool,
    /// Why the masks could not be built, if they could not.
    broken: Option<String>,
}

/// The masks of a run's secrets could not be built: nothing may run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot build the masks of the secrets ({0}); nothing was run")]
pub struct MaskError(pub String);

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Masker {
        let mut m = Masker::default();
        m.add(values);
        m
    }

    /// Mask these values too (credentials written straight into targets, inherited secrets).
    pub fn add(&mut self, values: impl IntoIterator<Item = String>) {
        let added = self.insert(values);
        if !added.is_empty() {
            remember(added);
        }
    }

    /// Adds the new values and rebuilds; returns the values that were new.
    fn insert(&mut self, values: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut added: Vec<String> = values
            .into_iter()
            .filter(|v| !v.is_empty() && self.values.binary_search(v).is_err())
            .collect();
        added.sort();
        added.dedup();
        if !added.is_empty() {
            self.values.extend(added.iter().cloned());
            self.values.sort();
            self.build();
        }
        added
    }

    /// Every value of `other` is masked here too.
    pub fn merge(&mut self, other: &Masker) {
        self.add(other.values.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether the masks were built; a run refuses to start on an error.
    pub fn check(&self) -> Result<(), MaskError> {
        match &self.broken {
            Some(why) => Err(MaskError(why.clone())),
            None => Ok(()),
        }
    }

    fn build(&mut self) {
        self.build_with(REGEX_SIZE_LIMIT);
    }

    fn build_with(&mut self, size_limit: usize) {
        let mut alternatives: Vec<(usize, String)> = Vec::new();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        for v in &self.values {
            if v.len() <= PATTERN_LIMIT {
                let (pattern, longest) = escaped_forms(v);
                alternatives.push((longest, pattern));
                for piece in base64_pieces(v) {
                    alternatives.push((piece.len(), regex::escape(&piece)));
                }
            } else {
                literals.push(v.as_bytes().to_vec());
                literals.extend(base64_pieces(v).into_iter().map(String::into_bytes));
            }
        }
        // Longest first, so a value that contains another is masked whole.
        alternatives.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        alternatives.dedup_by(|a, b| a.1 == b.1);
        literals.sort();
        literals.dedup();
        self.multiline = self.values.iter().any(|v| v.contains('\n'));
        self.longest = alternatives
            .iter()
            .map(|a| a.0)
            .chain(literals.iter().map(Vec::len))
            .max()
            .unwrap_or(0);
        self.literals = literals
            .iter()
            .map(|l| Finder::new(l).into_owned())
            .collect();
        self.regex = None;
        self.broken = None;
        if alternatives.is_empty() {
            return;
        }
        let pattern = alternatives
            .iter()
            .map(|(_, p)| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        match regex::bytes::RegexBuilder::new(&pattern)
            .size_limit(size_limit)
            .build()
        {
            Ok(re) => self.regex = Some(re),
            Err(e) => {
                self.broken = Some(match e {
                    regex::Error::CompiledTooBig(_) => format!(
                        "{} secret values make a pattern larger than {} KiB",
                        self.values.len(),
                        size_limit >> 10
                    ),
                    other => other.to_string(),
                })
            }
        }
    }

    /// The spans of `data` to mask, in order, overlapping ones joined.
    fn spans(&self, data: &[u8]) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        if let Some(re) = &self.regex {
            spans.extend(re.find_iter(data).map(|m| (m.start(), m.end())));
        }
        if self.literals.is_empty() {
            return spans;
        }
        for f in &self.literals {
            let n = f.needle().len();
            spans.extend(f.find_iter(data).map(|s| (s, s + n)));
        }
        spans.sort_unstable();
        let mut joined: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match joined.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => joined.push((start, end)),
            }
        }
        joined
    }

    pub fn mask(&self, text: &str) -> String {
        if self.broken.is_some() && !text.is_empty() {
            return cairn_template::MASK.to_string();
        }
        let spans = self.spans(text.as_bytes());
        if spans.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for (start, end) in spans {
            // Every form is whole UTF-8 text, and UTF-8 synchronises: a match in valid text
            // starts and ends at character boundaries.
            out.push_str(text.get(pos..start).unwrap_or_default());
            out.push_str(cairn_template::MASK);
            pos = end;
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        out
    }

    /// Every string in a JSON value (keys too).
    pub(crate) fn mask_json(&self, v: &Json) -> Json {
        if self.values.is_empty() {
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
    /// `longest - 1` bytes, unless `at_end`; and, when no secret holds a newline (no form of
    /// one can then cross a line's end), every whole line, so that a step's line is released
    /// as soon as it ends (its live log). Returns the masked bytes and how many input bytes
    /// they stand for; the rest must be given again with what follows.
    pub fn mask_stream(&self, data: &[u8], at_end: bool) -> (Vec<u8>, usize) {
        if self.values.is_empty() {
            return (data.to_vec(), data.len());
        }
        if self.broken.is_some() {
            let out = if data.is_empty() {
                Vec::new()
            } else {
                cairn_template::MASK.as_bytes().to_vec()
            };
            return (out, data.len());
        }
        // A match starting before `safe` ends inside `data`, whatever follows.
        let mut safe = if at_end {
            data.len()
        } else {
            data.len().saturating_sub(self.longest.saturating_sub(1))
        };
        if !self.multiline
            && let Some(newline) = memchr::memrchr(b'\n', data)
        {
            // A match that starts before this newline ends before it.
            safe = safe.max(newline + 1);
        }
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        for (start, end) in self.spans(data) {
            if start >= safe {
                break;
            }
            out.extend_from_slice(&data[pos..start]);
            out.extend_from_slice(cairn_template::MASK.as_bytes());
            pos = end;
        }
        if pos < safe {
            out.extend_from_slice(&data[pos..safe]);
            pos = safe;
        }
        (out, pos)
    }
}

/// Every secret value any masker of this process has been given.
static KNOWN: RwLock<Option<Arc<Masker>>> = RwLock::new(None);

/// The masker of Cairn's own diagnostics: every secret this process has read or been given so
/// far (none before the first run reads its secrets, when nothing secret exists yet).
pub fn diagnostics() -> Option<Arc<Masker>> {
    KNOWN.read().ok().and_then(|k| k.clone())
}

fn remember(values: Vec<String>) {
    // A process holding a secret is not dumpable: no core file, no ptrace by the same user.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot mark the process not dumpable: {e}");
    }
    let Ok(mut known) = KNOWN.write() else {
        return;
    };
    let mut next = known.as_deref().cloned().unwrap_or_default();
    next.insert(values);
    *known = Some(Arc::new(next));
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

    /// A whole line goes out at once (a step's live log shows it while the step runs), and a
    /// secret cut by a read, or by a pause in the middle of a line, is still masked whole.
    #[test]
    fn a_stream_releases_whole_lines_and_never_a_split_secret() {
        let m = Masker::new([SECRET.to_string()]);
        let (out, used) = m.mask_stream(b"first line\n", false);
        assert_eq!((out.as_slice(), used), (&b"first line\n"[..], 11));
        let (half, rest) = SECRET.split_at(SECRET.len() / 2);
        let mut pending = format!("ok\nsays {half}").into_bytes();
        let (out, used) = m.mask_stream(&pending, false);
        assert_eq!(out, b"ok\n", "the unfinished line waits for what follows");
        pending.drain(..used);
        pending.extend_from_slice(format!("{rest} done\n").as_bytes());
        let (out, used) = m.mask_stream(&pending, false);
        assert_eq!(used, pending.len());
        assert_eq!(String::from_utf8_lossy(&out), "says *** done\n");
        // A secret that holds a newline: lines wait for the overlap, as before.
        let m = Masker::new(["two\nlines".to_string()]);
        let (out, used) = m.mask_stream(b"two\n", false);
        assert_eq!((out.len(), used), (0, 0));
        let (out, _) = m.mask_stream(b"two\nlines\n", true);
        assert_eq!(out, b"***\n");
    }

    /// A secret of almost the 1 MiB cap: its raw and base64 forms are masked, in a text and in
    /// a stream cut anywhere, and building its masks costs about its own size.
    #[test]
    fn a_long_secret_is_masked_by_substring_search() {
        let secret: String = (0..1_000_000u32)
            .map(|i| char::from(b'!' + (i.wrapping_mul(2_654_435_761) >> 26) as u8))
            .filter(|c| *c != '\\')
            .collect();
        assert!(secret.len() > super::PATTERN_LIMIT);
        let started = std::time::Instant::now();
        let m = Masker::new([secret.clone()]);
        let built = started.elapsed();
        assert!(m.regex.is_none(), "a long secret needs no regex");
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("u:{secret}"));
        let text = format!("a {secret} b {b64} c");
        let masked = m.mask(&text);
        assert!(masked.starts_with("a *** b "), "{}", &masked[..40]);
        assert!(masked.len() < 200, "{} bytes left", masked.len());
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for chunk in text.as_bytes().chunks(65_536) {
            pending.extend_from_slice(chunk);
            let (done, used) = m.mask_stream(&pending, false);
            out.extend(done);
            pending.drain(..used);
        }
        out.extend(m.mask_stream(&pending, true).0);
        assert_eq!(String::from_utf8_lossy(&out), masked);
        // Linear: seconds at most even unoptimised on a busy machine (the regex of such a
        // secret took half a minute and 1.8 GB unoptimised); bench/masking.sh measures it.
        assert!(built < std::time::Duration::from_secs(8), "{built:?}");
    }

    /// A masker that cannot build its pattern fails closed: it masks every text whole, and
    /// says why so that the run refuses.
    #[test]
    fn a_masker_that_cannot_be_built_masks_everything_and_says_so() {
        let mut m = Masker::new(["s3cr3t-value".to_string()]);
        m.build_with(16);
        assert!(m.check().is_err());
        assert_eq!(m.mask("anything at all"), "***");
        assert_eq!(m.mask_stream(b"some output", false), (b"***".to_vec(), 11));
        assert_eq!(m.mask(""), "");
    }

    #[test]
    fn an_empty_secret_masks_nothing() {
        let m = Masker::new([String::new()]);
        assert!(m.is_empty());
        assert_eq!(m.mask("text"), "text");
    }
}
