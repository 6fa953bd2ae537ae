//! What a routed step (`runs_on`) carries through the step queue, both ways: the prepared
//! action with every secret's value replaced by a reference to its name (the worker that runs
//! the step reads the secret itself), and the outcome the worker writes back. Only `shell` and
//! `argv` actions are routed (the model refuses `runs_on` on other kinds).

use cairn_engine::prepare::Prepared;
use cairn_steps::StepError;
use indexmap::IndexMap;
use serde_json::{Value as Json, json};
use std::time::Duration;

/// The reference that stands for secret `name` in a routed action.
fn reference(nonce: &str, name: &str) -> String {
    format!("\u{27e6}{nonce}:{name}\u{27e7}")
}

/// A `shell` or `argv` action as the queue carries it; `None` for any other kind.
pub fn to_wire(p: &Prepared) -> Option<Json> {
    match p {
        Prepared::Shell {
            command,
            values,
            env,
            cwd,
            detach,
        } => Some(json!({
            "kind": "shell", "command": command, "values": values, "env": env,
            "cwd": cwd, "detach": detach,
        })),
        Prepared::Argv {
            argv,
            values,
            env,
            cwd,
            detach,
        } => Some(json!({
            "kind": "argv", "argv": argv, "values": values, "env": env,
            "cwd": cwd, "detach": detach,
        })),
        _ => None,
    }
}

/// The action back from its wire form (after [`restore`]).
pub fn from_wire(w: &Json) -> Result<Prepared, String> {
    let map = |k: &str| -> Result<IndexMap<String, String>, String> {
        serde_json::from_value(w.get(k).cloned().unwrap_or(json!({})))
            .map_err(|e| format!("`{k}`: {e}"))
    };
    let cwd = w.get("cwd").and_then(Json::as_str).map(str::to_string);
    let detach = w.get("detach").and_then(Json::as_bool).unwrap_or(false);
    match w.get("kind").and_then(Json::as_str) {
        Some("shell") => Ok(Prepared::Shell {
            command: w
                .get("command")
                .and_then(Json::as_str)
                .ok_or("no `command`")?
                .to_string(),
            values: map("values")?,
            env: map("env")?,
            cwd,
            detach,
        }),
        Some("argv") => Ok(Prepared::Argv {
            argv: serde_json::from_value(w.get("argv").cloned().unwrap_or_default())
                .map_err(|e| format!("`argv`: {e}"))?,
            values: map("values")?,
            env: map("env")?,
            cwd,
            detach,
        }),
        other => Err(format!("not a routable action: {other:?}")),
    }
}

/// Replaces every secret's value in the strings of `w` by a reference to its name; returns the
/// names referred to. `secrets` longest value first, so that a secret holding another is
/// replaced whole.
pub fn by_reference(w: &mut Json, secrets: &[(String, String)], nonce: &str) -> Vec<String> {
    let mut used = Vec::new();
    walk(w, &mut |s: &mut String| {
        for (name, value) in secrets {
            if !value.is_empty() && s.contains(value.as_str()) {
                *s = s.replace(value.as_str(), &reference(nonce, name));
                if !used.contains(name) {
                    used.push(name.clone());
                }
            }
        }
    });
    used
}

/// Puts the secrets' values back in place of their references (on the worker that runs the
/// step, with the values it read itself).
pub fn restore(w: &mut Json, secrets: &[(String, String)], nonce: &str) {
    walk(w, &mut |s: &mut String| {
        for (name, value) in secrets {
            let r = reference(nonce, name);
            if s.contains(&r) {
                *s = s.replace(&r, value);
            }
        }
    });
}

fn walk(v: &mut Json, f: &mut impl FnMut(&mut String)) {
    match v {
        Json::String(s) => f(s),
        Json::Array(a) => a.iter_mut().for_each(|x| walk(x, f)),
        Json::Object(o) => o.values_mut().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// A step's outcome as the worker writes it back.
pub fn encode(r: &Result<Json, StepError>) -> Json {
    match r {
        Ok(result) => json!({ "ok": result }),
        Err(StepError::Failed { message, result }) => {
            json!({ "error": { "kind": "failed", "message": message, "result": result } })
        }
        Err(StepError::Timeout { after, result }) => json!({
            "error": { "kind": "timeout", "after_ms": after.as_millis() as u64, "result": result }
        }),
        Err(StepError::Cancelled { result }) => {
            json!({ "error": { "kind": "cancelled", "result": result } })
        }
        Err(StepError::Setup { message }) => {
            json!({ "error": { "kind": "setup", "message": message } })
        }
    }
}

/// The outcome back, as the engine takes it from the port.
pub fn decode(o: &Json) -> Result<Json, StepError> {
    if let Some(result) = o.get("ok") {
        return Ok(result.clone());
    }
    let e = o.get("error").cloned().unwrap_or_default();
    let message = e
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    let result = e.get("result").cloned().filter(|r| !r.is_null());
    Err(match e.get("kind").and_then(Json::as_str) {
        Some("failed") => StepError::Failed { message, result },
        Some("timeout") => StepError::Timeout {
            after: Duration::from_millis(e.get("after_ms").and_then(Json::as_u64).unwrap_or(0)),
            result,
        },
        Some("cancelled") => StepError::Cancelled { result },
        Some("setup") => StepError::Setup { message },
        _ => StepError::setup(format!("a routed step's outcome cannot be read: {o}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_travel_by_name_and_come_back() {
        let p = Prepared::Shell {
            command: "curl -H \"$CAIRN_V1\" x".into(),
            values: [("CAIRN_V1".to_string(), "Bearer s3cr3t-long".to_string())]
                .into_iter()
                .collect(),
            env: [("PW".to_string(), "s3cr3t".to_string())]
                .into_iter()
                .collect(),
            cwd: None,
            detach: false,
        };
        let mut w = to_wire(&p).expect("a shell action");
        let secrets = vec![
            ("long".to_string(), "s3cr3t-long".to_string()),
            ("short".to_string(), "s3cr3t".to_string()),
        ];
        let used = by_reference(&mut w, &secrets, "N1");
        assert_eq!(used, ["long", "short"]);
        assert!(!w.to_string().contains("s3cr3t"), "{w}");
        restore(&mut w, &secrets, "N1");
        let back = from_wire(&w).expect("readable");
        assert_eq!(
            serde_json::to_value(&back).expect("json"),
            serde_json::to_value(&p).expect("json")
        );
    }

    #[test]
    fn outcomes_round_trip() {
        for r in [
            Ok(json!({"exit_code": 0})),
            Err(StepError::failed("exit 3", Some(json!({"exit_code": 3})))),
            Err(StepError::Timeout {
                after: Duration::from_millis(1500),
                result: None,
            }),
            Err(StepError::Cancelled { result: None }),
            Err(StepError::setup("no such program")),
        ] {
            let back = decode(&encode(&r));
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }
}
