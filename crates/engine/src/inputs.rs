//! Inputs given with `--set key=value` and `--inputs file.yaml`, checked against the runbook's
//! declarations before anything runs.

use cairn_model::{InputType, Runbook, did_you_mean};
use indexmap::IndexMap;
use serde_json::Value as Json;

/// Resolve every declared input: given value (typed), else default, else refused if required.
/// All problems are returned together, one line each.
pub fn resolve(
    rb: &Runbook,
    sets: &[(String, String)],
    file: Option<&serde_json::Map<String, Json>>,
) -> Result<IndexMap<String, Json>, Vec<String>> {
    let mut problems = Vec::new();
    let mut given: IndexMap<String, Json> = IndexMap::new();
    let names: Vec<&str> = rb.inputs.keys().map(String::as_str).collect();
    let unknown = |k: &str| {
        let hint = did_you_mean(k, names.iter().copied()).unwrap_or_else(|| {
            if names.is_empty() {
                "it takes no inputs".into()
            } else {
                format!("inputs: {}", names.join(", "))
            }
        });
        format!("`{}` has no input `{k}` ({hint})", rb.name.value)
    };
    if let Some(file) = file {
        for (k, v) in file {
            match rb.inputs.get(k) {
                Some(decl) => match coerce_json(decl.ty, v) {
                    Ok(v) => {
                        given.insert(k.clone(), v);
                    }
                    Err(e) => problems.push(format!("input `{k}`: {e}")),
                },
                None => problems.push(unknown(k)),
            }
        }
    }
    for (k, raw) in sets {
        match rb.inputs.get(k) {
            Some(decl) => match parse_text(decl.ty, raw) {
                Ok(v) => {
                    given.insert(k.clone(), v);
                }
                Err(e) => problems.push(format!("input `{k}`: {e}")),
            },
            None => problems.push(unknown(k)),
        }
    }
    let mut out = IndexMap::new();
    for (name, decl) in &rb.inputs {
        let value = match given.shift_remove(name) {
            Some(v) => v,
            None => match &decl.default {
                Some(d) => d.clone(),
                None if decl.required => {
                    problems.push(format!(
                        "input `{name}` is required: give it with `--set {name}=...`"
                    ));
                    continue;
                }
                None => Json::Null,
            },
        };
        if let (Some(p), Json::String(s)) = (&decl.pattern, &value) {
            // Anchored: the whole value must match, as an SRE reading `pattern` expects.
            let whole = format!("^(?:{p})$");
            if let Ok(re) = regex::Regex::new(&whole)
                && !re.is_match(s)
            {
                problems.push(format!(
                    "input `{name}` = {s:?} does not match the pattern `{p}`"
                ));
            }
        }
        if let Some(allowed) = &decl.allowed
            && !value.is_null()
            && !allowed.contains(&value)
        {
            let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            problems.push(format!(
                "input `{name}` = {value} is not one of {}",
                list.join(", ")
            ));
        }
        out.insert(name.clone(), value);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// `--inputs-ignore-unknown`: the keys of an inputs file that the runbook declares, and the
/// names of those it does not (for one warning each), so that one environment file can serve
/// several runbooks. `--set` keys are never filtered: a name typed on the command line is meant.
pub fn keep_declared(
    rb: &Runbook,
    file: serde_json::Map<String, Json>,
) -> (serde_json::Map<String, Json>, Vec<String>) {
    let mut ignored = Vec::new();
    let kept = file
        .into_iter()
        .filter(|(k, _)| {
            let known = rb.inputs.contains_key(k);
            if !known {
                ignored.push(k.clone());
            }
            known
        })
        .collect();
    (kept, ignored)
}

/// `--set` text to the declared type.
pub fn parse_text(ty: InputType, raw: &str) -> Result<Json, String> {
    match ty {
        InputType::String => Ok(Json::String(raw.to_string())),
        InputType::Int => raw
            .trim()
            .parse::<i64>()
            .map(Json::from)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        InputType::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .ok_or_else(|| format!("expected a number, got {raw:?}")),
        InputType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Json::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(Json::Bool(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        InputType::List => match serde_json::from_str::<Json>(raw) {
            Ok(v @ Json::Array(_)) => Ok(v),
            // `--set hosts=a,b,c` is what people type.
            _ => Ok(Json::Array(
                raw.split(',')
                    .map(|s| Json::String(s.trim().to_string()))
                    .filter(|s| s != "")
                    .collect(),
            )),
        },
        InputType::Map => match serde_json::from_str::<Json>(raw) {
            Ok(v @ Json::Object(_)) => Ok(v),
            _ => Err(format!("expected a JSON object, got {raw:?}")),
        },
    }
}

/// A value from an inputs file to the declared type (text is parsed as with `--set`).
fn coerce_json(ty: InputType, v: &Json) -> Result<Json, String> {
    match (ty, v) {
        (_, Json::String(s)) if ty != InputType::String => parse_text(ty, s),
        (InputType::String, Json::String(_))
        | (InputType::Bool, Json::Bool(_))
        | (InputType::List, Json::Array(_))
        | (InputType::Map, Json::Object(_))
        | (InputType::Number, Json::Number(_)) => Ok(v.clone()),
        (InputType::Int, Json::Number(n)) if n.is_i64() || n.is_u64() => Ok(v.clone()),
        (InputType::String, Json::Number(_) | Json::Bool(_)) => Ok(Json::String(v.to_string())),
        _ => Err(format!(
            "expected {}, got {v}",
            InputType::NAMES[ty as usize]
        )),
    }
}
