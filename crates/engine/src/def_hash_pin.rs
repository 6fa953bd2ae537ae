//! A step's definition hash is how resume tells an edited step from an unchanged one, and it is
//! stored with every checkpoint: the same YAML must hash the same across versions of the engine,
//! or a run started before an upgrade resumes with every step reported as edited. These hashes
//! were taken before the step kind became one enum and must never change.

use crate::shared::def_hash;

const RUNBOOK: &str = r#"cairn: 1
name: pinned
targets:
  db: { postgres: "postgres://localhost/test" }
  api: { http: "http://127.0.0.1:9" }
  vec: { chroma: "http://127.0.0.1:8000" }
inputs:
  n: { type: int, default: 3 }
steps:
  - id: sh
    name: Say hello
    needs: []
    when: "{{ inputs.n > 1 }}"
    timeout: 30s
    retry: { attempts: 3, delay: 2s, backoff: 2 }
    env: { GREETING: hi }
    outputs: { out: "{{ result.stdout }}" }
    shell: echo "$GREETING {{ inputs.n }}"
  - id: av
    description: Print what `sh` said
    readonly: true
    expect: ["{{ result.exit_code == 0 }}"]
    on_failure: continue
    idempotent: false
    cwd: /tmp
    lock: printer
    argv: [printf, "%s", "{{ steps.sh.outputs.out }}"]
  - id: q
    for_each: [1, 2]
    concurrency: 2
    sql: { target: db, query: "SELECT {{ item }}" }
  - id: h
    http: { get: /health, target: api, headers: { X-A: b }, expect: { status: 200 } }
  - id: c
    chroma: { target: vec, count: { collection: memories } }
  - id: k
    check: { value: "{{ inputs.n }}", warning: "> 5", critical: ">= 10", unit: items }
  - id: ok
    approval: { message: Go?, timeout: 1h, on_timeout: reject }
  - id: w
    wait:
      until: "{{ result.exit_code == 0 }}"
      interval: 1s
      timeout: 1m
      shell: "true"
  - id: nap
    wait: { duration: 2s }
  - id: sub
    uses: child.yaml
    with: { n: "{{ inputs.n }}", list: [1, 2] }
  - id: sub_plain
    uses: child.yaml
finally:
  - id: rep
    report: { inline: "done {{ run.status }}", to: out.md }
"#;

/// (step id, its JSON, its hash), as the engine computed them before the step kind was an enum.
const PINNED: &[(&str, &str, &str)] = &[
    (
        "sh",
        r#"{"id":"sh","name":"Say hello","needs":[],"when":"{{ inputs.n > 1 }}","timeout":"30s","retry":{"attempts":3,"delay":"2s","backoff":2.0},"outputs":{"out":"{{ result.stdout }}"},"env":{"GREETING":"hi"},"shell":"echo \"$GREETING {{ inputs.n }}\""}"#,
        "44e38d48c65b2a37",
    ),
    (
        "av",
        r#"{"id":"av","description":"Print what `sh` said","readonly":true,"expect":["{{ result.exit_code == 0 }}"],"on_failure":"continue","idempotent":false,"cwd":"/tmp","lock":"printer","argv":["printf","%s","{{ steps.sh.outputs.out }}"]}"#,
        "f0cc50a654db5597",
    ),
    (
        "q",
        r#"{"id":"q","for_each":[1,2],"concurrency":2,"sql":{"target":"db","query":"SELECT {{ item }}"}}"#,
        "96ccdbe0fee1fed2",
    ),
    (
        "h",
        r#"{"id":"h","http":{"get":"/health","target":"api","headers":{"X-A":"b"},"expect":{"status":200}}}"#,
        "8b2dc9071d54cc37",
    ),
    (
        "c",
        r#"{"id":"c","chroma":{"target":"vec","count":{"collection":"memories"}}}"#,
        "dbc26b7875371a77",
    ),
    (
        "k",
        r#"{"id":"k","check":{"value":"{{ inputs.n }}","warning":"> 5","critical":">= 10","unit":"items"}}"#,
        "a56b6b92b781e4c2",
    ),
    (
        "ok",
        r#"{"id":"ok","approval":{"message":"Go?","timeout":"1h","on_timeout":"reject"}}"#,
        "e190468971b21114",
    ),
    (
        "w",
        r#"{"id":"w","wait":{"until":"{{ result.exit_code == 0 }}","interval":"1s","timeout":"1m","shell":"true"}}"#,
        "9b96048a8074e21e",
    ),
    (
        "nap",
        r#"{"id":"nap","wait":{"duration":"2s"}}"#,
        "68f0e3ff27440e6a",
    ),
    (
        "sub",
        r#"{"id":"sub","uses":"child.yaml","with":{"n":"{{ inputs.n }}","list":[1,2]}}"#,
        "c55dec72c332365c",
    ),
    (
        "sub_plain",
        r#"{"id":"sub_plain","uses":"child.yaml"}"#,
        "354669af0b50d001",
    ),
    (
        "rep",
        r#"{"id":"rep","report":{"inline":"done {{ run.status }}","to":"out.md"}}"#,
        "024bd85b19b6bf0c",
    ),
];

#[test]
fn a_steps_definition_hash_never_changes() {
    let (rb, diags) = cairn_model::parse_only("pinned.yaml".as_ref(), RUNBOOK);
    assert!(!diags.has_errors(), "{diags:?}");
    let rb = rb.expect("parses");
    let got: Vec<(String, String, String)> = rb
        .steps
        .iter()
        .chain(&rb.finally)
        .map(|s| {
            (
                s.id.value.clone(),
                serde_json::to_string(s).expect("serializes"),
                def_hash(s),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = PINNED
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
}
