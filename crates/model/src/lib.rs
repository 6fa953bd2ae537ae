//! cairn-model: the runbook format as Rust types, read from YAML with every position kept,
//! validated with every problem collected, and ordered into the step DAG.
//!
//! ```
//! use cairn_model::check;
//! let yaml = "cairn: 1\nname: demo\nsteps:\n  - id: hello\n    shell: echo hi\n";
//! let templates = cairn_template::Templates::new();
//! let (checked, diags) = check("demo.yaml".as_ref(), yaml, &templates);
//! assert!(!diags.has_errors());
//! let checked = checked.unwrap();
//! assert_eq!(checked.runbook.steps[0].id.value, "hello");
//! assert_eq!(checked.dag.order, vec![0]);
//! ```

pub mod dag;
pub mod diag;
pub mod notifier;
pub mod notifiers_file;
mod parse;
mod parse_notify;
mod parse_step;
mod parse_values;
mod read;
pub mod runbook;
pub mod source;
pub mod span;
pub mod step;
pub mod testfile;
pub mod uses;
mod validate;
pub mod values;
pub mod yaml;

pub use dag::{Dag, Edge};
pub use diag::{Diagnostic, Diagnostics, Severity, did_you_mean, escape_controls};
pub use notifier::*;
pub use notifiers_file::{
    NOTIFIERS_ENV, check_notifiers_file, load_notifiers_file, notifiers_file_from_env,
};
pub use parse::FORMAT_VERSIONS;
pub use parse_values::MAX_BACKOFF;
pub use runbook::*;
pub use span::{Span, Spanned};
pub use step::*;
pub use uses::MAX_USES_DEPTH;
pub use validate::{RUN_FIELDS, STEP_FIELDS, TARGET_FIELDS};

use std::path::Path;

/// A runbook that passed validation, with its DAG.
#[derive(Clone, Debug)]
pub struct Checked {
    pub runbook: Runbook,
    pub dag: Dag,
}

impl Checked {
    /// Index of a step by id in `steps` followed by `finally`.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.all_steps().position(|s| s.id.value == id)
    }

    /// `steps` then `finally`.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.runbook.steps.iter().chain(&self.runbook.finally)
    }
}

/// YAML and shape only: the typed runbook, without semantic checks.
pub fn parse_only(path: &Path, source: &str) -> (Option<Runbook>, Diagnostics) {
    let mut d = Vec::new();
    let root = yaml::parse(source, &mut d);
    if root.is_none() && d.is_empty() {
        d.push(empty(source));
    }
    let rb = root.and_then(|root| parse::runbook(&mut d, &root));
    let rb = rb.map(|mut rb| {
        rb.path = path.to_path_buf();
        rb.source = source.to_string();
        rb
    });
    let mut diags = Diagnostics(d);
    diags.sort();
    (rb, diags)
}

/// The error for a file with no YAML document: empty, blank or comments only.
fn empty(source: &str) -> Diagnostic {
    let what = if source.trim().is_empty() {
        "the file is empty"
    } else {
        "the file holds only comments"
    };
    let span = Span {
        line: 1,
        col: 1,
        start: 0,
        end: source.find('\n').unwrap_or(source.len()),
    };
    Diagnostic::error(span, format!("{what}: a runbook is a YAML map"))
        .with_help("start with `cairn: 1`, `name:` and `steps:`")
}

/// Parse and validate one runbook. The diagnostics hold every problem found (errors and
/// warnings); a `Checked` comes back only when there is no error.
pub fn check(
    path: &Path,
    source: &str,
    templates: &cairn_template::Templates,
) -> (Option<Checked>, Diagnostics) {
    check_with(path, source, templates, None)
}

/// [`check`], with the notifiers of a `CAIRN_NOTIFIERS` file in effect besides the
/// runbook's own (names in `notify.on` may name either; the runbook's win a clash).
pub fn check_with(
    path: &Path,
    source: &str,
    templates: &cairn_template::Templates,
    notifiers: Option<&NotifiersFile>,
) -> (Option<Checked>, Diagnostics) {
    let (rb, mut diags) = parse_only(path, source);
    let Some(rb) = rb else { return (None, diags) };
    let mut v = validate::Validator::new(&rb, templates);
    let deps = v.ids_and_needs();
    let dag = Dag::build(&deps);
    let dag = match dag {
        Ok(dag) => Some(dag),
        Err(cycle) => {
            v.cycle(&cycle, &deps);
            None
        }
    };
    if let Some(dag) = &dag {
        v.set_dag(dag);
    }
    v.everything();
    let known = notifiers_in_effect(&rb, notifiers);
    if let Some(notify) = &rb.notify {
        parse_notify::check_routes(&mut v.d, notify, &known);
    }
    parse_notify::check_gates(&mut v.d, &rb, &known);
    diags.0.extend(v.d);
    diags.sort();
    if diags.has_errors() {
        return (None, diags);
    }
    match dag {
        Some(dag) => (Some(Checked { runbook: rb, dag }), diags),
        None => (None, diags),
    }
}

/// Why a runbook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Read(source::ReadError),
    #[error("{path} is not a valid runbook")]
    Invalid {
        path: String,
        text: String,
        diagnostics: Diagnostics,
    },
}

/// Read a runbook file through [`source::read`]. Text that is not UTF-8 comes back as
/// [`LoadError::Invalid`], located at the first bad byte.
pub fn read(path: &Path) -> Result<String, LoadError> {
    match source::read(path) {
        Ok(text) => Ok(text),
        Err(source::ReadError::NotUtf8 {
            path,
            lossy,
            offset,
            line,
            col,
            byte,
        }) => {
            let span = Span {
                line,
                col,
                start: offset,
                end: offset + '\u{fffd}'.len_utf8(),
            };
            let d = Diagnostic::error(span, format!("not valid UTF-8 (byte 0x{byte:02x})"))
                .with_help("runbooks are UTF-8 text: re-encode the file (e.g. with iconv)");
            Err(LoadError::Invalid {
                path,
                text: lossy,
                diagnostics: Diagnostics(vec![d]),
            })
        }
        Err(e) => Err(LoadError::Read(e)),
    }
}

/// Read and validate a runbook file.
pub fn load(
    path: &Path,
    templates: &cairn_template::Templates,
) -> Result<(Checked, Diagnostics), LoadError> {
    // The shared notifiers of `CAIRN_NOTIFIERS` are in effect for every command that loads a
    // runbook (run, resume, sub-runs, validate, plan), so a name only the file declares is
    // never unknown to one of them.
    let file = notifiers_file_from_env(templates)?;
    load_with(path, templates, file.as_ref().map(|(f, _)| f))
}

/// [`load`], with the notifiers of a `CAIRN_NOTIFIERS` file in effect (see [`check_with`]).
pub fn load_with(
    path: &Path,
    templates: &cairn_template::Templates,
    notifiers: Option<&NotifiersFile>,
) -> Result<(Checked, Diagnostics), LoadError> {
    let text = read(path)?;
    match check_with(path, &text, templates, notifiers) {
        (Some(c), d) => Ok((c, d)),
        (None, diagnostics) => Err(LoadError::Invalid {
            path: path.display().to_string(),
            text,
            diagnostics,
        }),
    }
}

/// The JSON Schema of the runbook format, generated from these types.
pub fn schema() -> serde_json::Value {
    let settings = schemars::generate::SchemaSettings::draft07();
    let schema = settings.into_generator().into_root_schema_for::<Runbook>();
    let mut v = serde_json::to_value(schema).unwrap_or_default();
    drop_null(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "$id".into(),
            "https://cairn.dev/schemas/runbook.schema.json".into(),
        );
    }
    v
}

/// Any YAML (or JSON) document as JSON, e.g. an `--inputs` file; errors are located.
pub fn yaml_to_json(source: &str) -> Result<serde_json::Value, Diagnostics> {
    let mut d = Vec::new();
    match yaml::parse(source, &mut d) {
        Some(root) if d.is_empty() => Ok(read::json(&root)),
        Some(_) | None if !d.is_empty() => Err(Diagnostics(d)),
        _ => Ok(serde_json::Value::Null),
    }
}

/// Optional keys are written absent, not `null` (the parser refuses `key: null` for typed
/// values), so the schema must not offer `null` for them either.
fn drop_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(types)) = o.get_mut("type") {
                if types.len() > 1 {
                    types.retain(|t| t != "null");
                }
                if types.len() == 1 {
                    let only = types.remove(0);
                    o.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = o.get_mut("anyOf") {
                any.retain(|s| s != &serde_json::json!({ "type": "null" }));
                if any.len() == 1 {
                    let only = any.remove(0);
                    o.remove("anyOf");
                    if let Value::Object(inner) = only {
                        for (k, x) in inner {
                            o.entry(k).or_insert(x);
                        }
                    }
                }
            }
            for x in o.values_mut() {
                drop_null(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// A YAML node (e.g. a test fixture's `result:`) as JSON, typed by the YAML core schema.
pub fn yaml_node_json(n: &yaml::Node) -> serde_json::Value {
    read::json(n)
}
