//! Conversions between template values and JSON, keeping types (and map order).

use minijinja::Value;
use minijinja::value::ValueKind;

use crate::marks::{Ident, Raw};
use crate::placeholder::is_placeholder;

/// Builds a template value from JSON (numbers stay numbers, map order is kept).
///
/// This is how callers turn YAML/JSON data (inputs, step results) into a context:
/// [`value_map`]`([("inputs", from_json(&inputs))])`.
pub fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(from_json).collect(),
        serde_json::Value::Object(map) => {
            value_map(map.iter().map(|(k, v)| (k.as_str(), from_json(v))))
        }
    }
}

/// Builds a map value (insertion order kept) from `(key, value)` pairs, e.g. a context:
/// `value_map([("inputs", inputs), ("steps", steps)])`.
pub fn value_map<K: Into<Value>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::from(
        entries
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect::<indexmap::IndexMap<Value, Value>>(),
    )
}

/// Converts a template value to JSON, keeping its type.
///
/// A [`crate::placeholder`] becomes the string `"<path>"`; other opaque objects their rendered
/// text; non-finite floats `null`. Undefined values are an error (templates are strict).
pub fn to_json(value: &Value) -> Result<serde_json::Value, String> {
    Ok(match value.kind() {
        ValueKind::Undefined => return Err("undefined value".to_string()),
        ValueKind::None => serde_json::Value::Null,
        ValueKind::Bool => serde_json::Value::Bool(value.is_true()),
        ValueKind::Number => number(value),
        ValueKind::String => serde_json::Value::from(value.as_str().unwrap_or_default()),
        ValueKind::Bytes => serde_json::Value::from(
            value
                .as_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        ),
        ValueKind::Seq | ValueKind::Iterable => {
            let items = value.try_iter().map_err(|e| e.to_string())?;
            serde_json::Value::Array(items.map(|v| to_json(&v)).collect::<Result<_, _>>()?)
        }
        ValueKind::Map => {
            let keys = value.try_iter().map_err(|e| e.to_string())?;
            let mut map = serde_json::Map::new();
            for key in keys {
                let item = value.get_item(&key).map_err(|e| e.to_string())?;
                let key = key.as_str().map_or_else(|| key.to_string(), str::to_string);
                map.insert(key, to_json(&item)?);
            }
            serde_json::Value::Object(map)
        }
        _ => {
            if let Some(path) = is_placeholder(value) {
                serde_json::Value::from(format!("<{path}>"))
            } else if let Some(raw) = value.downcast_object_ref::<Raw>() {
                to_json(&raw.0)?
            } else if let Some(ident) = value.downcast_object_ref::<Ident>() {
                serde_json::Value::from(ident.quoted())
            } else {
                serde_json::Value::from(value.to_string())
            }
        }
    })
}

/// How a value is written into text, shell words and `| string`: a string as it is, a
/// placeholder as `<path>`, anything else as compact JSON (`true`, `null`, `[1,"a"]`, `{"k":1}`)
/// rather than minijinja's Python spellings (`True`, `None`).
pub(crate) fn display(value: &Value) -> Result<String, String> {
    if value.kind() == ValueKind::String {
        return Ok(value.as_str().unwrap_or_default().to_string());
    }
    if let Some(raw) = value.downcast_object_ref::<Raw>() {
        return display(&raw.0);
    }
    match to_json(value)? {
        serde_json::Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

fn number(value: &Value) -> serde_json::Value {
    if value.is_integer() {
        if let Ok(i) = i64::try_from(value.clone()) {
            return serde_json::Value::from(i);
        }
        if let Ok(u) = u64::try_from(value.clone()) {
            return serde_json::Value::from(u);
        }
        // 128-bit integers beyond 64 bits have no exact JSON number in serde_json: keep the digits.
        return serde_json::Value::from(value.to_string());
    }
    // NaN and infinities have no JSON number.
    f64::try_from(value.clone())
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}
