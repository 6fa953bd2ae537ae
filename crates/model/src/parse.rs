//! YAML node tree -> [`Runbook`], collecting every problem on the way.

use crate::diag::Diagnostic;
use crate::parse_values::{defaults, input, outputs, secret, target};
use crate::read::*;
use crate::runbook::*;
use crate::yaml::Node;
use indexmap::IndexMap;
use std::collections::HashSet;

/// The format versions this Cairn reads.
pub const FORMAT_VERSIONS: &[u32] = &[1];

const RUNBOOK_KEYS: &[&str] = &[
    "cairn",
    "name",
    "description",
    "labels",
    "rto",
    "rpo",
    "lock",
    "inputs",
    "secrets",
    "targets",
    "vars",
    "defaults",
    "steps",
    "finally",
    "outputs",
    "notifiers",
    "notify",
];

pub(crate) fn runbook(d: &mut Diags, root: &Node) -> Option<Runbook> {
    let mut f = map(d, root, "a runbook")?;
    let what = "the runbook";
    let cairn = match f.get("cairn") {
        Some(n) => uint(d, n, "`cairn` (the format version)").and_then(|v| {
            if FORMAT_VERSIONS.contains(&v.value) {
                Some(v)
            } else {
                d.push(
                    Diagnostic::error(
                        v.span,
                        format!("unsupported format version `cairn: {}`", v.value),
                    )
                    .with_help("this Cairn reads `cairn: 1`"),
                );
                None
            }
        }),
        None => {
            d.push(
                Diagnostic::error(
                    f.span,
                    "the runbook is missing `cairn:` (the format version)",
                )
                .with_help("start the file with `cairn: 1`"),
            );
            None
        }
    };
    let name = match f.get("name") {
        Some(n) => string(d, n, "`name`").inspect(|s| {
            let ok = s.value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                d.push(
                    Diagnostic::error(s.span, format!("invalid runbook name `{}`", s.value))
                        .with_help("use lowercase letters, digits and `-`, starting with a letter or digit"),
                );
            }
        }),
        None => {
            missing(d, f.span, "name", what);
            None
        }
    };
    let description = f
        .get("description")
        .and_then(|n| text(d, n, "`description`"));
    let labels = f.get("labels").map_or_else(IndexMap::new, |n| {
        named(d, n, "`labels`", |d, _, _, v| text(d, v, "a label value"))
    });
    let rto = f.get("rto").and_then(|n| duration(d, n, "`rto`"));
    let rpo = f.get("rpo").and_then(|n| duration(d, n, "`rpo`"));
    let lock = f.get("lock").and_then(|n| string(d, n, "`lock`"));
    let inputs = f
        .get("inputs")
        .map_or_else(IndexMap::new, |n| named(d, n, "`inputs`", input));
    let secrets = f
        .get("secrets")
        .map_or_else(IndexMap::new, |n| named(d, n, "`secrets`", secret));
    let targets = f
        .get("targets")
        .map_or_else(IndexMap::new, |n| named(d, n, "`targets`", target));
    let vars = f.get("vars").map_or_else(IndexMap::new, |n| {
        named(d, n, "`vars`", |d, k, ks, v| {
            check_ident(d, k, ks, "var");
            Some(tvalue(v))
        })
    });
    let defaults = f.get("defaults").and_then(|n| defaults(d, n));
    let notifiers = f
        .get("notifiers")
        .map_or_else(IndexMap::new, |n| crate::parse_notify::notifiers(d, n));
    let notify = f
        .get("notify")
        .and_then(|n| crate::parse_notify::notify(d, n));
    let main = match f.get("steps") {
        Some(n) => crate::parse_step::steps(d, n, "`steps`"),
        None => {
            missing(d, f.span, "steps", what);
            Vec::new()
        }
    };
    let finally = f
        .get("finally")
        .map(|n| crate::parse_step::steps(d, n, "`finally`"))
        .unwrap_or_default();
    let outputs = f
        .get("outputs")
        .map_or_else(IndexMap::new, |n| outputs(d, n));
    if let Some(r) = defaults.as_ref().and_then(|x| x.runs_on.as_ref()) {
        default_routing(d, r, main.iter().chain(&finally));
    }
    // Steps whose definition has errors are dropped; remember their ids so references to them
    // are not reported a second time as unknown. A set: a 10,000-step runbook would make a
    // list lookup per step quadratic.
    let parsed: HashSet<&str> = main
        .iter()
        .chain(&finally)
        .map(|s| s.id.value.as_str())
        .collect();
    let broken_ids = [f.get("steps"), f.get("finally")]
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_seq())
        .flatten()
        .filter_map(|s| s.as_map())
        .filter_map(|m| {
            m.iter()
                .find(|(k, _)| k.text() == Some("id"))
                .and_then(|(_, v)| v.text())
        })
        .filter(|id| !parsed.contains(id))
        .map(str::to_string)
        .collect();
    f.finish(d, RUNBOOK_KEYS, what);
    Some(Runbook {
        cairn: cairn?,
        name: name?,
        description,
        labels,
        rto,
        rpo,
        lock,
        inputs,
        secrets,
        targets,
        vars,
        defaults,
        steps: main,
        finally,
        outputs,
        notifiers,
        notify,
        path: Default::default(),
        source: String::new(),
        broken_ids,
    })
}

/// A default `runs_on` routes `shell` and `argv` steps. A step of another kind that would
/// reach a host (`sql`, `http`, `chroma`, a `wait` polling one) is refused unless it says where
/// it runs: run where the run runs, it would quietly reach from the wrong host.
fn default_routing<'a>(
    d: &mut Diags,
    default: &crate::values::RunsOn,
    steps: impl Iterator<Item = &'a crate::step::Step>,
) {
    use crate::step::StepKind;
    if !default.routes() {
        return;
    }
    for s in steps {
        let reaches = matches!(
            s.kind,
            StepKind::Sql(_) | StepKind::Http(_) | StepKind::Chroma(_) | StepKind::Wait(_)
        );
        if reaches && s.runs_on.is_none() {
            d.push(
                Diagnostic::error(
                    s.id.span,
                    format!(
                        "step `{}` is a `{}` step, which `defaults.runs_on` cannot send to a worker",
                        s.id.value,
                        s.kind.name()
                    ),
                )
                .with_help("add `runs_on: {}` to run it where the run runs"),
            );
        }
    }
}
