//! Inputs that once crashed, hung or exhausted the memory of the parser and validator (see
//! docs/fuzzing.md). Each must come back, quickly, with an error.

use cairn_model::check;

/// `&a1 [*a0 x10]`, `&a2 [*a1 x10]`, ... to `a8`: 10^9 nodes once every alias is expanded.
/// It took all memory (libFuzzer: out-of-memory past 2 GB) before aliases were capped. The cap
/// is crossed at the 7th alias of `a5` (line 9), each alias of `a4` copying 111,111 nodes.
fn billion_laughs() -> String {
    let mut yaml =
        String::from("cairn: 1\nname: laughs\nvars:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=8 {
        let aliases = vec![format!("*a{}", i - 1); 10].join(", ");
        yaml.push_str(&format!("  a{i}: &a{i} [{aliases}]\n"));
    }
    yaml.push_str("steps: []\n");
    yaml
}

/// (name, input, the expected first error as `line:col: message`)
fn cases() -> Vec<(&'static str, String, &'static str)> {
    vec![(
        "billion laughs",
        billion_laughs(),
        "9:42: anchors and aliases expand to more than 1000000 YAML nodes",
    )]
}

#[test]
fn each_input_is_refused_with_an_error() {
    let templates = cairn_template::Templates::new();
    for (name, yaml, expected) in cases() {
        let (checked, diags) = check("fuzz.yaml".as_ref(), &yaml, &templates);
        assert!(checked.is_none(), "{name}: accepted");
        let first = diags
            .errors()
            .next()
            .unwrap_or_else(|| panic!("{name}: no error"));
        let got = format!("{}:{}: {}", first.span.line, first.span.col, first.message);
        assert_eq!(got, expected, "{name}");
        // Rendering the diagnostic must not panic either.
        let _ = first.render("fuzz.yaml", &yaml, false);
    }
}

/// The cap leaves ordinary anchors alone: aliases still expand to copies of their anchor.
#[test]
fn anchors_and_aliases_within_the_cap_still_expand() {
    let yaml = "cairn: 1\nname: anchors\nsteps:\n  - id: a\n    shell: echo $REGION\n    env: &env { REGION: eu-west-1 }\n  - id: b\n    shell: echo $REGION\n    env: *env\n";
    let (checked, diags) = check(
        "anchors.yaml".as_ref(),
        yaml,
        &cairn_template::Templates::new(),
    );
    assert!(!diags.has_errors(), "{diags:?}");
    let checked = checked.expect("a checked runbook");
    let env = |i: usize| -> Vec<(String, String)> {
        let step: &cairn_model::Step = &checked.runbook.steps[i];
        step.env
            .iter()
            .map(|(k, v)| (k.clone(), v.src.clone()))
            .collect()
    };
    assert_eq!(env(1), vec![("REGION".to_owned(), "eu-west-1".to_owned())]);
    assert_eq!(env(0), env(1));
}
