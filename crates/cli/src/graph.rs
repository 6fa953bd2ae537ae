//! The DAG as Graphviz dot or Mermaid, optionally coloured by the status of each step in a
//! run: for `cairn graph` and the Markdown report.

use cairn_model::{Checked, Edge};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Each step's status in a run, as a report shows it (`succeeded`, `failed`, `in doubt`...).
pub type Statuses = HashMap<String, String>;

/// The colours of a status: (fill, stroke).
fn colours(status: &str) -> (&'static str, &'static str) {
    match status {
        "succeeded" => ("#c8e6c9", "#2e7d32"),
        "failed" => ("#ffcdd2", "#c62828"),
        "running" | "in doubt" => ("#fff9c4", "#f9a825"),
        "waiting" => ("#bbdefb", "#1565c0"),
        "skipped" => ("#eeeeee", "#9e9e9e"),
        _ => ("#ffffff", "#9e9e9e"),
    }
}

/// A status as a Mermaid class name.
fn class(status: &str) -> String {
    status.replace(' ', "_")
}

/// Each whole step's status in the run.
pub fn statuses_of(d: &crate::report::data::RunData) -> Statuses {
    d.whole_steps()
        .into_iter()
        .map(|s| (s.step_id.clone(), d.shown_status(s).to_string()))
        .collect()
}

fn label(s: &cairn_model::Step, status: Option<&Statuses>) -> String {
    match status {
        Some(st) => format!(
            "{}\\n{}\\n{}",
            s.id.value,
            s.kind.name(),
            st.get(&s.id.value).map_or("not run", String::as_str)
        ),
        None => format!("{}\\n{}", s.id.value, s.kind.name()),
    }
}

fn dot_node(s: &cairn_model::Step, status: Option<&Statuses>) -> String {
    let mut attrs = format!("label=\"{}\"", label(s, status));
    if let Some(st) = status {
        let (fill, stroke) = colours(st.get(&s.id.value).map_or("", String::as_str));
        let _ = write!(
            attrs,
            ", style=filled, fillcolor=\"{fill}\", color=\"{stroke}\""
        );
    }
    attrs
}

/// Graphviz: one node per step, edges in "runs before" direction; `needs` edges solid,
/// written-order edges dashed; `finally` in its own cluster after the DAG.
pub fn dot(c: &Checked, status: Option<&Statuses>) -> String {
    let rb = &c.runbook;
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", rb.name.value);
    let _ = writeln!(
        out,
        "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];"
    );
    for &i in &c.dag.order {
        let s = &rb.steps[i];
        let _ = writeln!(out, "  \"{}\" [{}];", s.id.value, dot_node(s, status));
    }
    for &i in &c.dag.order {
        for p in c.dag.parents(i) {
            let style = if c.dag.edge(p, i) == Some(Edge::Follows) {
                " [style=dashed]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\"{style};",
                rb.steps[p].id.value, rb.steps[i].id.value
            );
        }
    }
    if !rb.finally.is_empty() {
        let _ = writeln!(
            out,
            "  subgraph cluster_finally {{\n    label=\"finally\";\n    style=dashed;"
        );
        for s in &rb.finally {
            let _ = writeln!(out, "    \"{}\" [{}];", s.id.value, dot_node(s, status));
        }
        let _ = writeln!(out, "  }}");
        for w in rb.finally.windows(2) {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", w[0].id.value, w[1].id.value);
        }
        let sinks: Vec<usize> = c
            .dag
            .order
            .iter()
            .copied()
            .filter(|&i| c.dag.children(i).is_empty())
            .collect();
        for i in sinks {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [style=dotted];",
                rb.steps[i].id.value, rb.finally[0].id.value
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart, same shape as the dot output. Node ids are `s0`, `s1`... (`f0`... for
/// `finally`), so that no step id can clash with Mermaid's keywords (`end`, `graph`...); the
/// label carries the step id.
pub fn mermaid(c: &Checked, status: Option<&Statuses>) -> String {
    let rb = &c.runbook;
    let ids: HashMap<&str, String> = rb
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.value.as_str(), format!("s{i}")))
        .chain(
            rb.finally
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.value.as_str(), format!("f{i}"))),
        )
        .collect();
    let node = |id: &str| ids.get(id).cloned().unwrap_or_else(|| "unknown".into());
    let text = |s: &cairn_model::Step| {
        let base = format!("{} ({})", s.id.value, s.kind.name());
        let base = match status {
            Some(st) => format!(
                "{base}: {}",
                st.get(&s.id.value).map_or("not run", String::as_str)
            ),
            None => base,
        };
        // Mermaid's entity codes for what would end the quoted label.
        base.replace('"', "#quot;")
    };
    let mut out = String::from("flowchart TD\n");
    for &i in &c.dag.order {
        let s = &rb.steps[i];
        let _ = writeln!(out, "  {}[\"{}\"]", node(&s.id.value), text(s));
    }
    for &i in &c.dag.order {
        for p in c.dag.parents(i) {
            let arrow = if c.dag.edge(p, i) == Some(Edge::Follows) {
                "-.->"
            } else {
                "-->"
            };
            let _ = writeln!(
                out,
                "  {} {arrow} {}",
                node(&rb.steps[p].id.value),
                node(&rb.steps[i].id.value)
            );
        }
    }
    if !rb.finally.is_empty() {
        out.push_str("  subgraph finally\n");
        for s in &rb.finally {
            let _ = writeln!(out, "    {}[\"{}\"]", node(&s.id.value), text(s));
        }
        out.push_str("  end\n");
        for w in rb.finally.windows(2) {
            let _ = writeln!(
                out,
                "  {} --> {}",
                node(&w[0].id.value),
                node(&w[1].id.value)
            );
        }
        for &i in c
            .dag
            .order
            .iter()
            .filter(|&&i| c.dag.children(i).is_empty())
        {
            let _ = writeln!(
                out,
                "  {} -.-> {}",
                node(&rb.steps[i].id.value),
                node(&rb.finally[0].id.value)
            );
        }
    }
    if let Some(st) = status {
        let mut used: Vec<String> = rb
            .steps
            .iter()
            .chain(rb.finally.iter())
            .map(|s| {
                st.get(&s.id.value)
                    .cloned()
                    .unwrap_or_else(|| "not run".into())
            })
            .collect();
        used.sort();
        used.dedup();
        for u in &used {
            let (fill, stroke) = colours(u);
            let _ = writeln!(out, "  classDef {} fill:{fill},stroke:{stroke}", class(u));
        }
        for s in rb.steps.iter().chain(rb.finally.iter()) {
            let u = st.get(&s.id.value).map_or("not run", String::as_str);
            let _ = writeln!(out, "  class {} {}", node(&s.id.value), class(u));
        }
    }
    out
}
