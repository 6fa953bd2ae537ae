//! Any bytes given to the parser and validator: diagnostics are fine, a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static TEMPLATES: OnceLock<cairn_template::Templates> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let templates = TEMPLATES.get_or_init(cairn_template::Templates::new);
    let (checked, diags) = cairn_model::check("fuzz.yaml".as_ref(), text, templates);
    // Rendering every diagnostic must not panic either (carets past line ends, multi-byte text).
    for d in &diags.0 {
        let _ = d.render("fuzz.yaml", text, false);
    }
    if let Some(c) = checked {
        let _ = c.dag.order.len();
    }
});
