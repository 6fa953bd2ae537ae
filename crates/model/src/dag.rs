//! The step DAG: who waits for whom, in what order, in which parallel group.
//!
//! Rules (the contract): a step without `needs` waits for the step written before it; `needs: [a, b]`
//! waits for those only; `needs: []` starts at once. The order is deterministic: among the steps
//! ready at a time, the one written first comes first.

use fixedbitset::FixedBitSet;
use petgraph::graph::{DiGraph, NodeIndex};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Why a step waits for another, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Written after it, without `needs`.
    Follows,
    /// Named in `needs`.
    Needs,
}

/// The checked DAG over steps `0..n` (indices into `Runbook::steps`).
#[derive(Clone, Debug)]
pub struct Dag {
    graph: DiGraph<usize, Edge>,
    /// Execution order: by parallel group, then written order (a topological order).
    pub order: Vec<usize>,
    /// Parallel group of each step: 0 for steps that start at once, else 1 + the highest group of
    /// what it waits for. Steps of one group can run side by side.
    pub group: Vec<usize>,
}

impl Dag {
    /// Build from each step's dependencies (`deps[i]` = indices step `i` waits for).
    /// Returns the cycle (as indices, first repeated at the end) if there is one.
    pub fn build(deps: &[Vec<(usize, Edge)>]) -> Result<Dag, Vec<usize>> {
        let n = deps.len();
        let mut graph = DiGraph::with_capacity(n, n);
        let nodes: Vec<NodeIndex> = (0..n).map(|i| graph.add_node(i)).collect();
        for (i, ds) in deps.iter().enumerate() {
            for &(d, e) in ds {
                graph.update_edge(nodes[d], nodes[i], e);
            }
        }
        // Kahn's algorithm with a min-heap on the written index: deterministic, and it finds
        // cycles as leftovers.
        let mut indegree: Vec<usize> = (0..n)
            .map(|i| {
                graph
                    .neighbors_directed(nodes[i], petgraph::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        let mut group = vec![0usize; n];
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for next in graph.neighbors_directed(nodes[i], petgraph::Outgoing) {
                let j = graph[next];
                group[j] = group[j].max(group[i] + 1);
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(Reverse(j));
                }
            }
        }
        if order.len() < n {
            return Err(find_cycle(&graph, &nodes, &indegree));
        }
        // Present (and start) steps wave by wave: by group, then as written. Still topological,
        // since a step's group is above every group it waits for.
        order.sort_by_key(|&i| (group[i], i));
        // No table of who waits for whom, directly or not: one set of all steps per step is
        // quadratic (1.25 GB for 100,000 steps); `is_ancestor` walks the graph instead.
        Ok(Dag {
            graph,
            order,
            group,
        })
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether `a` always finishes before `b` starts.
    ///
    /// A walk up from `b` that enters only steps of a later parallel group than `a`'s (a step
    /// waits only for steps of earlier groups, so none at or before `a`'s group can wait for
    /// `a`): memory in the steps visited, time at most the steps between the two waves.
    pub fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let n = self.len();
        if a >= n || b >= n || self.group[a] >= self.group[b] {
            return false;
        }
        let floor = self.group[a];
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![b];
        while let Some(x) = stack.pop() {
            for p in self
                .graph
                .neighbors_directed(NodeIndex::new(x), petgraph::Incoming)
            {
                let p = self.graph[p];
                if p == a {
                    return true;
                }
                if self.group[p] > floor && seen.insert(p) {
                    stack.push(p);
                }
            }
        }
        false
    }

    /// Every step `b` waits for, directly or not, in written order.
    pub fn ancestors(&self, b: usize) -> impl Iterator<Item = usize> + '_ {
        let mut seen = FixedBitSet::with_capacity(self.len());
        let mut stack = vec![b];
        while let Some(x) = stack.pop() {
            for p in self
                .graph
                .neighbors_directed(NodeIndex::new(x), petgraph::Incoming)
            {
                let p = self.graph[p];
                if !seen.put(p) {
                    stack.push(p);
                }
            }
        }
        seen.into_ones()
    }

    /// Direct dependencies of `i`, in written order.
    pub fn parents(&self, i: usize) -> Vec<usize> {
        let mut p: Vec<usize> = self
            .graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Incoming)
            .map(|n| self.graph[n])
            .collect();
        p.sort_unstable();
        p
    }

    /// Direct dependents of `i`, in written order.
    pub fn children(&self, i: usize) -> Vec<usize> {
        let mut c: Vec<usize> = self
            .graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Outgoing)
            .map(|n| self.graph[n])
            .collect();
        c.sort_unstable();
        c
    }

    /// Why `child` waits for `parent` (if it does directly).
    pub fn edge(&self, parent: usize, child: usize) -> Option<Edge> {
        self.graph
            .find_edge(NodeIndex::new(parent), NodeIndex::new(child))
            .map(|e| self.graph[e])
    }

    /// `i` and everything downstream of it.
    pub fn downstream(&self, i: usize) -> FixedBitSet {
        let mut set = FixedBitSet::with_capacity(self.len());
        let mut stack = vec![i];
        while let Some(x) = stack.pop() {
            if set.put(x) {
                continue;
            }
            stack.extend(self.children(x));
        }
        set
    }
}

/// A cycle among the nodes Kahn's algorithm could not order, as a path in "needs" direction:
/// `[a, b, c, a]` means a waits for b, b for c, c for a.
fn find_cycle(graph: &DiGraph<usize, Edge>, nodes: &[NodeIndex], indegree: &[usize]) -> Vec<usize> {
    // Every leftover node has a leftover parent; walking parents must revisit a node.
    let start = (0..nodes.len()).find(|&i| indegree[i] > 0).unwrap_or(0);
    let mut seen = vec![usize::MAX; nodes.len()];
    let mut path = Vec::new();
    let mut cur = start;
    loop {
        if seen[cur] != usize::MAX {
            let mut cycle = path[seen[cur]..].to_vec();
            // Start the spelling at the first-written step of the cycle, for stable messages.
            let min_pos = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| **v)
                .map_or(0, |(p, _)| p);
            cycle.rotate_left(min_pos);
            cycle.push(cycle[0]);
            return cycle;
        }
        seen[cur] = path.len();
        path.push(cur);
        let next = graph
            .neighbors_directed(nodes[cur], petgraph::Incoming)
            .map(|p| graph[p])
            .filter(|&p| indegree[p] > 0)
            .min();
        match next {
            Some(p) => cur = p,
            None => return vec![start, start],
        }
    }
}
