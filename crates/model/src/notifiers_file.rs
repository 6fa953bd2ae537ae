//! The notifiers file named by `CAIRN_NOTIFIERS`: notifiers shared by every runbook run on a
//! machine, with the `secrets:` their settings read. Read and checked like a runbook: every
//! problem located in the file.

use crate::diag::Diagnostics;
use crate::notifier::NotifiersFile;
use crate::runbook::Runbook;
use crate::span::{Span, Spanned};
use crate::{LoadError, validate};
use std::path::Path;

/// The environment variable naming the notifiers file.
pub const NOTIFIERS_ENV: &str = "CAIRN_NOTIFIERS";

/// Parse and check a notifiers file's text. Its notifier settings may read only its own
/// `secrets` and `env`.
pub fn check_notifiers_file(
    path: &Path,
    source: &str,
    templates: &cairn_template::Templates,
) -> (Option<NotifiersFile>, Diagnostics) {
    let mut d = Vec::new();
    let root = crate::yaml::parse(source, &mut d);
    if root.is_none() && d.is_empty() {
        d.push(crate::diag::Diagnostic::error(
            Span::default(),
            "the notifiers file is empty: it is a YAML map with `notifiers:`",
        ));
    }
    let file = root.and_then(|root| crate::parse_notify::file(&mut d, &root));
    let file = file.map(|f| NotifiersFile {
        path: path.to_path_buf(),
        source: source.to_string(),
        ..f
    });
    if let Some(f) = &file {
        // The template checks read names and positions from a runbook: give them one that
        // holds only what the file declares.
        let rb = as_runbook(f);
        let mut v = validate::Validator::new(&rb, templates);
        v.notifiers(validate::NOTIFIERS_FILE_ROOTS);
        d.extend(v.d);
    }
    let mut diags = Diagnostics(d);
    diags.sort();
    if diags.has_errors() {
        return (None, diags);
    }
    (file, diags)
}

/// Read and check a notifiers file.
pub fn load_notifiers_file(
    path: &Path,
    templates: &cairn_template::Templates,
) -> Result<(NotifiersFile, Diagnostics), LoadError> {
    let text = crate::read(path)?;
    match check_notifiers_file(path, &text, templates) {
        (Some(f), d) => Ok((f, d)),
        (None, diagnostics) => Err(LoadError::Invalid {
            path: path.display().to_string(),
            text,
            diagnostics,
        }),
    }
}

/// The file named by `CAIRN_NOTIFIERS`, read and checked; `None` when the variable is unset
/// or empty.
pub fn notifiers_file_from_env(
    templates: &cairn_template::Templates,
) -> Result<Option<(NotifiersFile, Diagnostics)>, LoadError> {
    match std::env::var_os(NOTIFIERS_ENV) {
        Some(p) if !p.is_empty() => load_notifiers_file(Path::new(&p), templates).map(Some),
        _ => Ok(None),
    }
}

fn as_runbook(f: &NotifiersFile) -> Runbook {
    Runbook {
        cairn: Spanned::new(1, Span::default()),
        name: Spanned::new(String::new(), Span::default()),
        description: None,
        labels: Default::default(),
        rto: None,
        rpo: None,
        lock: None,
        inputs: Default::default(),
        secrets: f.secrets.clone(),
        targets: Default::default(),
        vars: Default::default(),
        defaults: None,
        steps: Vec::new(),
        finally: Vec::new(),
        outputs: Default::default(),
        notifiers: f.notifiers.clone(),
        notify: None,
        path: f.path.clone(),
        source: f.source.clone(),
        broken_ids: Vec::new(),
    }
}
