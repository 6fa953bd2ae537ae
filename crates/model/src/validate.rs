//! Semantic checks over a parsed runbook: ids, `needs`, cycles, targets, `uses` files, and a
//! static check of every template against the names in scope where it is written.
//!
//! Pure: reads only the runbook (and, for `uses`/`report`, whether the files exist).

use crate::dag::{Dag, Edge};
use crate::diag::{Diagnostic, did_you_mean};
use crate::read::Diags;
use crate::runbook::OnFailure;
use crate::runbook::{Expect, Runbook, TValue, Tmpl};
use crate::span::{LineIndex, Span};
use crate::step::{
    ApprovalStep, ChromaStep, HttpStep, Poll, SqlStep, Step, StepKind, UsesStep, accepts,
};
use cairn_template::{Kind, Templates};
use std::collections::HashMap;

/// Attributes of `run` in templates.
pub const RUN_FIELDS: &[&str] = &[
    "id",
    "started_at",
    "attempt",
    "step_key",
    "runbook",
    "dry_run",
    "dir",
];
/// Attributes of `targets.NAME`.
pub const TARGET_FIELDS: &[&str] = &["url", "kind", "name"];
/// Attributes of `steps.ID`.
pub const STEP_FIELDS: &[&str] = &[
    "status",
    "result",
    "outputs",
    "error",
    "started_at",
    "finished_at",
    "duration",
];
const ROOTS: &[&str] = &[
    "inputs", "vars", "secrets", "targets", "steps", "run", "env", "item", "index", "result",
];

/// Where a template is written decides what it may read.
#[derive(Clone, Copy)]
struct Scope {
    /// Index of the step (into the combined steps + finally list), if inside one.
    step: Option<usize>,
    /// `item` and `index` are defined.
    item: bool,
    /// `result` (the step's own result) is defined.
    result: bool,
    /// How many vars are defined (vars see only the ones before them).
    vars: usize,
    /// Steps are visible at all (not in vars and targets, which are evaluated before any step).
    steps: bool,
    /// `targets` is defined (not in vars and targets themselves: targets are rendered after vars).
    targets: bool,
    /// `run.step_key` is defined (inside a step only).
    step_key: bool,
    /// When set, the only roots a template may read here (an allowlist: notifier settings).
    only: Option<&'static [&'static str]>,
}

/// What a runbook's notifier settings may read: values known before the first step, and no
/// step's, run's or target's (a notice goes out of the run, so it carries only what the
/// runbook's author chose to send).
pub(crate) const NOTIFIER_ROOTS: &[&str] = &["secrets", "inputs", "env"];
/// What a `CAIRN_NOTIFIERS` file's notifier settings may read: no runbook's names.
pub(crate) const NOTIFIERS_FILE_ROOTS: &[&str] = &["secrets", "env"];

pub(crate) struct Validator<'a> {
    rb: &'a Runbook,
    index: LineIndex<'a>,
    templates: &'a Templates,
    ids: HashMap<&'a str, usize>,
    all: Vec<&'a Step>,
    dag: Option<&'a Dag>,
    pub d: Diags,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(rb: &'a Runbook, templates: &'a Templates) -> Self {
        let all: Vec<&Step> = rb.steps.iter().chain(&rb.finally).collect();
        Validator {
            rb,
            index: LineIndex::new(&rb.source),
            templates,
            ids: HashMap::new(),
            all,
            dag: None,
            d: Vec::new(),
        }
    }

    /// Ids unique over steps and finally; returns each step's dependencies for the DAG.
    pub(crate) fn ids_and_needs(&mut self) -> Vec<Vec<(usize, Edge)>> {
        for (i, s) in self.all.iter().enumerate() {
            if let Some(&first) = self.ids.get(s.id.value.as_str()) {
                let line = self.all[first].id.span.line;
                self.d.push(
                    Diagnostic::error(s.id.span, format!("duplicate step id `{}`", s.id.value))
                        .with_help(format!(
                            "`{}` is already the id of the step on line {line}",
                            s.id.value
                        )),
                );
            } else {
                self.ids.insert(&s.id.value, i);
            }
        }
        let main = self.rb.steps.len();
        let mut deps = Vec::with_capacity(main);
        for (i, s) in self.rb.steps.iter().enumerate() {
            let mut mine = Vec::new();
            match &s.needs {
                None if i > 0 => mine.push((i - 1, Edge::Follows)),
                None => {}
                Some(needs) => {
                    for n in needs {
                        match self.ids.get(n.value.as_str()) {
                            Some(&j) if j == i => self.d.push(Diagnostic::error(
                                n.span,
                                format!("step `{}` needs itself", s.id.value),
                            )),
                            Some(&j) if j >= main => self.d.push(
                                Diagnostic::error(
                                    n.span,
                                    format!(
                                        "step `{}` needs `{}`, a `finally` step",
                                        s.id.value, n.value
                                    ),
                                )
                                .with_help("`finally` steps run after all others"),
                            ),
                            Some(&j) => mine.push((j, Edge::Needs)),
                            None if self.rb.broken_ids.contains(&n.value) => {}
                            None => self.unknown_step(n.span, &s.id.value, &n.value),
                        }
                    }
                }
            }
            deps.push(mine);
        }
        for s in &self.rb.steps {
            if let Some(k) = &s.keep_for_resume {
                self.d.push(
                    Diagnostic::error(
                        k.span,
                        format!(
                            "step `{}`: `keep_for_resume` is only for `finally` steps",
                            s.id.value
                        ),
                    )
                    .with_help("a main step that succeeded is never run again by a resume"),
                );
            }
        }
        for s in &self.rb.finally {
            if let Some(n) = &s.needs {
                let at = n.first().map_or(s.id.span, |n| n.span);
                self.d.push(
                    Diagnostic::error(at, format!("`finally` step `{}` has `needs`", s.id.value))
                        .with_help("`finally` steps run in written order after the DAG ends"),
                );
            }
        }
        deps
    }

    fn unknown_step(&mut self, at: Span, from: &str, name: &str) {
        let ids: Vec<&str> = self.all.iter().map(|s| s.id.value.as_str()).collect();
        self.d.push(
            Diagnostic::error(at, format!("step `{from}` needs unknown step `{name}`"))
                .maybe_help(did_you_mean(name, ids)),
        );
    }

    /// Spell a cycle `a -> b -> c -> a` at the `needs` entry that closes it.
    pub(crate) fn cycle(&mut self, cycle: &[usize], deps: &[Vec<(usize, Edge)>]) {
        let names: Vec<&str> = cycle
            .iter()
            .map(|&i| self.rb.steps[i].id.value.as_str())
            .collect();
        let first = &self.rb.steps[cycle[0]];
        let second = cycle
            .get(1)
            .map_or("", |&i| self.rb.steps[i].id.value.as_str());
        let at = first
            .needs
            .as_ref()
            .and_then(|n| n.iter().find(|n| n.value == second))
            .map_or(first.id.span, |n| n.span);
        let implicit = cycle.windows(2).any(|w| {
            deps[w[0]]
                .iter()
                .any(|&(j, e)| j == w[1] && e == Edge::Follows)
        });
        let diag = Diagnostic::error(
            at,
            format!(
                "steps wait for each other in a cycle: {}",
                names.join(" -> ")
            ),
        )
        .with_help(if implicit {
            "each step waits for the next (a step without `needs` waits for the one written before it); remove one of these `needs` or add `needs: []`"
        } else {
            "each step waits for the next; remove one of these `needs`"
        });
        self.d.push(diag);
    }

    pub(crate) fn set_dag(&mut self, dag: &'a Dag) {
        self.dag = Some(dag);
    }

    /// Every template, target reference and file reference in the runbook.
    pub(crate) fn everything(&mut self) {
        let rb = self.rb;
        let before_steps = |vars| Scope {
            step: None,
            item: false,
            result: false,
            vars,
            steps: false,
            targets: false,
            step_key: false,
            only: None,
        };
        for (i, (_, v)) in rb.vars.iter().enumerate() {
            self.tvalue(&v.value, Kind::Text, before_steps(i));
        }
        for t in rb.targets.values() {
            let s = before_steps(rb.vars.len());
            for x in [
                &t.postgres,
                &t.sqlite,
                &t.mysql,
                &t.chroma,
                &t.http,
                &t.password,
                &t.bearer,
                &t.tenant,
                &t.database,
            ]
            .into_iter()
            .flatten()
            {
                self.tmpl(x, Kind::Text, s);
            }
            if let Some(b) = &t.basic {
                self.tmpl(&b.username, Kind::Text, s);
                if let Some(p) = &b.password {
                    self.tmpl(p, Kind::Text, s);
                }
            }
            for h in t.headers.values() {
                self.tmpl(h, Kind::Text, s);
            }
        }
        for i in 0..self.all.len() {
            self.step(i);
        }
        let end = Scope {
            step: None,
            item: false,
            result: false,
            vars: rb.vars.len(),
            steps: true,
            targets: true,
            step_key: false,
            only: None,
        };
        for v in rb.outputs.values() {
            self.tvalue(&v.value, Kind::Text, end);
        }
        self.notifiers(NOTIFIER_ROOTS);
    }

    /// Every template in the notifier settings, which may read only the roots in `only`.
    pub(crate) fn notifiers(&mut self, only: &'static [&'static str]) {
        let scope = Scope {
            step: None,
            item: false,
            result: false,
            vars: self.rb.vars.len(),
            steps: false,
            targets: false,
            step_key: false,
            only: Some(only),
        };
        for n in self.rb.notifiers.values() {
            for t in n.templates() {
                self.tmpl(t, Kind::Text, scope);
            }
        }
    }

    /// Who may answer a gate, and how many: rules that can be met, and a warning where a
    /// rejection would meet `on_failure: continue` (it does not let anything below run).
    fn gate_rules(&mut self, s: &Step, a: &ApprovalStep) {
        let mut users = std::collections::BTreeSet::new();
        let mut groups = 0usize;
        for who in &a.approvers {
            match who.value.strip_prefix("group:") {
                Some(g) if valid_account(g) => groups += 1,
                None if valid_account(&who.value) => {
                    if !users.insert(who.value.as_str()) {
                        self.d.push(Diagnostic::warning(
                            who.span,
                            format!("approver `{}` is listed twice", who.value),
                        ));
                    }
                }
                _ => self.d.push(
                    Diagnostic::error(
                        who.span,
                        format!("`{}` is not a user or a `group:NAME`", who.value),
                    )
                    .with_help("write a Unix user name (`alice`) or a Unix group (`group:dba`)"),
                ),
            }
        }
        if let Some(m) = &a.min_approvals {
            if m.value == 0 {
                self.d.push(
                    Diagnostic::error(m.span, "`min_approvals` must be at least 1")
                        .with_help("remove the gate if nobody needs to approve"),
                );
            } else if groups == 0 && !a.approvers.is_empty() && m.value as usize > users.len() {
                self.d.push(
                    Diagnostic::error(
                        m.span,
                        format!(
                            "`min_approvals: {}` cannot be met by {} listed approver{}",
                            m.value,
                            users.len(),
                            if users.len() == 1 { "" } else { "s" }
                        ),
                    )
                    .with_help("list more approvers, or a `group:NAME`"),
                );
            }
        }
        // A gate is answered, not attempted: its deadline is `approval.timeout`, and a retry
        // would ask again after a "no".
        if let Some(at) = s
            .timeout
            .as_ref()
            .map(|t| t.span)
            .or(s.timeout_template.as_ref().map(|t| t.span))
        {
            self.d.push(
                Diagnostic::error(
                    at,
                    format!("approval `{}` has a step `timeout`", s.id.value),
                )
                .with_help("a gate's deadline is `approval: { timeout: 30m, on_timeout: reject }`"),
            );
        }
        if s.retry.is_some() {
            self.d.push(
                Diagnostic::error(
                    s.id.span,
                    format!(
                        "approval `{}` has `retry`: a gate is never retried",
                        s.id.value
                    ),
                )
                .with_help("remove `retry`; `cairn resume RUN --rerun GATE` asks again"),
            );
        }
        let on_failure = s
            .on_failure
            .or(self.rb.defaults.as_ref().and_then(|d| d.on_failure));
        // A gate that says what its "no" does (`on_reject`) has been thought through.
        if on_failure == Some(OnFailure::Continue) && a.on_reject.is_none() {
            let from = if s.on_failure.is_some() {
                "its `on_failure: continue`"
            } else {
                "`on_failure: continue` from `defaults`"
            };
            self.d.push(
                Diagnostic::warning(
                    a.message.span,
                    format!(
                        "approval `{}` has {from}: a rejection still never lets what needs the gate run",
                        s.id.value
                    ),
                )
                .with_help("write `on_reject: skip` to skip what needs the gate and let the other branches go on"),
            );
        }
    }

    fn step(&mut self, i: usize) {
        let s = self.all[i];
        if let StepKind::Approval(a) = &s.kind {
            // A gate per item cannot be answered (approvals name steps), and `finally` runs
            // when the run ends, after which nothing can wait.
            if s.for_each.is_some() {
                self.d.push(
                    Diagnostic::error(
                        a.message.span,
                        format!("approval step `{}` has `for_each`", s.id.value),
                    )
                    .with_help("approve once, before the step that fans out"),
                );
            }
            if i >= self.rb.steps.len() {
                self.d.push(
                    Diagnostic::error(
                        a.message.span,
                        format!("`finally` step `{}` is an approval", s.id.value),
                    )
                    .with_help("`finally` runs as the run ends; put the gate among the steps"),
                );
            }
            self.gate_rules(s, a);
        }
        let base = Scope {
            step: Some(i),
            item: false,
            result: false,
            vars: self.rb.vars.len(),
            steps: true,
            targets: true,
            step_key: true,
            only: None,
        };
        if let Some(fe) = &s.for_each {
            if let TValue::Str(t) = &fe.value
                && !t.src.contains("{{")
            {
                self.d.push(
                    Diagnostic::error(
                        t.span,
                        "`for_each` must be a list or a template giving a list",
                    )
                    .with_help("write a YAML list `[a, b]` or `\"{{ steps.q.result.rows }}\"`"),
                );
            }
            self.tvalue(&fe.value, Kind::Text, base);
        }
        let inner = Scope {
            item: s.for_each.is_some(),
            ..base
        };
        // `when` is decided once for the whole step, before any `for_each` item.
        if let Some(w) = &s.when {
            self.tmpl(w, Kind::Expr, base);
        }
        for v in s.env.values() {
            self.tmpl(v, Kind::Text, inner);
        }
        if let Some(c) = &s.cwd {
            self.tmpl(c, Kind::Text, inner);
        }
        if let Some(t) = &s.timeout_template {
            self.tmpl(t, Kind::Text, inner);
        }
        self.kind(&s.kind, inner);
        let with_result = Scope {
            result: true,
            ..inner
        };
        if let Some(e) = &s.expect {
            self.expect(e, with_result);
        }
        for v in s.outputs.values() {
            self.tvalue(&v.value, Kind::Text, with_result);
        }
    }

    fn expect(&mut self, e: &Expect, scope: Scope) {
        match e {
            Expect::Exprs(xs) => {
                for x in xs {
                    self.tmpl(x, Kind::Expr, scope);
                }
            }
            Expect::Fields(fs) => {
                for v in fs.values() {
                    self.tvalue(&v.value, Kind::Text, scope);
                }
            }
        }
    }

    fn kind(&mut self, k: &StepKind, scope: Scope) {
        match k {
            StepKind::Shell(t) => self.tmpl(t, Kind::Shell, scope),
            StepKind::Argv(items) => self.argv(items, scope),
            StepKind::Sql(q) => self.sql(q, scope),
            StepKind::Http(h) => self.http(h, scope),
            StepKind::Chroma(c) => self.chroma(c, scope),
            StepKind::Check(c) => {
                self.tmpl(&c.value, Kind::Text, scope);
                for limit in [&c.warning, &c.critical].into_iter().flatten() {
                    if let crate::step::Limit::Templated(t) = limit {
                        self.tmpl(t, Kind::Text, scope);
                    }
                }
            }
            StepKind::Approval(a) => self.tmpl(&a.message, Kind::Text, scope),
            StepKind::Wait(w) => {
                match &w.poll {
                    Some(Poll::Shell(t)) => self.tmpl(t, Kind::Shell, scope),
                    Some(Poll::Argv(items)) => self.argv(items, scope),
                    Some(Poll::Sql(q)) => self.sql(q, scope),
                    Some(Poll::Http(h)) => self.http(h, scope),
                    Some(Poll::Chroma(c)) => self.chroma(c, scope),
                    None => {}
                }
                if let Some(u) = &w.until {
                    self.tmpl(
                        u,
                        Kind::Expr,
                        Scope {
                            result: true,
                            ..scope
                        },
                    );
                }
                let t = &w.templated;
                for d in [&t.interval, &t.timeout, &t.duration].into_iter().flatten() {
                    self.tmpl(d, Kind::Text, scope);
                }
            }
            StepKind::Report(r) => {
                self.tmpl(&r.to, Kind::Text, scope);
                if let Some(i) = &r.inline {
                    self.tmpl(i, Kind::Text, scope);
                }
                if let Some(t) = &r.template {
                    let path = self.relative(&t.value);
                    match crate::source::read(&path) {
                        Ok(text) => {
                            if let Err(e) = self.templates.analyze(&text, Kind::Text) {
                                self.d.push(Diagnostic::error(
                                    t.span,
                                    format!("report template {}: {e}", path.display()),
                                ));
                            }
                        }
                        Err(e) => self
                            .d
                            .push(Diagnostic::error(t.span, format!("report template: {e}"))),
                    }
                }
            }
            StepKind::Uses(u) => {
                for v in u.with.values() {
                    self.tvalue(&v.value, Kind::Text, scope);
                }
                self.uses(u);
            }
        }
    }

    fn argv(&mut self, items: &[Tmpl], scope: Scope) {
        // `[bash, -c, SCRIPT]`: the script follows the shell's rules.
        let written: Vec<&str> = items.iter().map(|t| t.src.as_str()).collect();
        let script_at = cairn_template::shell_script_index(&written);
        for (i, t) in items.iter().enumerate() {
            let kind = if Some(i) == script_at {
                Kind::Shell
            } else {
                Kind::Text
            };
            self.tmpl(t, kind, scope);
        }
        // Once an argv runs a shell, a value may only be a whole element.
        let whole = |i: usize| {
            items.get(i).is_some_and(|t| {
                let s = t.src.trim();
                s.starts_with("{{")
                    && s.ends_with("}}")
                    && s.matches("{{").count() == 1
                    && !s.contains("{%")
            })
        };
        for r in cairn_template::argv_refusals(&written, script_at, whole) {
            let Some(t) = items.get(r.element) else {
                continue;
            };
            let at = match t.src.find("{{") {
                Some(start) => {
                    let end = t.src[start..]
                        .find("}}")
                        .map_or(t.src.len(), |e| start + e + 2);
                    self.locate(t, start, end - start)
                }
                None => t.span,
            };
            let mut message = r.message();
            if let Some(runner) = r.runner {
                message.push_str(&format!(" (argv[{runner}])"));
            }
            self.d
                .push(Diagnostic::error(at, message).with_help(cairn_template::ArgvRefusal::HELP));
        }
    }

    fn sql(&mut self, q: &SqlStep, scope: Scope) {
        self.target(&q.target.value, q.target.span, "sql");
        // An unknown target is reported above; lex its query as PostgreSQL meanwhile.
        let dialect = self
            .rb
            .targets
            .get(&q.target.value)
            .and_then(|t| t.kind().0.sql_dialect())
            .unwrap_or(cairn_template::Dialect::Postgres);
        self.tmpl(&q.query, Kind::Sql(dialect), scope);
        self.lone_statements(&q.query, dialect);
    }

    fn http(&mut self, h: &HttpStep, scope: Scope) {
        if let Some(t) = &h.target {
            self.target(&t.value, t.span, "http");
        } else {
            let url = h.method().1;
            let u = url.src.trim_start();
            if !u.contains("://") && !u.starts_with("{{") {
                self.d.push(
                    Diagnostic::error(url.span, format!("`{}` is not an absolute URL", url.src))
                        .with_help("write `http(s)://host/...`, or name an `http` target with `target:` to join a path to its URL"),
                );
            } else if hole_in_authority(u) && (carries_more_than_a_url(h) || u.contains('@')) {
                self.d.push(
                    Diagnostic::error(
                        url.span,
                        format!(
                            "a value decides where this request goes (a `{{{{ }}}}` in the scheme, host or port of `{}`), and the request carries headers, a body or credentials that it would take there",
                            url.src
                        ),
                    )
                    .with_help("name an `http` target with `target:` and give the path here (a target's URL is the runbook's), or write the scheme, host and port literally"),
                );
            }
        }
        self.tmpl(h.method().1, Kind::Text, scope);
        for v in h.headers.values() {
            self.tmpl(v, Kind::Text, scope);
        }
        if let Some(j) = &h.json {
            self.tvalue(&j.value, Kind::Text, scope);
        }
        if let Some(b) = &h.body {
            self.tmpl(b, Kind::Text, scope);
        }
        if let Some(e) = &h.expect {
            self.expect(
                e,
                Scope {
                    result: true,
                    ..scope
                },
            );
        }
    }

    fn chroma(&mut self, c: &ChromaStep, scope: Scope) {
        self.target(&c.target.value, c.target.span, "chroma");
        self.tvalue(&c.action.1.value, Kind::Text, scope);
    }

    fn relative(&self, p: &str) -> std::path::PathBuf {
        let base = self.rb.path.parent().unwrap_or(std::path::Path::new("."));
        base.join(p)
    }

    /// The sub-runbook must exist and take the `with:` inputs given to it.
    fn uses(&mut self, step: &UsesStep) {
        let u = &step.path;
        let path = self.relative(&u.value);
        let source = match crate::source::read(&path) {
            Ok(source) => source,
            Err(e) => {
                self.d.push(
                    Diagnostic::error(u.span, format!("`uses`: {e}"))
                        .with_help("`uses` paths are relative to this runbook's folder"),
                );
                return;
            }
        };
        let (sub, diags) = crate::parse_only(&path, &source);
        let Some(sub) = sub else {
            if diags.has_errors() {
                self.d.push(
                    Diagnostic::error(
                        u.span,
                        format!("the runbook `{}` is invalid", path.display()),
                    )
                    .with_help(format!("run `cairn validate {}`", path.display())),
                );
            }
            return;
        };
        match crate::uses::check(&self.rb.path, &path, &sub) {
            Some(crate::uses::Problem::Cycle(chain)) => self.d.push(
                Diagnostic::error(u.span, format!("`uses` cycle: {}", chain.join(" -> ")))
                    .with_help("a runbook cannot use itself, directly or through other runbooks"),
            ),
            Some(crate::uses::Problem::TooDeep(chain)) => self.d.push(
                Diagnostic::error(
                    u.span,
                    format!(
                        "`uses` nested deeper than {} runbooks: {}",
                        crate::uses::MAX_USES_DEPTH,
                        chain.join(" -> ")
                    ),
                )
                .with_help("flatten the chain: use the deeper runbooks from a higher one"),
            ),
            None => {}
        }
        let names: Vec<&str> = sub.inputs.keys().map(String::as_str).collect();
        for (k, v) in &step.with {
            if !sub.inputs.contains_key(k) {
                self.d.push(
                    Diagnostic::error(v.span, format!("`{}` has no input `{k}`", sub.name.value))
                        .maybe_help(did_you_mean(k, names.iter().copied())),
                );
            }
        }
        for (k, i) in &sub.inputs {
            if i.required && i.default.is_none() && !step.with.contains_key(k) {
                self.d.push(
                    Diagnostic::error(
                        u.span,
                        format!("`{}` requires the input `{k}`", sub.name.value),
                    )
                    .with_help(format!("add `{k}:` under `with:`")),
                );
            }
        }
    }

    fn target(&mut self, name: &str, at: Span, kind: &str) {
        match self.rb.targets.get(name) {
            Some(t) => {
                let (tk, _) = t.kind();
                if !accepts(kind, tk) {
                    let want = match kind {
                        "sql" => "a `postgres`, `sqlite` or `mysql` target",
                        "chroma" => "a `chroma` target",
                        _ => "an `http` target",
                    };
                    self.d.push(Diagnostic::error(
                        at,
                        format!(
                            "target `{name}` is a `{}` target; a `{kind}` step needs {want}",
                            tk.as_str()
                        ),
                    ));
                }
            }
            None => {
                let names: Vec<&str> = self.rb.targets.keys().map(String::as_str).collect();
                let help = did_you_mean(name, names.iter().copied()).or_else(|| {
                    Some(if names.is_empty() {
                        "declare it under `targets:`".to_string()
                    } else {
                        format!("targets: {}", names.join(", "))
                    })
                });
                self.d.push(
                    Diagnostic::error(at, format!("unknown target `{name}`")).maybe_help(help),
                );
            }
        }
    }

    fn tvalue(&mut self, v: &TValue, kind: Kind, scope: Scope) {
        match v {
            TValue::Str(t) => self.tmpl(t, kind, scope),
            TValue::Seq(items) => {
                for i in items {
                    self.tvalue(&i.value, kind, scope);
                }
            }
            TValue::Map(entries) => {
                for (_, v) in entries {
                    self.tvalue(&v.value, kind, scope);
                }
            }
            _ => {}
        }
    }

    /// Byte range of `offset..offset+len` of the template, in the file.
    fn locate(&self, t: &Tmpl, offset: usize, len: usize) -> Span {
        let raw = self
            .rb
            .source
            .get(t.span.start..t.span.end.max(t.span.start))
            .unwrap_or("");
        if let Some(needle) = t.src.get(offset..offset + len).filter(|n| !n.is_empty()) {
            // The n-th occurrence in the template is the n-th in the file text (escapes aside).
            let nth = t.src[..offset].matches(needle).count();
            if let Some((pos, _)) = raw.match_indices(needle).nth(nth) {
                return self
                    .index
                    .span_bytes(t.span.start + pos, t.span.start + pos + needle.len());
            }
        }
        if raw.len() == t.src.len() {
            return self.index.span_bytes(
                t.span.start + offset.min(raw.len()),
                t.span.start + (offset + len).min(raw.len()),
            );
        }
        t.span
    }

    /// A statement PostgreSQL refuses inside a transaction block (`VACUUM`, `CREATE INDEX
    /// CONCURRENTLY`...) in a query of several statements, which runs as one: it can never
    /// work, so it is an error at the statement.
    fn lone_statements(&mut self, query: &Tmpl, dialect: cairn_template::Dialect) {
        for l in cairn_template::outside_transaction(dialect, &query.src) {
            let at = self.locate(query, l.offset, l.len);
            let message = if l.in_loop {
                format!(
                    "`{}` cannot run inside a transaction block, and a `{{% for %}}` loop repeats it into a script that runs as one",
                    l.what
                )
            } else {
                format!(
                    "`{}` cannot run inside a transaction block, and a query of several statements runs as one",
                    l.what
                )
            };
            self.d.push(Diagnostic::error(at, message).with_help(
                "give it a `sql` step of its own, one statement (repeat it over tables with `for_each`)",
            ));
        }
    }

    fn tmpl(&mut self, t: &Tmpl, kind: Kind, scope: Scope) {
        if kind != Kind::Expr
            && !t.src.contains("{{")
            && !t.src.contains("{%")
            && !t.src.contains("{#")
        {
            return;
        }
        let analysis = match self.templates.analyze(&t.src, kind) {
            Ok(a) => a,
            Err(e) => {
                let at = match e.offset {
                    Some(o) => self.locate(t, o, e.len.max(1)),
                    None => t.span,
                };
                self.d.push(Diagnostic::error(
                    at,
                    format!("template error: {}", e.message),
                ));
                return;
            }
        };
        for r in &analysis.raw_uses {
            let at = self.locate(t, *r, 3);
            if matches!(kind, Kind::Sql(_)) {
                self.d.push(
                    Diagnostic::error(at, "`| raw` is not allowed in SQL").with_help(
                        "values are bound as parameters; quote an identifier with `| ident`",
                    ),
                );
            } else if kind == Kind::Shell {
                self.d.push(
                    Diagnostic::warning(
                        at,
                        "`| raw` puts this value into the shell command unquoted",
                    )
                    .with_help("make sure it can never hold text from outside the runbook"),
                );
            }
        }
        for r in &analysis.if_without_else {
            let at = self.locate(t, r.start, r.len());
            let written = t.src.get(r.clone()).unwrap_or("x if condition").trim();
            self.d.push(
                Diagnostic::error(
                    at,
                    "`x if condition` without `else` has no value when the condition is false",
                )
                .with_help(format!("add an `else`: `{written} else ''`")),
            );
        }
        for r in &analysis.refused {
            let int_input = r
                .unless_int_input
                .as_ref()
                .and_then(|name| self.rb.inputs.get(name))
                .is_some_and(|input| input.ty == crate::runbook::InputType::Int);
            if int_input {
                continue;
            }
            let at = self.locate(t, r.offset, r.len);
            let mut message = r.message.clone();
            if let Some(start) = r.construct_at {
                let c = self.locate(t, start, 1);
                message.push_str(&format!(" (it starts at {}:{})", c.line, c.col));
            }
            self.d
                .push(Diagnostic::error(at, message).with_help(r.help.clone()));
        }
        for f in &analysis.unknown_filters {
            let name = f.path.join(".");
            let at = self.locate(t, f.offset, f.len);
            let help = did_you_mean(&name, self.templates.filter_names().iter().copied());
            self.d
                .push(Diagnostic::error(at, format!("unknown filter `{name}`")).maybe_help(help));
        }
        for n in &analysis.names {
            if let Some((msg, help)) = self.check_name(&n.path, scope) {
                let at = self.locate(t, n.offset, n.len);
                self.d.push(Diagnostic::error(at, msg).maybe_help(help));
            }
        }
    }

    /// `None` when the name is defined where it is used; else the message and a hint.
    fn check_name(&self, path: &[String], scope: Scope) -> Option<(String, Option<String>)> {
        let root = path.first()?.as_str();
        let attr = path.get(1).map(String::as_str);
        let full = path.join(".");
        let undefined = |what: &str, names: Vec<&str>, name: &str| {
            let help = did_you_mean(name, names.iter().copied()).or_else(|| {
                Some(if names.is_empty() {
                    format!("no {what} declared")
                } else {
                    format!("{what}: {}", names.join(", "))
                })
            });
            Some((format!("undefined name `{full}`"), help))
        };
        let rb = self.rb;
        if let Some(only) = scope.only
            && !only.contains(&root)
            && !self.templates.function_names().contains(&root)
        {
            return Some((
                format!("`{full}` is not available in notifier settings"),
                Some(format!(
                    "notifier settings may read only: {}",
                    only.join(", ")
                )),
            ));
        }
        match root {
            "env" => None,
            "inputs" => attr.filter(|a| !rb.inputs.contains_key(*a)).and_then(|a| {
                undefined("inputs", rb.inputs.keys().map(String::as_str).collect(), a)
            }),
            "secrets" => attr.filter(|a| !rb.secrets.contains_key(*a)).and_then(|a| {
                undefined(
                    "secrets",
                    rb.secrets.keys().map(String::as_str).collect(),
                    a,
                )
            }),
            "vars" => {
                let visible: Vec<&str> = rb
                    .vars
                    .keys()
                    .take(scope.vars)
                    .map(String::as_str)
                    .collect();
                let a = attr?;
                if visible.contains(&a) {
                    return None;
                }
                if rb.vars.contains_key(a) {
                    return Some((
                        format!("`vars.{a}` is used before it is defined"),
                        Some("vars are evaluated in written order".into()),
                    ));
                }
                undefined("vars", visible, a)
            }
            "targets" if !scope.targets => Some((
                "`targets` is not available here".into(),
                Some(
                    "vars and targets are rendered before targets exist; use the value itself"
                        .into(),
                ),
            )),
            "targets" => {
                let a = attr?;
                if !rb.targets.contains_key(a) {
                    return undefined(
                        "targets",
                        rb.targets.keys().map(String::as_str).collect(),
                        a,
                    );
                }
                let field = path.get(2)?;
                (!TARGET_FIELDS.contains(&field.as_str())).then(|| {
                    (
                        format!("targets have no attribute `{field}`"),
                        did_you_mean(field, TARGET_FIELDS.iter().copied())
                            .or(Some(format!("use one of: {}", TARGET_FIELDS.join(", ")))),
                    )
                })
            }
            "run" if attr == Some("step_key") && !scope.step_key => Some((
                "`run.step_key` is only defined inside a step".into(),
                Some("it names one step (and item) of one run".into()),
            )),
            "run" => {
                let a = attr?;
                (!RUN_FIELDS.contains(&a)).then(|| {
                    (
                        format!("`run` has no attribute `{a}`"),
                        did_you_mean(a, RUN_FIELDS.iter().copied())
                            .or(Some(format!("use one of: {}", RUN_FIELDS.join(", ")))),
                    )
                })
            }
            "item" | "index" if scope.item => None,
            "item" | "index" => Some((
                format!("`{root}` is only defined in a `for_each` step"),
                Some("add `for_each:` to the step".into()),
            )),
            "result" if scope.result => None,
            "result" => Some((
                "`result` is only defined in the step's own `outputs`, `expect` and `wait.until`"
                    .into(),
                Some("read another step's result as `steps.ID.result`".into()),
            )),
            "steps" => self.check_step_ref(path, scope),
            _ if self.templates.function_names().contains(&root) || root == "loop" => None,
            _ => {
                let mut names: Vec<&str> = ROOTS.to_vec();
                names.extend(rb.inputs.keys().map(String::as_str));
                let help = if rb.inputs.contains_key(root) {
                    Some(format!("did you mean `inputs.{root}`?"))
                } else if rb.vars.contains_key(root) {
                    Some(format!("did you mean `vars.{root}`?"))
                } else {
                    did_you_mean(root, ROOTS.iter().copied())
                        .or(Some(format!("names in scope: {}", ROOTS.join(", "))))
                };
                Some((format!("undefined name `{full}`"), help))
            }
        }
    }

    fn check_step_ref(&self, path: &[String], scope: Scope) -> Option<(String, Option<String>)> {
        let id = path.get(1)?;
        if !scope.steps {
            return Some((
                format!("`steps.{id}` is not available here"),
                Some("vars and targets are evaluated before any step runs".into()),
            ));
        }
        let Some(&j) = self.ids.get(id.as_str()) else {
            if self.rb.broken_ids.contains(id) {
                return None;
            }
            let ids: Vec<&str> = self.all.iter().map(|s| s.id.value.as_str()).collect();
            return Some((
                format!("unknown step `{id}` in `{}`", path.join(".")),
                did_you_mean(id, ids),
            ));
        };
        let main = self.rb.steps.len();
        if let Some(i) = scope.step {
            let visible = if i >= main {
                // finally: every main step has ended, and earlier finally steps too.
                j < i
            } else {
                j < main && self.dag.is_some_and(|d| d.is_ancestor(j, i))
            };
            if !visible {
                let me = &self.all[i].id.value;
                let msg = if i == j {
                    format!("step `{me}` reads its own `steps.{id}`")
                } else {
                    format!(
                        "step `{me}` reads `steps.{id}`, but `{id}` is not among the steps it waits for"
                    )
                };
                let help = if i == j {
                    "use `result` for the step's own result".to_string()
                } else if let Some(chain) = self.dag.and_then(|d| wait_chain(d, i, j)) {
                    // `needs` would close a cycle: say so instead of suggesting it.
                    let chain: Vec<&str> = chain
                        .iter()
                        .map(|&k| self.all[k].id.value.as_str())
                        .collect();
                    format!(
                        "`{id}` already waits for `{me}` ({}), so `{me}` cannot wait for `{id}`; \
read `steps.{id}` in a step that runs after `{id}`",
                        chain.join(" -> ")
                    )
                } else {
                    format!("add `{id}` to `needs` of `{me}`")
                };
                return Some((msg, Some(help)));
            }
        } else if j >= main {
            return Some((
                format!("the runbook's outputs cannot read the `finally` step `{id}`"),
                None,
            ));
        }
        let field = path.get(2)?;
        if !STEP_FIELDS.contains(&field.as_str()) {
            return Some((
                format!("steps have no attribute `{field}`"),
                did_you_mean(field, STEP_FIELDS.iter().copied())
                    .or(Some(format!("use one of: {}", STEP_FIELDS.join(", ")))),
            ));
        }
        if field == "outputs" {
            let out = path.get(3)?;
            let step = self.all[j];
            if !step.outputs.contains_key(out) {
                let names: Vec<&str> = step.outputs.keys().map(String::as_str).collect();
                let help = did_you_mean(out, names.iter().copied()).or_else(|| {
                    Some(if names.is_empty() {
                        format!("step `{id}` declares no `outputs`")
                    } else {
                        format!("outputs of `{id}`: {}", names.join(", "))
                    })
                });
                return Some((format!("step `{id}` has no output `{out}`"), help));
            }
        }
        None
    }
}

/// The steps from `from` down to `to` when `to` waits for `from` (directly or not), each one
/// waiting for the one before it: `[from, ..., to]`.
fn wait_chain(dag: &Dag, from: usize, to: usize) -> Option<Vec<usize>> {
    if from >= dag.len() || to >= dag.len() || !dag.is_ancestor(from, to) {
        return None;
    }
    let mut chain = vec![to];
    let mut at = to;
    while at != from {
        at = dag
            .parents(at)
            .into_iter()
            .find(|&p| p == from || dag.is_ancestor(from, p))?;
        chain.push(at);
    }
    chain.reverse();
    Some(chain)
}

/// A user or group name: a Unix account name, or a login such as `alice@example.com`.
fn valid_account(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// Whether template text (`{{`, `{%`, `{#`) stands in a URL's scheme, user info, host or port:
/// before the literal `://` and the authority after it have ended at `/`, `?` or `#`.
fn hole_in_authority(url: &str) -> bool {
    let Some(hole) = ["{{", "{%", "{#"].iter().filter_map(|t| url.find(t)).min() else {
        return false;
    };
    let Some(scheme_end) = url.find("://") else {
        return true;
    };
    let after = scheme_end + 3;
    let authority_end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    hole < authority_end
}

/// Whether an http step sends anything besides its request line: headers, a body, JSON.
fn carries_more_than_a_url(h: &HttpStep) -> bool {
    !h.headers.is_empty() || h.body.is_some() || h.json.is_some()
}
