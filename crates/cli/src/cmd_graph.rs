//! `cairn graph FILE --format dot|mermaid`

use crate::exit;
use cairn_model::{Checked, Edge};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The runbook
    file: PathBuf,
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Dot,
    Mermaid,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let templates = cairn_template::Templates::new();
    let checked = match crate::load(&args.file, &templates)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let text = match args.format {
        Format::Dot => dot(&checked),
        Format::Mermaid => mermaid(&checked),
    };
    crate::output::print(&text)?;
    Ok(exit::OK)
}

fn label(s: &cairn_model::Step) -> String {
    format!("{}\\n{}", s.id.value, s.action().kind())
}

/// Graphviz: one node per step, edges in "runs before" direction; `needs` edges solid,
/// written-order edges dashed; `finally` in its own cluster after the DAG.
pub fn dot(c: &Checked) -> String {
    let rb = &c.runbook;
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", rb.name.value);
    let _ = writeln!(
        out,
        "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];"
    );
    for &i in &c.dag.order {
        let s = &rb.steps[i];
        let _ = writeln!(out, "  \"{}\" [label=\"{}\"];", s.id.value, label(s));
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
            let _ = writeln!(out, "    \"{}\" [label=\"{}\"];", s.id.value, label(s));
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

/// Mermaid flowchart, same shape as the dot output.
pub fn mermaid(c: &Checked) -> String {
    let rb = &c.runbook;
    let node = |id: &str| id.replace('-', "_");
    let mut out = String::from("flowchart TD\n");
    for &i in &c.dag.order {
        let s = &rb.steps[i];
        let _ = writeln!(
            out,
            "  {}[\"{} ({})\"]",
            node(&s.id.value),
            s.id.value,
            s.action().kind()
        );
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
            let _ = writeln!(
                out,
                "    {}[\"{} ({})\"]",
                node(&s.id.value),
                s.id.value,
                s.action().kind()
            );
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
    out
}
