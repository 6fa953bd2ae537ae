//! Malformed runbooks: each refused at the exact line and column, with the exact message.

use cairn_model::{Severity, check};

struct Case {
    name: &'static str,
    yaml: &'static str,
    line: u32,
    col: u32,
    message: &'static str,
}

const fn case(
    name: &'static str,
    yaml: &'static str,
    line: u32,
    col: u32,
    message: &'static str,
) -> Case {
    Case {
        name,
        yaml,
        line,
        col,
        message,
    }
}

const CASES: &[Case] = &[
    case(
        "runs_on on a sql step",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://h/d\" }\nsteps:\n  - id: q\n    runs_on: { host: db1 }\n    sql: { target: db, query: select 1 }\n",
        7,
        5,
        "`runs_on` is only for `shell` and `argv` steps",
    ),
    case(
        "runs_on label as a template",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    runs_on: { host: \"{{ inputs.h }}\" }\n    shell: x\n",
        5,
        22,
        "`runs_on` labels are not templates",
    ),
    case(
        "runs_on label name",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    runs_on: { \"ho st\": db1 }\n    shell: x\n",
        5,
        16,
        "invalid label name `ho st` in `runs_on`",
    ),
    case(
        "default runs_on over an http step",
        "cairn: 1\nname: demo\ndefaults: { runs_on: { host: db1 } }\nsteps:\n  - id: ping\n    http: { get: \"http://x\" }\n",
        5,
        9,
        "step `ping` is a `http` step, which `defaults.runs_on` cannot send to a worker",
    ),
    case(
        "yaml syntax",
        "cairn: 1\nname: [demo\nsteps: []\n",
        3,
        6,
        "invalid YAML: illegal placement of ':' indicator",
    ),
    case(
        "unknown top-level key",
        "cairn: 1\nname: demo\nstepz: []\nsteps: []\n",
        3,
        1,
        "unknown key `stepz` in the runbook",
    ),
    case(
        "unknown step key",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    need: []\n    shell: x\n",
        5,
        5,
        "unknown key `need` in step `a`",
    ),
    case(
        "version of wrong type",
        "cairn: one\nname: demo\nsteps: []\n",
        1,
        8,
        "`cairn` (the format version) must be a whole number, found a string",
    ),
    case(
        "unsupported version",
        "cairn: 2\nname: demo\nsteps: []\n",
        1,
        8,
        "unsupported format version `cairn: 2`",
    ),
    case(
        "missing version",
        "name: demo\nsteps: []\n",
        1,
        1,
        "the runbook is missing `cairn:` (the format version)",
    ),
    case(
        "missing name",
        "cairn: 1\nsteps: []\n",
        1,
        1,
        "the runbook is missing `name`",
    ),
    case(
        "missing steps",
        "cairn: 1\nname: demo\n",
        1,
        1,
        "the runbook is missing `steps`",
    ),
    case(
        "invalid runbook name",
        "cairn: 1\nname: Demo_1\nsteps: []\n",
        2,
        7,
        "invalid runbook name `Demo_1`",
    ),
    case(
        "step without kind",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    timeout: 5s\n",
        4,
        9,
        "step `a` has no kind",
    ),
    case(
        "step with two kinds",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n    argv: [y]\n",
        6,
        5,
        "step `a` has two kinds: `shell` and `argv`",
    ),
    case(
        "step without id",
        "cairn: 1\nname: demo\nsteps:\n  - shell: x\n",
        4,
        5,
        "step has no `id`",
    ),
    case(
        "invalid step id",
        "cairn: 1\nname: demo\nsteps:\n  - id: Bad Id\n    shell: x\n",
        4,
        9,
        "invalid step id `Bad Id`",
    ),
    case(
        "duplicate step id",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n  - id: a\n    shell: y\n",
        6,
        9,
        "duplicate step id `a`",
    ),
    case(
        "duplicate id across finally",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\nfinally:\n  - id: a\n    shell: y\n",
        7,
        9,
        "duplicate step id `a`",
    ),
    case(
        "unknown needs",
        "cairn: 1\nname: demo\nsteps:\n  - id: restore-db\n    shell: x\n  - id: verify\n    needs: [restore_db]\n    shell: y\n",
        7,
        13,
        "step `verify` needs unknown step `restore_db`",
    ),
    case(
        "cycle",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    needs: [c]\n    shell: x\n  - id: b\n    needs: [a]\n    shell: x\n  - id: c\n    needs: [b]\n    shell: x\n",
        5,
        13,
        "steps wait for each other in a cycle: a -> c -> b -> a",
    ),
    case(
        "reference to a non-ancestor",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    needs: []\n    shell: x\n  - id: b\n    needs: []\n    shell: echo {{ steps.a.result.stdout }}\n",
        9,
        20,
        "step `b` reads `steps.a`, but `a` is not among the steps it waits for",
    ),
    case(
        "undefined input",
        "cairn: 1\nname: demo\ninputs:\n  backup_dir: { default: /b }\nsteps:\n  - id: a\n    shell: ls {{ inputs.bakup_dir }}\n",
        7,
        18,
        "undefined name `inputs.bakup_dir`",
    ),
    case(
        "template syntax error",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: \"ls {{ inputs.x \"\n",
        5,
        26,
        "template error: syntax error: unexpected end of input, expected end of variable block",
    ),
    case(
        "unknown target",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x/y\" }\nsteps:\n  - id: a\n    sql: { target: dbb, query: SELECT 1 }\n",
        7,
        20,
        "unknown target `dbb`",
    ),
    case(
        "target of the wrong kind",
        "cairn: 1\nname: demo\ntargets:\n  vec: { chroma: \"http://localhost:8000\" }\nsteps:\n  - id: a\n    sql: { target: vec, query: SELECT 1 }\n",
        7,
        20,
        "target `vec` is a `chroma` target; a `sql` step needs a `postgres`, `sqlite` or `mysql` target",
    ),
    case(
        "bad duration",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n    timeout: 10 minutes please\n",
        6,
        14,
        "invalid duration `10 minutes please` for `timeout`: expected number at 11",
    ),
    case(
        "duration without unit",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n    timeout: 30\n",
        6,
        14,
        "`timeout` needs a unit",
    ),
    case(
        "templated duration where none may be",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n    retry: { attempts: 2, delay: \"{{ inputs.t }}\" }\n",
        6,
        34,
        "`delay` cannot be templated: it is fixed when the runbook is validated",
    ),
    case(
        "bad check threshold",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    check: { value: \"3\", warning: \"more than 5\" }\n",
        5,
        35,
        "invalid `warning` threshold",
    ),
    case(
        "check without threshold",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    check: { value: \"3\" }\n",
        5,
        12,
        "`check` has no threshold",
    ),
    case(
        "for_each a number",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    for_each: 5\n    shell: x\n",
        5,
        15,
        "`for_each` must be a list or a template giving a list, found an integer",
    ),
    case(
        "for_each plain text",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    for_each: hosts\n    shell: x\n",
        5,
        15,
        "`for_each` must be a list or a template giving a list",
    ),
    case(
        "unknown filter",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: \"echo {{ run.started_at | strftme('%Y') }}\"\n",
        5,
        38,
        "unknown filter `strftme`",
    ),
    case(
        "item outside for_each",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo {{ item }}\n",
        5,
        20,
        "`item` is only defined in a `for_each` step",
    ),
    case(
        "result outside outputs",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo {{ result.stdout }}\n",
        5,
        20,
        "`result` is only defined in the step's own `outputs`, `expect` and `wait.until`",
    ),
    case(
        "unknown output",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n    outputs: { n: \"{{ result.stdout }}\" }\n  - id: b\n    shell: echo {{ steps.a.outputs.m }}\n",
        8,
        20,
        "step `a` has no output `m`",
    ),
    case(
        "duplicate yaml key",
        "cairn: 1\nname: demo\nname: again\nsteps: []\n",
        3,
        1,
        "duplicate key `name`",
    ),
    case(
        "retry attempts zero",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n    retry: { attempts: 0 }\n",
        6,
        24,
        "`attempts` counts the first try too: it must be at least 1",
    ),
    case(
        "raw in sql",
        "cairn: 1\nname: demo\ntargets:\n  db: { sqlite: \"sqlite::memory:\" }\ninputs:\n  t: {}\nsteps:\n  - id: a\n    sql: { target: db, query: \"SELECT {{ inputs.t | raw }}\" }\n",
        9,
        53,
        "`| raw` is not allowed in SQL",
    ),
    case(
        "ident inside a quoted sql string",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x@h/db\" }\ninputs:\n  t: {}\nsteps:\n  - id: a\n    sql:\n      target: db\n      query: |\n        SELECT '{{ inputs.t | ident }}' AS tbl, count(*) FROM {{ inputs.t | ident }}\n",
        12,
        20,
        "an `| ident` name is inside a quoted SQL string",
    ),
    case(
        "value inside a dollar-quoted body",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x@h/db\" }\ninputs:\n  t: {}\nsteps:\n  - id: a\n    sql:\n      target: db\n      query: |\n        DO $x$ BEGIN\n          EXECUTE 'DROP TABLE ' || {{ inputs.t | ident }};\n        END $x$\n",
        13,
        39,
        "an `| ident` name is inside a dollar-quoted SQL body ($$...$$)",
    ),
    case(
        "vacuum batched with another statement",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x@h/db\" }\nsteps:\n  - id: a\n    sql: { target: db, query: \"ANALYZE t; VACUUM t\" }\n",
        7,
        43,
        "`VACUUM` cannot run inside a transaction block, and a query of several statements runs as one",
    ),
    case(
        "create index concurrently repeated by a loop",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x@h/db\" }\ninputs:\n  ts: { type: list }\nsteps:\n  - id: a\n    sql:\n      target: db\n      query: |\n        {% for t in inputs.ts %}\n        CREATE INDEX CONCURRENTLY ON {{ t | ident }} (a);\n        {% endfor %}\n",
        13,
        9,
        "`CREATE INDEX CONCURRENTLY` cannot run inside a transaction block, and a `{% for %}` loop repeats it into a script that runs as one",
    ),
    case(
        "value inside a mysql comment",
        "cairn: 1\nname: demo\ntargets:\n  db: { mysql: \"mysql://root@h/test\" }\ninputs:\n  t: {}\nsteps:\n  - id: a\n    sql: { target: db, query: \"SELECT 1 # {{ inputs.t }}\" }\n",
        9,
        46,
        "a `{{ }}` value is inside an SQL comment",
    ),
    case(
        "value inside a mysql double-quoted string",
        "cairn: 1\nname: demo\ntargets:\n  db: { mysql: \"mysql://root@h/test\" }\ninputs:\n  t: {}\nsteps:\n  - id: a\n    sql: { target: db, query: 'SELECT \"{{ inputs.t }}\"' }\n",
        9,
        43,
        "a `{{ }}` value is inside a quoted SQL string",
    ),
    case(
        "secret with env and file",
        "cairn: 1\nname: demo\nsecrets:\n  pw: { env: PW, file: /run/pw }\nsteps: []\n",
        4,
        7,
        "secret `pw` needs exactly one of `env` or `file`",
    ),
    case(
        "http with two methods",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    http: { get: \"http://x\", post: \"http://y\" }\n",
        5,
        30,
        "`http` has two methods: `get` and `post`",
    ),
    case(
        "chroma unknown parameter",
        "cairn: 1\nname: demo\ntargets:\n  vec: { chroma: \"http://localhost:8000\" }\nsteps:\n  - id: a\n    chroma: { target: vec, count: { colection: x } }\n",
        7,
        35,
        "chroma `count` is missing `collection`",
    ),
    case(
        "with without uses",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n    with: { a: 1 }\n",
        6,
        5,
        "`with` is only for `uses` steps",
    ),
    case(
        "unknown input type",
        "cairn: 1\nname: demo\ninputs:\n  n: { type: integer }\nsteps: []\n",
        4,
        14,
        "unknown input type `integer`",
    ),
    case(
        "var used before defined",
        "cairn: 1\nname: demo\nvars:\n  a: \"{{ vars.b }}\"\n  b: x\nsteps: []\n",
        4,
        10,
        "`vars.b` is used before it is defined",
    ),
    case(
        "needs not a list",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\n  - id: b\n    needs: a\n    shell: y\n",
        7,
        12,
        "`needs` must be a list, found a string",
    ),
    case(
        "unknown key in target",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x\", pasword: y }\nsteps: []\n",
        4,
        35,
        "unknown key `pasword` in target `db`",
    ),
    case(
        "finally with needs",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: x\nfinally:\n  - id: z\n    needs: [a]\n    shell: y\n",
        8,
        13,
        "`finally` step `z` has `needs`",
    ),
    case(
        "undefined root name",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo {{ input.x }}\n",
        5,
        20,
        "undefined name `input.x`",
    ),
    case(
        "run attribute",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo {{ run.started }}\n",
        5,
        20,
        "`run` has no attribute `started`",
    ),
    case(
        "targets in vars",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x/y\" }\nvars:\n  u: \"{{ targets.db.url }}\"\nsteps: []\n",
        6,
        10,
        "`targets` is not available here",
    ),
    case(
        "step_key outside a step",
        "cairn: 1\nname: demo\nvars:\n  k: \"{{ run.step_key }}\"\nsteps: []\n",
        4,
        10,
        "`run.step_key` is only defined inside a step",
    ),
    case(
        "item in when",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    for_each: [1, 2]\n    when: item > 1\n    shell: x\n",
        6,
        11,
        "`item` is only defined in a `for_each` step",
    ),
    case(
        "relative url without target",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    http: { get: /health }\n",
        5,
        18,
        "`/health` is not an absolute URL",
    ),
    case(
        "a value in the host of a request with a secret header",
        "cairn: 1\nname: demo\nsecrets:\n  t: { env: T }\ninputs:\n  host: { type: string }\nsteps:\n  - id: a\n    http: { get: \"http://{{ inputs.host }}/x\", headers: { Authorization: \"Bearer {{ secrets.t }}\" } }\n",
        9,
        18,
        "a value decides where this request goes (a `{{ }}` in the scheme, host or port of `http://{{ inputs.host }}/x`), and the request carries headers, a body or credentials that it would take there",
    ),
    case(
        "a value in the port of a request with a body",
        "cairn: 1\nname: demo\ninputs:\n  port: { type: int }\nsteps:\n  - id: a\n    http: { post: \"http://127.0.0.1:{{ inputs.port }}/x\", body: hello }\n",
        7,
        19,
        "a value decides where this request goes (a `{{ }}` in the scheme, host or port of `http://127.0.0.1:{{ inputs.port }}/x`), and the request carries headers, a body or credentials that it would take there",
    ),
    case(
        "a whole URL from a value, with credentials in it",
        "cairn: 1\nname: demo\nsecrets:\n  p: { env: P }\ninputs:\n  u: { type: string }\nsteps:\n  - id: a\n    http: { get: \"{{ inputs.u }}@example.com/x\" }\n",
        9,
        18,
        "a value decides where this request goes (a `{{ }}` in the scheme, host or port of `{{ inputs.u }}@example.com/x`), and the request carries headers, a body or credentials that it would take there",
    ),
    case(
        "default of the wrong type",
        "cairn: 1\nname: demo\ninputs:\n  n: { type: int, default: abc }\nsteps: []\n",
        4,
        28,
        "the default of input `n` is not of its type `int`",
    ),
    case(
        "option that does not fit the target",
        "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x\", bearer: t }\nsteps: []\n",
        4,
        35,
        "`bearer` does not apply to a `postgres` target",
    ),
    case(
        "needs a step with errors",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: [1]\n  - id: b\n    needs: [a]\n    shell: x\n",
        5,
        12,
        "`shell` must be text, found a list",
    ),
    case(
        "approval with for_each",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    for_each: [1]\n    approval: ok?\n",
        6,
        15,
        "approval step `a` has `for_each`",
    ),
    case(
        "approval in finally",
        "cairn: 1\nname: demo\nsteps: []\nfinally:\n  - id: z\n    approval: ok?\n",
        6,
        15,
        "`finally` step `z` is an approval",
    ),
    case(
        "if without else",
        "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: \"echo {% for n in [1, 2] %}{{ n }}{{ ',' if not loop.last }}{% endfor %}\"\n",
        5,
        49,
        "`x if condition` without `else` has no value when the condition is false",
    ),
];

#[test]
fn every_malformed_runbook_is_refused_at_its_place() {
    let templates = cairn_template::Templates::new();
    let mut failures = Vec::new();
    for c in CASES {
        let (checked, diags) = check("t.yaml".as_ref(), c.yaml, &templates);
        let first = diags.0.iter().find(|d| d.severity == Severity::Error);
        match first {
            Some(d)
                if d.span.line == c.line
                    && d.span.col == c.col
                    && d.message == c.message
                    && checked.is_none() => {}
            Some(d) => failures.push(format!(
                "{}: got {}:{} {:?}, want {}:{} {:?}",
                c.name, d.span.line, d.span.col, d.message, c.line, c.col, c.message
            )),
            None => failures.push(format!(
                "{}: accepted, want {}:{} {:?}",
                c.name, c.line, c.col, c.message
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn a_broken_step_is_reported_once() {
    let yaml = "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: [1]\n  - id: b\n    needs: [a]\n    shell: echo {{ steps.a.result }}\n";
    let (_, diags) = check("t.yaml".as_ref(), yaml, &cairn_template::Templates::new());
    assert_eq!(diags.errors().count(), 1, "{diags:?}");
}

#[test]
fn two_chroma_actions_are_one_error() {
    let yaml = "cairn: 1\nname: demo\ntargets:\n  v: { chroma: \"http://c\" }\nsteps:\n  - id: a\n    chroma: { target: v, count: { collection: x }, list: {} }\n";
    let (_, diags) = check("t.yaml".as_ref(), yaml, &cairn_template::Templates::new());
    let msgs: Vec<&str> = diags.errors().map(|d| d.message.as_str()).collect();
    assert_eq!(msgs, vec!["`chroma` has two actions: `count` and `list`"]);
}

#[test]
fn all_problems_are_reported_at_once() {
    let yaml = "cairn: 1\nname: demo\nsteps:\n  - id: a\n    need: []\n    shell: x\n  - id: b\n    shell: echo {{ inputs.nope }}\n    timeout: soon\n";
    let (_, diags) = check("t.yaml".as_ref(), yaml, &cairn_template::Templates::new());
    let lines: Vec<u32> = diags.errors().map(|d| d.span.line).collect();
    assert_eq!(lines, vec![5, 8, 9], "{diags:?}");
}

#[test]
fn did_you_mean_hints() {
    let templates = cairn_template::Templates::new();
    let hint = |yaml: &str| {
        let (_, d) = check("t.yaml".as_ref(), yaml, &templates);
        d.errors()
            .next()
            .and_then(|d| d.help.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        hint("cairn: 1\nname: demo\nstepz: []\nsteps: []\n"),
        "did you mean `steps`?"
    );
    assert_eq!(
        hint(
            "cairn: 1\nname: demo\nsteps:\n  - id: restore-db\n    shell: x\n  - id: v\n    needs: [restore_db]\n    shell: y\n"
        ),
        "did you mean `restore-db`?"
    );
    assert_eq!(
        hint(
            "cairn: 1\nname: demo\ninputs:\n  backup_dir: {}\nsteps:\n  - id: a\n    shell: ls {{ inputs.bakup_dir }}\n"
        ),
        "did you mean `backup_dir`?"
    );
    assert_eq!(
        hint(
            "cairn: 1\nname: demo\ntargets:\n  db: { postgres: \"postgres://x/y\" }\nsteps:\n  - id: a\n    sql: { target: dbb, query: SELECT 1 }\n"
        ),
        "did you mean `db`?"
    );
    assert_eq!(
        hint(
            "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: \"{{ run.started_at | strftme('%Y') }}\"\n"
        ),
        "did you mean `strftime`?"
    );
}

#[test]
fn raw_in_shell_is_a_warning_not_an_error() {
    let yaml = "cairn: 1\nname: demo\ninputs:\n  glob: { default: '*.log' }\nsteps:\n  - id: a\n    shell: ls {{ inputs.glob | raw }}\n";
    let (checked, diags) = check("t.yaml".as_ref(), yaml, &cairn_template::Templates::new());
    assert!(checked.is_some());
    let w: Vec<_> = diags.warnings().collect();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].span.line, w[0].span.col), (7, 32));
    assert_eq!(
        w[0].message,
        "`| raw` puts this value into the shell command unquoted"
    );
}

#[test]
fn rendering_points_a_caret_under_the_text() {
    let yaml = "cairn: 1\nname: demo\nsteps:\n  - id: restore-db\n    shell: x\n  - id: verify\n    needs: [a, restore_db]\n    shell: y\n";
    let (_, diags) = check(
        "runbooks/restore.yaml".as_ref(),
        yaml,
        &cairn_template::Templates::new(),
    );
    let d = diags
        .errors()
        .find(|d| d.message.contains("restore_db"))
        .expect("an error about restore_db");
    assert_eq!(
        d.render("runbooks/restore.yaml", yaml, false),
        "error: step `verify` needs unknown step `restore_db`\n --> runbooks/restore.yaml:7:16\n  |\n7 |     needs: [a, restore_db]\n  |                ^^^^^^^^^^\n  = help: did you mean `restore-db`?\n"
    );
}

/// Reading a step that already waits for the reader: adding it to `needs` would be a cycle,
/// so the hint says so and spells the chain instead of suggesting it.
#[test]
fn a_read_against_the_order_never_suggests_a_cycle() {
    let templates = cairn_template::Templates::new();
    let help = |yaml: &str| {
        let (_, d) = check("t.yaml".as_ref(), yaml, &templates);
        d.errors()
            .next()
            .and_then(|d| d.help.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        help(
            "cairn: 1\nname: demo\nsteps:\n  - id: a\n    shell: echo {{ steps.c.outputs.x }}\n  - id: b\n    shell: x\n  - id: c\n    needs: [b]\n    shell: y\n    outputs: { x: \"{{ result.stdout }}\" }\n"
        ),
        "`c` already waits for `a` (a -> b -> c), so `a` cannot wait for `c`; read `steps.c` in a step that runs after `c`"
    );
    // Side by side, `needs` is the fix.
    assert_eq!(
        help(
            "cairn: 1\nname: demo\nsteps:\n  - id: a\n    needs: []\n    shell: echo {{ steps.c.outputs.x }}\n  - id: c\n    needs: []\n    shell: y\n    outputs: { x: \"{{ result.stdout }}\" }\n"
        ),
        "add `c` to `needs` of `a`"
    );
}
