//! The values of a runbook's sections, YAML node -> typed value, collecting every problem on the
//! way: inputs, secrets, targets, defaults, retries, `on_failure`, `expect`, outputs. The
//! runbook's parser (`parse.rs`), the steps' (`parse_step.rs`) and the notifiers' share them.

use crate::diag::{Diagnostic, did_you_mean};
use crate::read::*;
use crate::runbook::*;
use crate::span::Spanned;
use crate::yaml::{Node, Scalar};
use indexmap::IndexMap;

pub(crate) fn outputs(d: &mut Diags, n: &Node) -> IndexMap<String, Spanned<TValue>> {
    named(d, n, "`outputs`", |d, k, ks, v| {
        check_ident(d, k, ks, "output");
        Some(tvalue(v))
    })
}

pub(crate) fn input(d: &mut Diags, name: &str, key: crate::span::Span, n: &Node) -> Option<Input> {
    check_ident(d, name, key, "input");
    let what = format!("input `{name}`");
    let mut f = map(d, n, &what)?;
    let ty = match f.get("type") {
        Some(t) => match t.scalar() {
            Some(Scalar::Str(s)) => match InputType::NAMES.iter().position(|n| *n == s) {
                Some(0) => InputType::String,
                Some(1) => InputType::Int,
                Some(2) => InputType::Number,
                Some(3) => InputType::Bool,
                Some(4) => InputType::List,
                Some(_) => InputType::Map,
                None => {
                    d.push(
                        Diagnostic::error(t.span, format!("unknown input type `{s}`")).maybe_help(
                            did_you_mean(s, InputType::NAMES.iter().copied()).or_else(|| {
                                Some(format!("types: {}", InputType::NAMES.join(", ")))
                            }),
                        ),
                    );
                    InputType::String
                }
            },
            _ => {
                d.push(wrong(t, "a type name", "`type`"));
                InputType::String
            }
        },
        None => InputType::String,
    };
    let default = f.get("default").map(|n| (json(n), n.span));
    if let Some((v, at)) = &default {
        let fits = match ty {
            InputType::String => !v.is_array() && !v.is_object(),
            InputType::Int => v.is_i64() || v.is_u64(),
            InputType::Number => v.is_number(),
            InputType::Bool => v.is_boolean(),
            InputType::List => v.is_array(),
            InputType::Map => v.is_object(),
        };
        if !fits && !v.is_null() {
            d.push(Diagnostic::error(
                *at,
                format!(
                    "the default of input `{name}` is not of its type `{}`",
                    InputType::NAMES[ty as usize]
                ),
            ));
        }
    }
    let default = default.map(|(v, _)| v);
    let required = f
        .get("required")
        .and_then(|n| boolean(d, n, "`required`"))
        .unwrap_or(false);
    let pattern = f
        .get("pattern")
        .and_then(|n| string(d, n, "`pattern`"))
        .and_then(|p| match regex_lite_check(&p.value) {
            Ok(()) => Some(p.value),
            Err(e) => {
                d.push(Diagnostic::error(p.span, format!("invalid pattern: {e}")));
                None
            }
        });
    let allowed = f
        .get("enum")
        .and_then(|n| list(d, n, "`enum`", |_, i| Some(json(i))));
    let description = f
        .get("description")
        .and_then(|n| text(d, n, "`description`"));
    f.finish(
        d,
        &[
            "type",
            "default",
            "required",
            "pattern",
            "enum",
            "description",
        ],
        &what,
    );
    Some(Input {
        ty,
        default,
        required,
        pattern,
        allowed,
        description,
        span: key,
    })
}

/// Compiles the pattern once at validation so a bad one is reported at its place.
fn regex_lite_check(p: &str) -> Result<(), String> {
    regex::Regex::new(p).map(|_| ()).map_err(|e| {
        e.to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

pub(crate) fn secret(
    d: &mut Diags,
    name: &str,
    key: crate::span::Span,
    n: &Node,
) -> Option<Secret> {
    check_ident(d, name, key, "secret");
    let what = format!("secret `{name}`");
    let mut f = map(d, n, &what)?;
    let env = f
        .get("env")
        .and_then(|n| string(d, n, "`env`"))
        .map(|s| s.value);
    let file = f
        .get("file")
        .and_then(|n| string(d, n, "`file`"))
        .map(|s| s.value);
    let optional = f
        .get("optional")
        .and_then(|n| boolean(d, n, "`optional`"))
        .unwrap_or(false);
    let description = f
        .get("description")
        .and_then(|n| text(d, n, "`description`"));
    if env.is_some() == file.is_some() && (f.has("env") == f.has("file")) {
        d.push(
            Diagnostic::error(
                f.span,
                format!("{what} needs exactly one of `env` or `file`"),
            )
            .with_help("e.g. `{ env: DB_PASSWORD }` or `{ file: /run/secrets/db_password }`"),
        );
    }
    f.finish(d, &["env", "file", "optional", "description"], &what);
    Some(Secret {
        env,
        file,
        optional,
        description,
        span: key,
    })
}

pub(crate) fn target(
    d: &mut Diags,
    name: &str,
    key: crate::span::Span,
    n: &Node,
) -> Option<Target> {
    check_ident(d, name, key, "target");
    let what = format!("target `{name}`");
    let mut f = map(d, n, &what)?;
    let kinds: Vec<&str> = TargetKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| f.has(k))
        .collect();
    if kinds.is_empty() {
        d.push(
            Diagnostic::error(f.span, format!("{what} has no kind")).with_help(
                "add one of `postgres:`, `sqlite:`, `mysql:`, `chroma:`, `http:` with its URL",
            ),
        );
    } else if kinds.len() > 1 {
        let at = f.key_span(kinds[1]).unwrap_or(f.span);
        d.push(Diagnostic::error(
            at,
            format!("{what} has two kinds: `{}` and `{}`", kinds[0], kinds[1]),
        ));
    }
    let mut url = |k: &str| f.get(k).and_then(|n| tmpl(d, n, &format!("the `{k}` URL")));
    let postgres = url("postgres");
    let sqlite = url("sqlite");
    let mysql = url("mysql");
    let chroma = url("chroma");
    let http = url("http");
    let password = f.get("password").and_then(|n| tmpl(d, n, "`password`"));
    let bearer = f.get("bearer").and_then(|n| tmpl(d, n, "`bearer`"));
    let basic = f.get("basic").and_then(|n| {
        let mut b = map(d, n, "`basic`")?;
        let username = match b.get("username") {
            Some(u) => tmpl(d, u, "`username`"),
            None => {
                missing(d, b.span, "username", "`basic`");
                None
            }
        };
        let password = b.get("password").and_then(|p| tmpl(d, p, "`password`"));
        b.finish(d, &["username", "password"], "`basic`");
        Some(BasicAuth {
            username: username?,
            password,
        })
    });
    let headers = f.get("headers").map_or_else(IndexMap::new, |n| {
        named(d, n, "`headers`", |d, _, _, v| tmpl(d, v, "a header value"))
    });
    let insecure = f.get("insecure").and_then(|n| boolean(d, n, "`insecure`"));
    let tenant = f.get("tenant").and_then(|n| tmpl(d, n, "`tenant`"));
    let database = f.get("database").and_then(|n| tmpl(d, n, "`database`"));
    let description = f
        .get("description")
        .and_then(|n| text(d, n, "`description`"));
    // Options that the target's kind would silently ignore are refused.
    if let [kind] = kinds.as_slice() {
        let fits: &[&str] = match *kind {
            "postgres" | "mysql" | "sqlite" => &["password"],
            "chroma" => &["bearer", "insecure", "tenant", "database"],
            _ => &["bearer", "basic", "headers", "insecure"],
        };
        for key in [
            "password", "bearer", "basic", "headers", "insecure", "tenant", "database",
        ] {
            if f.has(key) && !fits.contains(&key) {
                let at = f.key_span(key).unwrap_or(f.span);
                d.push(
                    Diagnostic::error(at, format!("`{key}` does not apply to a `{kind}` target"))
                        .with_help(format!("a `{kind}` target takes: {}", fits.join(", "))),
                );
            }
        }
    }
    f.finish(
        d,
        &[
            "postgres",
            "sqlite",
            "mysql",
            "chroma",
            "http",
            "password",
            "bearer",
            "basic",
            "headers",
            "insecure",
            "tenant",
            "database",
            "description",
        ],
        &what,
    );
    (!kinds.is_empty())
        .then_some(Target {
            postgres,
            sqlite,
            mysql,
            chroma,
            http,
            password,
            bearer,
            basic,
            headers,
            insecure,
            tenant,
            database,
            description,
            span: key,
        })
        .filter(|t| {
            [&t.postgres, &t.sqlite, &t.mysql, &t.chroma, &t.http]
                .iter()
                .any(|u| u.is_some())
        })
}

pub(crate) fn defaults(d: &mut Diags, n: &Node) -> Option<Defaults> {
    let mut f = map(d, n, "`defaults`")?;
    let timeout = f.get("timeout").and_then(|n| duration(d, n, "`timeout`"));
    let retry = f.get("retry").and_then(|n| retry(d, n));
    let on_failure = f.get("on_failure").and_then(|n| on_failure(d, n));
    let runs_on = f
        .get("runs_on")
        .and_then(|n| runs_on(d, n, f.key_span("runs_on").unwrap_or(n.span)));
    f.finish(
        d,
        &["timeout", "retry", "on_failure", "runs_on"],
        "`defaults`",
    );
    Some(Defaults {
        timeout,
        retry,
        on_failure,
        runs_on,
    })
}

/// `runs_on: { host: db1, zone: a }`: label names as a worker's `--labels` takes them, values
/// as text. `key` is the `runs_on` key, where later errors about it point.
pub(crate) fn runs_on(d: &mut Diags, n: &Node, key: crate::span::Span) -> Option<RunsOn> {
    if n.as_map().is_none() {
        d.push(
            wrong(n, "a map of labels", "`runs_on`")
                .with_help("write the labels a worker must have: `runs_on: { host: db1 }`"),
        );
        return None;
    }
    let mut ok = true;
    let labels = named(d, n, "`runs_on`", |d, name, at, v| {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            d.push(
                Diagnostic::error(at, format!("invalid label name `{name}` in `runs_on`"))
                    .with_help(
                        "use letters, digits, `-`, `_` or `.`, as `cairn worker --labels` does",
                    ),
            );
            ok = false;
            return None;
        }
        match v.scalar() {
            Some(Scalar::Str(s)) if s.contains("{{") || s.contains("{%") => {
                d.push(
                    Diagnostic::error(v.span, "`runs_on` labels are not templates")
                        .with_help("a step is routed by labels written as they are: `host: db1`"),
                );
                ok = false;
                None
            }
            Some(_) if !v.is_null() => v.text().map(str::to_string),
            _ => {
                d.push(wrong(v, "text", "a `runs_on` label"));
                ok = false;
                None
            }
        }
    });
    ok.then(|| RunsOn {
        labels: labels.into_iter().collect(),
        span: key,
    })
}

/// The largest `retry.backoff` factor.
pub const MAX_BACKOFF: f64 = 100.0;

pub(crate) fn retry(d: &mut Diags, n: &Node) -> Option<Retry> {
    let mut f = map(d, n, "`retry`")?;
    let attempts = match f.get("attempts") {
        Some(a) => uint(d, a, "`attempts`").and_then(|v| {
            if v.value == 0 {
                d.push(Diagnostic::error(
                    v.span,
                    "`attempts` counts the first try too: it must be at least 1",
                ));
                None
            } else {
                Some(v.value)
            }
        }),
        None => {
            missing(d, f.span, "attempts", "`retry`");
            None
        }
    };
    let delay = f
        .get("delay")
        .and_then(|n| duration(d, n, "`delay`"))
        .map(|s| s.value);
    let backoff = f
        .get("backoff")
        .and_then(|n| float(d, n, "`backoff`"))
        .and_then(|b| {
            // A factor above the bound overflows the delay to infinity within a few attempts;
            // `max_delay` is the way to say "wait long".
            if (1.0..=MAX_BACKOFF).contains(&b) {
                Some(b)
            } else {
                let at = f.key_span("backoff").unwrap_or(f.span);
                d.push(
                    Diagnostic::error(at, format!("`backoff` must be from 1.0 to {MAX_BACKOFF}"))
                        .with_help(
                            "1.0 keeps the delay constant, 2.0 doubles it; cap it with `max_delay`",
                        ),
                );
                None
            }
        });
    let max_delay = f
        .get("max_delay")
        .and_then(|n| duration(d, n, "`max_delay`"))
        .map(|s| s.value);
    let jitter = f.get("jitter").and_then(|n| boolean(d, n, "`jitter`"));
    f.finish(
        d,
        &["attempts", "delay", "backoff", "max_delay", "jitter"],
        "`retry`",
    );
    Some(Retry {
        attempts: attempts?,
        delay,
        backoff,
        max_delay,
        jitter,
    })
}

pub(crate) fn on_failure(d: &mut Diags, n: &Node) -> Option<OnFailure> {
    match n.scalar() {
        Some(Scalar::Str("abort")) => Some(OnFailure::Abort),
        Some(Scalar::Str("continue")) => Some(OnFailure::Continue),
        _ => {
            d.push(wrong(n, "`abort` or `continue`", "`on_failure`"));
            None
        }
    }
}

pub(crate) fn expect(d: &mut Diags, n: &Node) -> Option<Expect> {
    if n.as_seq().is_some() {
        return list(d, n, "`expect`", |d, i| {
            tmpl(d, i, "an `expect` expression")
        })
        .map(Expect::Exprs);
    }
    if n.as_map().is_some() {
        return Some(Expect::Fields(named(d, n, "`expect`", |_, _, _, v| {
            Some(tvalue(v))
        })));
    }
    d.push(wrong(
        n,
        "a map of result fields or a list of expressions",
        "`expect`",
    ));
    None
}
