//! The HTML pages: minijinja templates embedded in the binary, escaped by default (every
//! template is `.html`, so every value is HTML-escaped unless a template says otherwise, and
//! none does), with two filters of its own: `visible` (control characters shown, not passed
//! to the browser) and `pretty` (indented JSON as text).

use minijinja::{Environment, Value};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("runs.html", include_str!("../templates/runs.html")),
    ("run.html", include_str!("../templates/run.html")),
    ("step.html", include_str!("../templates/step.html")),
    (
        "approvals.html",
        include_str!("../templates/approvals.html"),
    ),
    ("runbooks.html", include_str!("../templates/runbooks.html")),
    ("runbook.html", include_str!("../templates/runbook.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("message.html", include_str!("../templates/message.html")),
];

pub const CSS: &str = include_str!("../assets/app.css");
pub const JS: &str = include_str!("../assets/app.js");

pub struct Pages {
    env: Environment<'static>,
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}

/// Control characters (but newline and tab) as `\xNN`: an escape sequence in a log line
/// reaches the page as text, never as a byte the browser would act on.
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn sanitize(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.chars().any(needs_escape) => *s = visible(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(sanitize),
        serde_json::Value::Object(m) => m.values_mut().for_each(sanitize),
        _ => {}
    }
}

/// A JSON value as a template value (kept without minijinja's serde support, which the rest
/// of Cairn does not build with).
fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(to_value).collect::<Vec<_>>()),
        J::Object(m) => Value::from(
            m.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

/// A template value back as JSON, for `pretty`.
fn to_json(v: &Value) -> serde_json::Value {
    use minijinja::value::ValueKind as K;
    match v.kind() {
        K::Undefined | K::None => serde_json::Value::Null,
        K::Bool => v.is_true().into(),
        K::Number => i64::try_from(v.clone())
            .map(serde_json::Value::from)
            .or_else(|_| f64::try_from(v.clone()).map(serde_json::Value::from))
            .unwrap_or(serde_json::Value::Null),
        K::Seq | K::Iterable => v
            .try_iter()
            .map(|it| it.map(|x| to_json(&x)).collect())
            .unwrap_or_default(),
        K::Map => {
            let mut m = serde_json::Map::new();
            if let Ok(keys) = v.try_iter() {
                for k in keys {
                    let item = v.get_item(&k).unwrap_or_default();
                    m.insert(k.to_string(), to_json(&item));
                }
            }
            serde_json::Value::Object(m)
        }
        _ => v.as_str().map_or_else(|| v.to_string().into(), Into::into),
    }
}

fn pretty(v: Value) -> String {
    visible(&serde_json::to_string_pretty(&to_json(&v)).unwrap_or_default())
}

impl Pages {
    pub fn new() -> Pages {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, text) in TEMPLATES {
            // The templates are part of the binary, checked by the tests: one that does not
            // parse is a bug in Cairn, reported on first use.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!("template {name}: {e}");
            }
        }
        env.add_filter("visible", |s: String| visible(&s));
        env.add_filter("pretty", pretty);
        Pages { env }
    }

    /// Renders a page. Every string of the context goes through [`visible`] first: one door,
    /// so no template can forget it.
    pub fn render(&self, name: &str, mut ctx: serde_json::Value) -> Result<String, String> {
        sanitize(&mut ctx);
        self.env
            .get_template(name)
            .and_then(|t| t.render(to_value(&ctx)))
            .map_err(|e| format!("rendering {name}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_escapes() {
        let p = Pages::new();
        for (name, _) in TEMPLATES {
            assert!(p.env.get_template(name).is_ok(), "{name}");
        }
        let html = p
            .render(
                "message.html",
                serde_json::json!({ "title": "t", "message": "</p><script>x()</script>\u{1b}[1m" }),
            )
            .expect("render");
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains('\u{1b}'));
    }
}
