//! The step DAG of a run as SVG, each step coloured by its status. Laid out in columns by
//! depth (a step stands one column right of the deepest step it needs). Every label is
//! escaped for XML, so no step name can break out of its `<text>`.

use std::collections::HashMap;

use cairn_state::{StepDef, StepRecord};

const W: usize = 170;
const H: usize = 34;
const GAP_X: usize = 50;
const GAP_Y: usize = 14;
const PAD: usize = 10;
/// Labels longer than this are cut (with …) to fit their box.
const MAX_LABEL: usize = 22;

/// XML text: `& < > " '` as entities; control characters (not allowed in XML 1.0) as U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || ('\u{80}'..'\u{a0}').contains(&c) => {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
    out
}

/// The colours of `cairn graph --run`: succeeded green, failed red, running or in doubt
/// yellow, waiting blue, skipped or cancelled grey, not run white. (fill, stroke)
fn fill(status: &str) -> (&'static str, &'static str) {
    match status {
        "succeeded" => ("#c8e6c9", "#2e7d32"),
        "failed" => ("#ffcdd2", "#c62828"),
        "running" | "in_doubt" => ("#fff9c4", "#f9a825"),
        "waiting" => ("#bbdefb", "#1565c0"),
        "skipped" | "cancelled" => ("#eeeeee", "#757575"),
        _ => ("#ffffff", "#9e9e9e"),
    }
}

/// The SVG of `defs` (the run's DAG as recorded) with the statuses of `steps`; a run without
/// recorded defs shows its steps in order, unlinked.
pub fn svg(defs: &[StepDef], steps: &[StepRecord], run_running: bool) -> String {
    let defs: Vec<StepDef> = if defs.is_empty() {
        steps
            .iter()
            .filter(|s| s.item.is_none())
            .map(|s| StepDef {
                step_id: s.step_id.clone(),
                def_hash: String::new(),
                needs: Vec::new(),
            })
            .collect()
    } else {
        defs.to_vec()
    };
    let index: HashMap<&str, usize> = defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.step_id.as_str(), i))
        .collect();
    // Depth by repeated relaxation, bounded by the number of steps: a cycle (a damaged store)
    // cannot loop forever.
    let mut depth = vec![0usize; defs.len()];
    for _ in 0..defs.len() {
        let mut changed = false;
        for (i, d) in defs.iter().enumerate() {
            for n in &d.needs {
                if let Some(&j) = index.get(n.as_str())
                    && depth[j] + 1 > depth[i]
                    && depth[j] < defs.len()
                {
                    depth[i] = depth[j] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows_in: HashMap<usize, usize> = HashMap::new();
    let mut pos = Vec::with_capacity(defs.len());
    for &d in &depth {
        let row = rows_in.entry(d).or_insert(0);
        pos.push((PAD + d * (W + GAP_X), PAD + *row * (H + GAP_Y)));
        *row += 1;
    }
    let width = PAD * 2 + (depth.iter().max().copied().unwrap_or(0) + 1) * (W + GAP_X);
    let height = PAD * 2 + rows_in.values().max().copied().unwrap_or(1) * (H + GAP_Y);
    let status_of = |id: &str| -> &str {
        match steps.iter().find(|s| s.step_id == id && s.item.is_none()) {
            Some(s) if s.status == cairn_state::StepStatus::Running && !run_running => "in_doubt",
            Some(s) => s.status.as_str(),
            None => "pending",
        }
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" \
         fill=\"#718096\"/></marker></defs>\n"
    );
    for (i, d) in defs.iter().enumerate() {
        for n in &d.needs {
            if let Some(&j) = index.get(n.as_str()) {
                let (x1, y1) = (pos[j].0 + W, pos[j].1 + H / 2);
                let (x2, y2) = (pos[i].0, pos[i].1 + H / 2);
                out.push_str(&format!(
                    "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#718096\" \
                     marker-end=\"url(#arrow)\"/>\n"
                ));
            }
        }
    }
    for (i, d) in defs.iter().enumerate() {
        let status = status_of(&d.step_id);
        let (bg, line) = fill(status);
        let (x, y) = pos[i];
        let label: String = if d.step_id.chars().count() > MAX_LABEL {
            let mut s: String = d.step_id.chars().take(MAX_LABEL - 1).collect();
            s.push('…');
            s
        } else {
            d.step_id.clone()
        };
        out.push_str(&format!(
            "<g><title>{} ({})</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" \
             rx=\"5\" fill=\"{bg}\" stroke=\"{line}\"/><text x=\"{}\" y=\"{}\">{}</text>\
             <text x=\"{}\" y=\"{}\" font-size=\"9\" fill=\"#4a5568\">{}</text></g>\n",
            xml_escape(&d.step_id),
            status,
            x + 8,
            y + 15,
            xml_escape(&label),
            x + 8,
            y + 28,
            status,
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_labels_stay_text_and_cycles_end() {
        let defs = vec![
            StepDef {
                step_id: "</text><script>alert(1)</script>\u{1b}[31m".into(),
                def_hash: String::new(),
                needs: vec!["b".into()],
            },
            StepDef {
                step_id: "b".into(),
                def_hash: String::new(),
                needs: vec!["</text><script>alert(1)</script>\u{1b}[31m".into()],
            },
        ];
        let s = svg(&defs, &[], false);
        assert!(!s.contains("<script"), "{s}");
        assert!(!s.contains('\u{1b}'));
        assert!(s.contains("&lt;/text&gt;&lt;script&gt;"));
    }
}
