//! `--set KEY=VALUE`, `--inputs FILE` and `--inputs-ignore-unknown`: the inputs of `plan`,
//! `run` and `check`, one argument group.

use cairn_engine::plan::Invocation;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct InputArgs {
    /// Set an input: --set key=value (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// A YAML or JSON file of inputs (--set wins over it)
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Ignore the keys of --inputs that the runbook does not declare, with a warning for each
    /// (one environment file shared by several runbooks); --set keys are always checked
    #[arg(long, requires = "inputs")]
    pub inputs_ignore_unknown: bool,
}

impl InputArgs {
    /// The inputs as the engine takes them, for runbook `rb`.
    pub fn invocation(&self, rb: &cairn_model::Runbook) -> anyhow::Result<Invocation> {
        Ok(Invocation {
            sets: self.sets.clone(),
            inputs_file: inputs_file(rb, self.inputs.as_ref(), self.inputs_ignore_unknown)?,
        })
    }
}

pub fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `--inputs FILE` as the run takes it: read, and with `--inputs-ignore-unknown` the keys the
/// runbook does not declare dropped, each named in a warning on stderr.
fn inputs_file(
    rb: &cairn_model::Runbook,
    path: Option<&PathBuf>,
    ignore_unknown: bool,
) -> anyhow::Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let file = read_inputs(path)?;
    match (file, path) {
        (Some(file), Some(path)) if ignore_unknown => {
            let (kept, ignored) = cairn_engine::inputs::keep_declared(rb, file);
            for k in ignored {
                eprintln!(
                    "warning: {}: `{}` has no input `{k}`; ignored (--inputs-ignore-unknown)",
                    path.display(),
                    rb.name.value
                );
            }
            Ok(Some(kept))
        }
        (file, _) => Ok(file),
    }
}

/// Read `--inputs FILE` into a map.
fn read_inputs(
    path: Option<&PathBuf>,
) -> anyhow::Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let Some(path) = path else { return Ok(None) };
    let invalid = |m: String| anyhow::Error::new(crate::Invalid(m));
    let text = cairn_model::source::read_any(path).map_err(|e| invalid(e.to_string()))?;
    match cairn_model::yaml_to_json(&text) {
        Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
        Ok(serde_json::Value::Null) => Ok(Some(Default::default())),
        Ok(_) => Err(invalid(format!(
            "{}: expected a map of input names to values",
            path.display()
        ))),
        Err(d) => {
            let name = path.display().to_string();
            let rendered: String = d.0.iter().map(|x| x.render(&name, &text, false)).collect();
            Err(invalid(format!("{name} is not valid YAML\n{rendered}")))
        }
    }
}
