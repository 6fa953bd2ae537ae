//! Property tests of the step DAG: any acyclic runbook orders every step after what it waits for.

use cairn_model::check;
use proptest::prelude::*;

/// A runbook of `n` steps where step i either follows the one before (no `needs`), starts at
/// once (`needs: []`), or needs a random subset of earlier steps: acyclic by construction.
fn runbook(n: usize, choices: &[(u8, Vec<usize>)]) -> String {
    let mut y = String::from("cairn: 1\nname: prop\nsteps:\n");
    for (i, (kind, picks)) in choices.iter().enumerate().take(n) {
        y.push_str(&format!("  - id: s{i}\n    shell: echo {i}\n"));
        match kind % 3 {
            0 => {}
            1 => y.push_str("    needs: []\n"),
            _ if i > 0 => {
                let mut deps: Vec<usize> = picks.iter().map(|p| p % i).collect();
                deps.sort_unstable();
                deps.dedup();
                let names: Vec<String> = deps.iter().map(|d| format!("s{d}")).collect();
                y.push_str(&format!("    needs: [{}]\n", names.join(", ")));
            }
            _ => {}
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn order_respects_needs(n in 1usize..40, choices in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<usize>(), 0..4)), 40)) {
        let yaml = runbook(n, &choices);
        let (checked, diags) = check("p.yaml".as_ref(), &yaml, &cairn_template::Templates::new());
        prop_assert!(!diags.has_errors(), "{:?}", diags);
        let c = checked.expect("valid");
        let pos: Vec<usize> = {
            let mut p = vec![0; n];
            for (k, &i) in c.dag.order.iter().enumerate() { p[i] = k; }
            p
        };
        prop_assert_eq!(c.dag.order.len(), n);
        for (i, s) in c.runbook.steps.iter().enumerate() {
            let deps: Vec<usize> = match &s.needs {
                None if i > 0 => vec![i - 1],
                None => vec![],
                Some(ns) => ns.iter().map(|x| x.value[1..].parse().unwrap_or(0)).collect(),
            };
            for d in deps {
                prop_assert!(pos[d] < pos[i], "s{} runs before its dependency s{}", i, d);
                prop_assert!(c.dag.group[d] < c.dag.group[i]);
                prop_assert!(c.dag.is_ancestor(d, i));
            }
        }
        // Deterministic: the same runbook gives the same order.
        let (again, _) = check("p.yaml".as_ref(), &yaml, &cairn_template::Templates::new());
        prop_assert_eq!(again.expect("valid").dag.order, c.dag.order);
    }

    #[test]
    fn a_back_edge_is_always_a_cycle(n in 2usize..30, from in any::<usize>(), to in any::<usize>()) {
        // A chain s0 <- s1 <- ... plus s_lo needing s_hi closes a cycle.
        let (lo, hi) = { let a = from % n; let b = to % n; if a < b { (a, b) } else if a > b { (b, a) } else { return Ok(()); } };
        let mut y = String::from("cairn: 1\nname: prop\nsteps:\n");
        for i in 0..n {
            y.push_str(&format!("  - id: s{i}\n    shell: x\n"));
            if i == lo { y.push_str(&format!("    needs: [{}s{hi}]\n", if lo > 0 { format!("s{}, ", lo - 1) } else { String::new() })); }
        }
        let (checked, diags) = check("p.yaml".as_ref(), &y, &cairn_template::Templates::new());
        prop_assert!(checked.is_none());
        let msg = diags.errors().map(|d| d.message.clone()).collect::<Vec<_>>().join("\n");
        prop_assert!(msg.contains("cycle"), "{}", msg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// `is_ancestor` (a walk, no table) agrees with the transitive closure computed the slow way,
    /// for every pair of steps.
    #[test]
    fn is_ancestor_is_the_transitive_closure(n in 1usize..30, choices in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<usize>(), 0..4)), 30)) {
        let yaml = runbook(n, &choices);
        let (checked, _) = check("p.yaml".as_ref(), &yaml, &cairn_template::Templates::new());
        let dag = checked.expect("valid").dag;
        // reach[b][a]: a is above b, by fixpoint over the direct parents.
        let mut reach = vec![vec![false; n]; n];
        for &b in &dag.order {
            for p in dag.parents(b) {
                reach[b][p] = true;
                let above = reach[p].clone();
                for (a, r) in above.into_iter().enumerate() {
                    reach[b][a] |= r;
                }
            }
        }
        for (b, row) in reach.iter().enumerate() {
            for (a, &r) in row.iter().enumerate() {
                prop_assert_eq!(dag.is_ancestor(a, b), r, "is s{} above s{}?", a, b);
            }
            let listed: Vec<usize> = dag.ancestors(b).collect();
            let expected: Vec<usize> = (0..n).filter(|&a| row[a]).collect();
            prop_assert_eq!(listed, expected);
        }
    }
}

/// A chain of 200,000 steps: building the DAG and asking whether the first is above the last
/// takes memory in the steps (a table of ancestors would take 5 GB) and a moment.
#[test]
fn a_long_chain_is_built_and_queried_in_linear_space() {
    use cairn_model::dag::{Dag, Edge};
    let n = 200_000;
    let deps: Vec<Vec<(usize, Edge)>> = (0..n)
        .map(|i| {
            if i == 0 {
                vec![]
            } else {
                vec![(i - 1, Edge::Follows)]
            }
        })
        .collect();
    let clock = std::time::Instant::now();
    let dag = Dag::build(&deps).expect("acyclic");
    assert!(dag.is_ancestor(0, n - 1));
    assert!(!dag.is_ancestor(n - 1, 0));
    assert!(
        clock.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        clock.elapsed()
    );
}
