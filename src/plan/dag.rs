//! The task DAG (petgraph): edges run from a dependency to the task that reads it.

use crate::task::{Plan, TaskKey};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

/// The plan as a graph whose node weights are indices into `plan.tasks`.
pub fn graph(plan: &Plan) -> anyhow::Result<DiGraph<usize, ()>> {
    let mut g = DiGraph::with_capacity(plan.tasks.len(), plan.tasks.len() * 2);
    let mut index: HashMap<&TaskKey, NodeIndex> = HashMap::with_capacity(plan.tasks.len());
    for (i, t) in plan.tasks.iter().enumerate() {
        index.insert(&t.key, g.add_node(i));
    }
    for t in &plan.tasks {
        for dep in &t.deps {
            let Some(&from) = index.get(dep) else {
                anyhow::bail!(
                    "task {} ({}) depends on {}, which the plan does not contain",
                    t.key.short(),
                    t.stage,
                    dep.short()
                );
            };
            g.add_edge(from, index[&t.key], ());
        }
    }
    Ok(g)
}

/// Checks that the DAG has no cycle and that `plan.tasks` lists every task after its deps.
pub fn check_order(plan: &Plan) -> anyhow::Result<()> {
    let g = graph(plan)?;
    if petgraph::algo::toposort(&g, None).is_err() {
        anyhow::bail!("the task graph has a cycle (a planner bug)");
    }
    let pos: HashMap<&TaskKey, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (&t.key, i))
        .collect();
    for (i, t) in plan.tasks.iter().enumerate() {
        if t.deps.iter().any(|d| pos[d] >= i) {
            anyhow::bail!(
                "task {} is listed before one of its deps (a planner bug)",
                t.key.short()
            );
        }
    }
    Ok(())
}
