//! The marks filters put on values: `| ident` (an SQL identifier) and `| raw` (verbatim in
//! shell). Filters make them; JSON conversion and the renderers read them.

use minijinja::Value;
use minijinja::value::{Object, ObjectRepr};
use std::sync::Arc;

/// An SQL identifier marked by `| ident` (the name, unquoted): SQL writes it quoted in the
/// target's dialect, where the lexer says it is code; elsewhere it is the double-quoted text.
#[derive(Debug)]
pub(crate) struct Ident(pub(crate) String);

impl Ident {
    /// The double-quoted form (`"my ""odd"" table"`), as text and shell see it.
    pub(crate) fn quoted(&self) -> String {
        crate::Dialect::Postgres.quote_ident(&self.0)
    }
}

impl Object for Ident {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// A value marked `| raw`: written verbatim into shell commands; bound as usual in SQL.
#[derive(Debug)]
pub(crate) struct Raw(pub(crate) Value);

impl Object for Raw {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_str() {
            Some(s) => f.write_str(s),
            None => write!(f, "{}", self.0),
        }
    }
}
