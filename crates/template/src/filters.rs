//! Cairn's filters and functions, and their registration in every environment.
//!
//! Filters are registered twice: as plain functions in an inner environment, and in each
//! rendering environment as a thin wrapper that turns a dry-run placeholder input into a
//! placeholder output (`<steps.q.result.rows | length>`) and otherwise calls the inner filter.
//! That makes every filter, builtin or ours, safe to apply to a value that is not known yet.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use minijinja::value::{Rest, ValueOrKwargs};
use minijinja::{Environment, Error, Value};

use crate::error::refuse;
use crate::json;
use crate::marks::{Ident, Raw};
use crate::names::{BUILTIN_FILTERS, CAIRN_FILTERS};
use crate::placeholder::{self, PLACEHOLDER_AWARE_FILTERS, is_placeholder};

/// Undoes the `ident`/`raw` markers for callers that want plain values.
pub(crate) fn unmark(value: Value) -> Value {
    if let Some(raw) = value.downcast_object_ref::<Raw>() {
        return raw.0.clone();
    }
    if let Some(ident) = value.downcast_object_ref::<Ident>() {
        return Value::from(ident.quoted());
    }
    value
}

/// Adds Cairn's filters and functions, unwrapped (the inner environment).
pub(crate) fn register_plain(env: &mut Environment<'static>) {
    env.add_filter("strftime", strftime);
    env.add_filter("from_json", from_json);
    env.add_filter("to_json", to_json);
    env.add_filter("duration", duration);
    env.add_filter("ident", ident);
    env.add_filter("raw", raw);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("basename", basename);
    env.add_filter("dirname", dirname);
    // Spell values like `{{ }}` output does (`true`, not minijinja's `True`).
    env.add_filter("string", |value: &Value| {
        json::display(value).map_err(refuse)
    });
    env.add_function("now", now);
}

/// Registers every filter as a placeholder-aware wrapper around the same filter in `inner`.
pub(crate) fn register_wrapped(env: &mut Environment<'static>, inner: &Arc<Environment<'static>>) {
    for &name in BUILTIN_FILTERS.iter().chain(CAIRN_FILTERS) {
        let inner = Arc::clone(inner);
        let aware = PLACEHOLDER_AWARE_FILTERS.contains(&name);
        env.add_filter(
            name,
            move |args: Rest<ValueOrKwargs>| -> Result<Value, Error> {
                let args = args.into_values();
                if !aware && let Some(p) = placeholder::filtered(args.first(), name) {
                    return Ok(p);
                }
                bounded(name, &args)?;
                inner
                    .empty_state()
                    .apply_filter(name, &args)
                    .map_err(|e| with_filter_name(e, name))
            },
        );
    }
    env.add_function("now", now);
}

/// The largest width `indent` and `format` (`%Ns`, `%.Nf`) accept. Their output grows with
/// the width, and `indent(10**12)` aborted the process (leaving its run `running`); real
/// indentation and padding are a few dozen characters.
pub(crate) const MAX_WIDTH: i64 = 1000;

/// Refuses arguments that would make a filter allocate without bound. (Repetition with `*`,
/// `batch` and `slice` are bounded by minijinja itself.)
fn bounded(name: &str, args: &[Value]) -> Result<(), Error> {
    let too_wide = |w: &Value| w.as_i64().is_some_and(|w| w > MAX_WIDTH);
    match name {
        "indent" => {
            let width = args.get(1).filter(|v| v.as_i64().is_some());
            let by_name = args.last().and_then(|k| k.get_attr("width").ok());
            if width.is_some_and(too_wide) || by_name.as_ref().is_some_and(too_wide) {
                return Err(refuse(format!(
                    "indent: the width must be at most {MAX_WIDTH}"
                )));
            }
        }
        "format" => {
            if let Some(spec) = args.first().and_then(|f| f.as_str())
                && format_widths(spec).any(|w| w > MAX_WIDTH)
            {
                return Err(refuse(format!(
                    "format: widths and precisions must be at most {MAX_WIDTH}"
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The widths and precisions written in the `%` conversions of a format string
/// (`%-12.3f` gives 12 and 3); `%%` is a literal percent sign.
fn format_widths(spec: &str) -> impl Iterator<Item = i64> + '_ {
    /// The number at the start of `s`, if any, and what follows it; too many digits to parse
    /// is too wide.
    fn number(s: &str) -> (Option<i64>, &str) {
        let n = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        match n {
            0 => (None, s),
            _ => (Some(s[..n].parse().unwrap_or(i64::MAX)), &s[n..]),
        }
    }
    let mut rest = spec;
    std::iter::from_fn(move || {
        loop {
            let i = rest.find('%')?;
            let conv = &rest[i + 1..];
            if let Some(after) = conv.strip_prefix('%') {
                rest = after;
                continue;
            }
            let (width, after) = number(conv.trim_start_matches(['-', '+', ' ', '#', '0']));
            let (precision, after) = match after.strip_prefix('.') {
                Some(p) => number(p),
                None => (None, after),
            };
            rest = after;
            let widest = width.max(precision);
            if widest.is_some() {
                return widest;
            }
        }
    })
}

/// Prefixes the filter name to a builtin filter's bare message ("int: invalid float literal").
/// Our own messages already say it, and errors about undefined values are left alone so that
/// minijinja can still name the undefined value.
fn with_filter_name(err: Error, name: &str) -> Error {
    use minijinja::ErrorKind as K;
    let refused = std::error::Error::source(&err).is_some_and(|s| s.is::<crate::error::Refused>());
    match (err.kind(), err.detail()) {
        (K::InvalidOperation, Some(detail)) if !refused && !detail.contains("undefined") => {
            Error::new(K::InvalidOperation, format!("{name}: {detail}"))
        }
        _ => err,
    }
}

/// `now()`: the current time as an RFC 3339 UTC string (`2024-05-01T12:00:00Z`).
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `strftime(fmt)`: formats an RFC 3339 string (its own offset kept) or unix seconds (UTC).
fn strftime(value: &Value, fmt: &str) -> Result<String, Error> {
    let time = parse_time(value)?;
    let mut out = String::new();
    write!(out, "{}", time.format(fmt))
        .map_err(|_| refuse(format!("strftime: invalid format `{fmt}`")))?;
    Ok(out)
}

fn parse_time(value: &Value) -> Result<DateTime<FixedOffset>, Error> {
    let text = value.as_str().map(str::trim);
    if let Some(text) = text
        && let Ok(time) = DateTime::parse_from_rfc3339(text)
    {
        return Ok(time);
    }
    let seconds = match text {
        Some(text) => text.parse::<f64>().ok(),
        None if value.is_number() => f64::try_from(value.clone()).ok(),
        None => None,
    };
    seconds
        .filter(|s| s.is_finite())
        .and_then(|s| {
            let whole = s.floor();
            // The fraction is in [0, 1), so the nanoseconds fit in u32.
            let nanos = ((s - whole) * 1e9) as u32;
            DateTime::from_timestamp(whole as i64, nanos)
        })
        .map(|t| t.fixed_offset())
        .ok_or_else(|| {
            refuse(format!(
                "strftime: `{value}` is neither an RFC 3339 time nor unix seconds"
            ))
        })
}

/// `from_json`: parses a JSON string into a value.
fn from_json(text: &str) -> Result<Value, Error> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|json| json::from_json(&json))
        .map_err(|e| refuse(format!("from_json: invalid JSON: {e}")))
}

/// `to_json`: compact JSON text of a value (placeholders become `"<path>"`).
fn to_json(value: &Value) -> Result<String, Error> {
    let json = json::to_json(value).map_err(|e| refuse(format!("to_json: {e}")))?;
    Ok(json.to_string())
}

/// `duration`: `"1h30m"`/`"90s"`/`"250ms"` (humantime) to seconds, an integer when whole and a
/// float otherwise. A number is taken to be seconds already and returned unchanged.
fn duration(value: &Value) -> Result<Value, Error> {
    if value.is_number() {
        return Ok(value.clone());
    }
    let text = value.as_str().ok_or_else(|| {
        refuse(format!(
            "duration: expected a string like `90s`, got `{value}`"
        ))
    })?;
    let parsed = humantime::parse_duration(text.trim())
        .map_err(|e| refuse(format!("duration: `{text}`: {e}")))?;
    Ok(if parsed.subsec_nanos() == 0 {
        Value::from(parsed.as_secs())
    } else {
        Value::from(parsed.as_secs_f64())
    })
}

/// `ident`: a double-quoted SQL identifier (`"my ""odd"" table"`).
fn ident(value: &Value) -> Result<Value, Error> {
    if let Some(done) = value.downcast_object_ref::<Ident>() {
        return Ok(Value::from_object(Ident(done.0.clone())));
    }
    let name = match (value.as_str(), is_placeholder(value)) {
        (Some(s), _) => s.to_string(),
        (None, Some(path)) => format!("<{path}>"),
        (None, None) if value.is_number() => value.to_string(),
        _ => return Err(refuse(format!("ident: expected a name, got `{value}`"))),
    };
    if name.is_empty() {
        return Err(refuse("ident: an SQL identifier cannot be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(refuse(format!(
            "ident: an SQL identifier cannot hold NUL or other control characters: {name:?}"
        )));
    }
    Ok(Value::from_object(Ident(name)))
}

/// `raw`: marks a value to be written verbatim into a shell command (no effect elsewhere).
fn raw(value: Value) -> Value {
    if value.downcast_object_ref::<Raw>().is_some() {
        return value;
    }
    Value::from_object(Raw(value))
}

/// `b64encode`: standard base64 (with padding) of the UTF-8 text.
fn b64encode(value: &Value) -> Result<String, Error> {
    let bytes = value
        .as_bytes()
        .ok_or_else(|| refuse(format!("b64encode: expected a string, got `{value}`")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `b64decode`: decodes standard or URL-safe base64, padded or not, to UTF-8 text.
fn b64decode(text: &str) -> Result<String, Error> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| refuse(format!("b64decode: `{text}` is not base64")))?;
    String::from_utf8(bytes).map_err(|_| refuse("b64decode: the decoded bytes are not UTF-8 text"))
}

/// `basename`: the last path component, like coreutils (`/a/b/` -> `b`, `/` -> `/`).
fn basename(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "" } else { "/" }.to_string();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// `dirname`: the path without its last component, like coreutils (`a` -> `.`, `/a` -> `/`).
fn dirname(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.starts_with('/') { "/" } else { "." }.to_string();
    }
    match trimmed.rfind('/') {
        None => ".".to_string(),
        Some(i) => match trimmed[..i].trim_end_matches('/') {
            "" => "/".to_string(),
            dir => dir.to_string(),
        },
    }
}
