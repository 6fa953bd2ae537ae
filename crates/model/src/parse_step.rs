//! Steps and their kinds: YAML node -> [`Step`], collecting every problem on the way.

use crate::diag::Diagnostic;
use crate::parse_values::{expect, on_failure, outputs, retry};
use crate::read::*;
use crate::runbook::*;
use crate::span::Spanned;
use crate::step::*;
use crate::yaml::{Node, Scalar};
use indexmap::IndexMap;

const STEP_COMMON: &[&str] = &[
    "id",
    "name",
    "description",
    "needs",
    "readonly",
    "when",
    "for_each",
    "concurrency",
    "timeout",
    "retry",
    "expect",
    "outputs",
    "on_failure",
    "idempotent",
    "env",
    "cwd",
    "detach",
    "keep_for_resume",
    "lock",
    "with",
    "runs_on",
];

pub(crate) fn steps(d: &mut Diags, n: &Node, what: &str) -> Vec<Step> {
    list(d, n, what, step).unwrap_or_default()
}

fn step(d: &mut Diags, n: &Node) -> Option<Step> {
    let mut f = map(d, n, "a step")?;
    let id = match f.get("id") {
        Some(i) => string(d, i, "a step `id`").inspect(|s| {
            let ok = s
                .value
                .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && s.value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !ok {
                d.push(
                    Diagnostic::error(s.span, format!("invalid step id `{}`", s.value))
                        .with_help("use lowercase letters, digits, `_` and `-`"),
                );
            }
        }),
        None => {
            d.push(
                Diagnostic::error(f.span, "step has no `id`")
                    .with_help("add `id: a_name` to the step"),
            );
            None
        }
    };
    let label = id
        .as_ref()
        .map_or("step".to_string(), |i| format!("step `{}`", i.value));
    let kinds: Vec<&str> = ACTION_KEYS.iter().copied().filter(|k| f.has(k)).collect();
    match kinds.as_slice() {
        [] => d.push(
            Diagnostic::error(
                id.as_ref().map_or(f.span, |i| i.span),
                format!("{label} has no kind"),
            )
            .with_help(format!("add one of: {}", ACTION_KEYS.join(", "))),
        ),
        [_] => {}
        [a, b, ..] => d.push(
            Diagnostic::error(
                f.key_span(b).unwrap_or(f.span),
                format!("{label} has two kinds: `{a}` and `{b}`"),
            )
            .with_help("a step does one thing: split it into two steps"),
        ),
    }
    let name = f.get("name").and_then(|n| text(d, n, "`name`"));
    let description = f
        .get("description")
        .and_then(|n| text(d, n, "`description`"));
    let needs = f
        .get("needs")
        .and_then(|n| list(d, n, "`needs`", |d, i| string(d, i, "a `needs` entry")));
    let readonly = f.get("readonly").and_then(|n| boolean(d, n, "`readonly`"));
    let when = f.get("when").and_then(|n| tmpl(d, n, "`when`"));
    let for_each = f.get("for_each").and_then(|n| {
        let v = tvalue(n);
        match &v.value {
            TValue::Seq(_) | TValue::Str(_) => Some(v),
            _ => {
                d.push(wrong(n, "a list or a template giving a list", "`for_each`"));
                None
            }
        }
    });
    let concurrency = f
        .get("concurrency")
        .and_then(|n| uint(d, n, "`concurrency`"))
        .and_then(|c| {
            if c.value == 0 {
                d.push(Diagnostic::error(
                    c.span,
                    "`concurrency` must be at least 1",
                ));
                return None;
            }
            Some(c)
        });
    if let (Some(c), None) = (&concurrency, &for_each) {
        d.push(
            Diagnostic::error(c.span, "`concurrency` needs `for_each`")
                .with_help("it limits how many items run at once"),
        );
    }
    let (timeout, timeout_template) = f
        .get("timeout")
        .map_or((None, None), |n| duration_or_template(d, n, "`timeout`"));
    let retry = f.get("retry").and_then(|n| retry(d, n));
    let expect = f.get("expect").and_then(|n| expect(d, n));
    let outputs = f
        .get("outputs")
        .map_or_else(IndexMap::new, |n| outputs(d, n));
    let on_failure = f.get("on_failure").and_then(|n| on_failure(d, n));
    let idempotent = f
        .get("idempotent")
        .and_then(|n| boolean(d, n, "`idempotent`"));
    let env = f.get("env").map_or_else(IndexMap::new, |n| {
        named(d, n, "`env`", |d, _, _, v| tmpl(d, v, "an `env` value"))
    });
    let cwd = f.get("cwd").and_then(|n| tmpl(d, n, "`cwd`"));
    let detach = f.get("detach").and_then(|n| boolean(d, n, "`detach`"));
    if detach.is_some() && !f.has("shell") && !f.has("argv") {
        let at = f.key_span("detach").unwrap_or(f.span);
        d.push(
            Diagnostic::error(at, "`detach` is only for `shell` and `argv` steps")
                .with_help("it leaves the processes a command starts running after the step"),
        );
    }
    let keep_for_resume = f
        .get("keep_for_resume")
        .and_then(|n| boolean(d, n, "`keep_for_resume`").map(|b| Spanned::new(b, n.span)));
    let lock = f.get("lock").and_then(|n| string(d, n, "`lock`"));
    let runs_on = f.get("runs_on").and_then(|n| {
        let key = f.key_span("runs_on").unwrap_or(n.span);
        crate::parse_values::runs_on(d, n, key)
    });
    if let Some(r) = runs_on.as_ref().filter(|r| r.routes())
        && !f.has("shell")
        && !f.has("argv")
    {
        d.push(
            Diagnostic::error(r.span, "`runs_on` is only for `shell` and `argv` steps").with_help(
                "other kinds run where the run runs; routing them to a worker is not built",
            ),
        );
    }
    // Every kind key present is parsed (so each reports its own problems); the step has a
    // kind only when exactly one was written and it parsed.
    let mut parsed: Vec<StepKind> = Vec::new();
    if let Some(k) = f.get("shell").and_then(|n| tmpl(d, n, "`shell`")) {
        parsed.push(StepKind::Shell(k));
    }
    if let Some(k) = f.get("argv").and_then(|n| argv(d, n)) {
        parsed.push(StepKind::Argv(k));
    }
    if let Some(k) = f.get("sql").and_then(|n| sql(d, n)) {
        parsed.push(StepKind::Sql(k));
    }
    if let Some(k) = f.get("http").and_then(|n| http(d, n)) {
        parsed.push(StepKind::Http(Box::new(k)));
    }
    if let Some(k) = f.get("chroma").and_then(|n| chroma(d, n)) {
        parsed.push(StepKind::Chroma(k));
    }
    if let Some(k) = f.get("check").and_then(|n| check(d, n)) {
        parsed.push(StepKind::Check(k));
    }
    if let Some(k) = f.get("approval").and_then(|n| approval(d, n)) {
        parsed.push(StepKind::Approval(k));
    }
    if let Some(k) = f.get("wait").and_then(|n| wait(d, n)) {
        parsed.push(StepKind::Wait(k));
    }
    if let Some(k) = f.get("report").and_then(|n| report(d, n)) {
        parsed.push(StepKind::Report(k));
    }
    let uses = f.get("uses").and_then(|n| string(d, n, "`uses`"));
    let with = f.get("with").map_or_else(IndexMap::new, |n| {
        named(d, n, "`with`", |_, _, _, v| Some(tvalue(v)))
    });
    if !f.has("uses") && f.has("with") {
        let at = f.key_span("with").unwrap_or(f.span);
        d.push(
            Diagnostic::error(at, "`with` is only for `uses` steps")
                .with_help("pass inputs to a sub-runbook: `uses: other.yaml` + `with:`"),
        );
    }
    if let Some(path) = uses {
        parsed.push(StepKind::Uses(UsesStep { path, with }));
    }
    let mut allowed: Vec<&str> = STEP_COMMON.to_vec();
    allowed.extend(ACTION_KEYS);
    let span = f.span;
    f.finish(d, &allowed, &label);
    // Exactly one kind, and it parsed: otherwise the problem is already reported.
    if kinds.len() != 1 || parsed.len() != 1 {
        return None;
    }
    Some(Step {
        id: id?,
        name,
        description,
        needs,
        readonly,
        when,
        for_each,
        concurrency,
        timeout,
        timeout_template,
        retry,
        expect,
        outputs,
        on_failure,
        idempotent,
        env,
        cwd,
        detach,
        keep_for_resume,
        lock,
        runs_on,
        kind: parsed.pop()?,
        span,
    })
}

fn argv(d: &mut Diags, n: &Node) -> Option<Vec<Tmpl>> {
    let items = list(d, n, "`argv`", |d, i| tmpl(d, i, "an `argv` item"))?;
    if items.is_empty() {
        d.push(
            Diagnostic::error(n.span, "`argv` is empty")
                .with_help("the first item is the program to run"),
        );
        return None;
    }
    Some(items)
}

fn sql(d: &mut Diags, n: &Node) -> Option<SqlStep> {
    let mut f = map(d, n, "`sql`")?;
    let target = f.get("target").and_then(|n| string(d, n, "`target`"));
    let query = f.get("query").and_then(|n| tmpl(d, n, "`query`"));
    if !f.has("target") {
        missing(d, f.span, "target", "`sql`");
    }
    if !f.has("query") {
        missing(d, f.span, "query", "`sql`");
    }
    f.finish(d, &["target", "query"], "`sql`");
    Some(SqlStep {
        target: target?,
        query: query?,
    })
}

fn http(d: &mut Diags, n: &Node) -> Option<HttpStep> {
    let mut f = map(d, n, "`http`")?;
    let methods: Vec<&str> = Method::KEYS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| f.has(k))
        .collect();
    if methods.is_empty() {
        d.push(Diagnostic::error(f.span, "`http` has no method").with_help(
            "add one of `get:`, `post:`, `put:`, `patch:`, `delete:`, `head:` with the URL",
        ));
    } else if methods.len() > 1 {
        let at = f.key_span(methods[1]).unwrap_or(f.span);
        d.push(Diagnostic::error(
            at,
            format!(
                "`http` has two methods: `{}` and `{}`",
                methods[0], methods[1]
            ),
        ));
    }
    let mut url = |k: &str| f.get(k).and_then(|n| tmpl(d, n, &format!("the `{k}` URL")));
    let (get, post, put, patch, delete, head) = (
        url("get"),
        url("post"),
        url("put"),
        url("patch"),
        url("delete"),
        url("head"),
    );
    let target = f.get("target").and_then(|n| string(d, n, "`target`"));
    let headers = f.get("headers").map_or_else(IndexMap::new, |n| {
        named(d, n, "`headers`", |d, _, _, v| tmpl(d, v, "a header value"))
    });
    let json = f.get("json").map(tvalue);
    let body = f.get("body").and_then(|n| tmpl(d, n, "`body`"));
    if let (Some(_), Some(b)) = (&json, &body) {
        d.push(
            Diagnostic::error(b.span, "`http` has both `json` and `body`")
                .with_help("send one of them"),
        );
    }
    let insecure = f.get("insecure").and_then(|n| boolean(d, n, "`insecure`"));
    let follow_redirects = f
        .get("follow_redirects")
        .and_then(|n| boolean(d, n, "`follow_redirects`"));
    let expect = f.get("expect").and_then(|n| expect(d, n));
    f.finish(
        d,
        &[
            "get",
            "post",
            "put",
            "patch",
            "delete",
            "head",
            "target",
            "headers",
            "json",
            "body",
            "insecure",
            "follow_redirects",
            "expect",
        ],
        "`http`",
    );
    let step = HttpStep {
        get,
        post,
        put,
        patch,
        delete,
        head,
        target,
        headers,
        json,
        body,
        insecure,
        follow_redirects,
        expect,
    };
    (methods.len() == 1
        && [
            &step.get,
            &step.post,
            &step.put,
            &step.patch,
            &step.delete,
            &step.head,
        ]
        .iter()
        .any(|u| u.is_some()))
    .then_some(step)
}

fn chroma(d: &mut Diags, n: &Node) -> Option<ChromaStep> {
    let mut f = map(d, n, "`chroma`")?;
    let target = match f.get("target") {
        Some(t) => string(d, t, "`target`"),
        None => {
            missing(d, f.span, "target", "`chroma`");
            None
        }
    };
    let names: Vec<&str> = CHROMA_ACTIONS.iter().map(|(a, _)| *a).collect();
    let mut present: Vec<&str> = names.iter().copied().filter(|a| f.has(a)).collect();
    // In written order, so the message names them as the reader sees them.
    present.sort_by_key(|a| f.key_span(a).map(|s| s.start));
    let mut action = None;
    match present.as_slice() {
        [] => d.push(
            Diagnostic::error(f.span, "`chroma` has no action")
                .with_help(format!("add one of: {}", names.join(", "))),
        ),
        [a, b, ..] => d.push(Diagnostic::error(
            f.key_span(b).unwrap_or(f.span),
            format!("`chroma` has two actions: `{a}` and `{b}`"),
        )),
        [a] => {
            let key_span = f.key_span(a).unwrap_or(f.span);
            if let Some(p) = f.get(a) {
                let params = CHROMA_ACTIONS
                    .iter()
                    .find(|(x, _)| x == a)
                    .map_or(&[][..], |(_, p)| *p);
                if chroma_params(d, a, params, p) {
                    action = Some((Spanned::new(a.to_string(), key_span), tvalue(p)));
                }
            }
        }
    }
    let mut allowed = vec!["target"];
    allowed.extend(&names);
    for a in &present {
        let _ = f.get(a);
    }
    f.finish(d, &allowed, "`chroma`");
    Some(ChromaStep {
        target: target?,
        action: action?,
    })
}

/// Checks an action's parameter keys: required present, none unknown.
fn chroma_params(d: &mut Diags, action: &str, params: &[&str], n: &Node) -> bool {
    let what = format!("chroma `{action}`");
    if n.is_null() && params.iter().all(|p| p.ends_with('?')) {
        return true;
    }
    let Some(mut f) = map(d, n, &what) else {
        return false;
    };
    let before = d.len();
    let keys: Vec<&str> = params.iter().map(|p| p.trim_end_matches('?')).collect();
    for p in params.iter().filter(|p| !p.ends_with('?')) {
        if f.get(p).is_none() {
            missing(d, f.span, p, &what);
        }
    }
    for k in &keys {
        f.get(k);
    }
    f.finish(d, &keys, &what);
    d.len() == before
}

fn check(d: &mut Diags, n: &Node) -> Option<CheckStep> {
    let mut f = map(d, n, "`check`")?;
    let value = match f.get("value") {
        Some(v) => tmpl(d, v, "`value`"),
        None => {
            missing(d, f.span, "value", "`check`");
            None
        }
    };
    let mut threshold = |key: &str| {
        let n = f.get(key)?;
        if n.as_map().is_none() && n.text().is_some_and(|t| t.contains("{{")) {
            return tmpl(d, n, &format!("`{key}`")).map(Limit::Templated);
        }
        match n
            .text()
            .filter(|_| n.as_map().is_none())
            .and_then(Threshold::parse)
        {
            Some(t) => Some(Limit::Fixed(Spanned::new(t, n.span))),
            None => {
                d.push(
                    Diagnostic::error(n.span, format!("invalid `{key}` threshold"))
                        .with_help("write a comparison and a number: `> 1000`, `>= 0.95`, `< 10`"),
                );
                None
            }
        }
    };
    let warning = threshold("warning");
    let critical = threshold("critical");
    if !f.has("warning") && !f.has("critical") {
        d.push(
            Diagnostic::error(f.span, "`check` has no threshold")
                .with_help("add `warning:` and/or `critical:`"),
        );
    }
    let unit = f.get("unit").and_then(|n| text(d, n, "`unit`"));
    let fail_on = f.get("fail_on").and_then(|n| match n.scalar() {
        Some(Scalar::Str("warning")) => Some(CheckState::Warning),
        Some(Scalar::Str("critical")) => Some(CheckState::Critical),
        Some(Scalar::Str("never")) => Some(CheckState::Never),
        _ => {
            d.push(wrong(n, "`warning`, `critical` or `never`", "`fail_on`"));
            None
        }
    });
    f.finish(
        d,
        &["value", "warning", "critical", "unit", "fail_on"],
        "`check`",
    );
    Some(CheckStep {
        value: value?,
        warning,
        critical,
        unit,
        fail_on,
    })
}

fn approval(d: &mut Diags, n: &Node) -> Option<ApprovalStep> {
    if n.as_map().is_none() {
        return tmpl(d, n, "`approval`").map(ApprovalStep::with_message);
    }
    let mut f = map(d, n, "`approval`")?;
    let message = match f.get("message") {
        Some(m) => tmpl(d, m, "`message`"),
        None => {
            missing(d, f.span, "message", "`approval`");
            None
        }
    };
    let timeout = f.get("timeout").and_then(|n| duration(d, n, "`timeout`"));
    let on_timeout = f.get("on_timeout").and_then(|n| match n.scalar() {
        Some(Scalar::Str("reject")) => Some(OnTimeout::Reject),
        Some(Scalar::Str("approve")) => Some(OnTimeout::Approve),
        _ => {
            d.push(wrong(n, "`reject` or `approve`", "`on_timeout`"));
            None
        }
    });
    let on_reject = f.get("on_reject").and_then(|n| match n.scalar() {
        Some(Scalar::Str("fail")) => Some(OnReject::Fail),
        Some(Scalar::Str("skip")) => Some(OnReject::Skip),
        _ => {
            d.push(wrong(n, "`fail` or `skip`", "`on_reject`"));
            None
        }
    });
    let mut names = |d: &mut Diags, key: &str, what: &str| {
        f.get(key)
            .and_then(|n| list(d, n, what, |d, i| string(d, i, what)))
            .unwrap_or_default()
    };
    let approvers = names(d, "approvers", "an `approvers` entry");
    let notify = names(d, "notify", "a `notify` entry");
    let min_approvals = f
        .get("min_approvals")
        .and_then(|n| uint(d, n, "`min_approvals`"));
    let allow_self_approval = f
        .get("allow_self_approval")
        .and_then(|n| boolean(d, n, "`allow_self_approval`"));
    f.finish(
        d,
        &[
            "message",
            "timeout",
            "on_timeout",
            "on_reject",
            "approvers",
            "min_approvals",
            "allow_self_approval",
            "notify",
        ],
        "`approval`",
    );
    Some(ApprovalStep {
        message: message?,
        timeout,
        on_timeout,
        on_reject,
        approvers,
        min_approvals,
        allow_self_approval,
        notify,
    })
}

fn wait(d: &mut Diags, n: &Node) -> Option<WaitStep> {
    let mut f = map(d, n, "`wait`")?;
    let until = f.get("until").and_then(|n| tmpl(d, n, "`until`"));
    let mut templated = Box::<WaitTemplates>::default();
    let (interval, t) = f
        .get("interval")
        .map_or((None, None), |n| duration_or_template(d, n, "`interval`"));
    templated.interval = t;
    let (timeout, t) = f
        .get("timeout")
        .map_or((None, None), |n| duration_or_template(d, n, "`timeout`"));
    templated.timeout = t;
    let (duration_, t) = f
        .get("duration")
        .map_or((None, None), |n| duration_or_template(d, n, "`duration`"));
    templated.duration = t;
    let kinds: Vec<&str> = POLL_KEYS.iter().copied().filter(|k| f.has(k)).collect();
    let mut polled: Vec<Poll> = Vec::new();
    if let Some(k) = f.get("shell").and_then(|n| tmpl(d, n, "`shell`")) {
        polled.push(Poll::Shell(k));
    }
    if let Some(k) = f.get("argv").and_then(|n| argv(d, n)) {
        polled.push(Poll::Argv(k));
    }
    if let Some(k) = f.get("sql").and_then(|n| sql(d, n)) {
        polled.push(Poll::Sql(k));
    }
    if let Some(k) = f.get("http").and_then(|n| http(d, n)) {
        polled.push(Poll::Http(Box::new(k)));
    }
    if let Some(k) = f.get("chroma").and_then(|n| chroma(d, n)) {
        polled.push(Poll::Chroma(k));
    }
    let help = "poll with `until:` + one of shell/argv/sql/http/chroma, or sleep with `duration:`";
    if kinds.len() > 1 {
        let at = f.key_span(kinds[1]).unwrap_or(f.span);
        d.push(Diagnostic::error(
            at,
            format!(
                "`wait` polls two actions: `{}` and `{}`",
                kinds[0], kinds[1]
            ),
        ));
    }
    match (f.has("until"), kinds.is_empty(), f.has("duration")) {
        (true, false, false) | (false, true, true) => {}
        (_, _, true) => d.push(
            Diagnostic::error(
                f.key_span("duration").unwrap_or(f.span),
                "`duration` cannot be combined with polling",
            )
            .with_help(help),
        ),
        (true, true, false) => d.push(
            Diagnostic::error(f.span, "`wait` has `until` but nothing to poll").with_help(help),
        ),
        (false, false, false) => {
            d.push(Diagnostic::error(f.span, "`wait` polls without `until`").with_help(help))
        }
        (false, true, false) => {
            d.push(Diagnostic::error(f.span, "`wait` has nothing to do").with_help(help))
        }
    }
    let mut allowed = vec!["until", "interval", "timeout", "duration"];
    allowed.extend(POLL_KEYS);
    f.finish(d, &allowed, "`wait`");
    // Two polled kinds are reported above; keep the first so the step's other problems
    // are still found.
    Some(WaitStep {
        until,
        interval,
        timeout,
        duration: duration_,
        templated,
        poll: polled.into_iter().next(),
    })
}

fn report(d: &mut Diags, n: &Node) -> Option<ReportStep> {
    let mut f = map(d, n, "`report`")?;
    let template = f.get("template").and_then(|n| string(d, n, "`template`"));
    let inline = f.get("inline").and_then(|n| tmpl(d, n, "`inline`"));
    let to = match f.get("to") {
        Some(t) => tmpl(d, t, "`to`"),
        None => {
            missing(d, f.span, "to", "`report`");
            None
        }
    };
    if f.has("template") == f.has("inline") {
        d.push(Diagnostic::error(
            f.span,
            "`report` needs exactly one of `template` (a file) or `inline` (the text)",
        ));
    }
    f.finish(d, &["template", "inline", "to"], "`report`");
    Some(ReportStep {
        template,
        inline,
        to: to?,
    })
}
