//! Rendering a plan: text (counts, sharing, cached/missing, the task tree), JSON, graphviz dot.
//! Which tasks are cached is the caller's to say (`crate::store::done::cached_states`), so
//! planning never reads the store.

use super::dag;
use crate::task::{Plan, StageKind, Task, TaskKey};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Per-stage counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCount {
    pub total: usize,
    pub cached: usize,
    pub missing: usize,
}

pub fn counts(plan: &Plan, cached: &[bool]) -> BTreeMap<StageKind, StageCount> {
    let mut out: BTreeMap<StageKind, StageCount> = StageKind::ALL
        .iter()
        .map(|s| (*s, StageCount::default()))
        .collect();
    for (t, &c) in plan.tasks.iter().zip(cached) {
        let e = out.get_mut(&t.stage).unwrap();
        e.total += 1;
        if c {
            e.cached += 1;
        } else {
            e.missing += 1;
        }
    }
    out
}

/// How many `child` tasks each `parent` task feeds: (min, max, mean), None if no parent.
pub fn sharing(plan: &Plan, parent: StageKind, child: StageKind) -> Option<(usize, usize, f64)> {
    let mut fed: HashMap<&TaskKey, usize> = plan
        .tasks
        .iter()
        .filter(|t| t.stage == parent)
        .map(|t| (&t.key, 0))
        .collect();
    if fed.is_empty() {
        return None;
    }
    for t in plan.tasks.iter().filter(|t| t.stage == child) {
        for d in &t.deps {
            if let Some(n) = fed.get_mut(d) {
                *n += 1;
            }
        }
    }
    let min = *fed.values().min()?;
    let max = *fed.values().max()?;
    let mean = fed.values().sum::<usize>() as f64 / fed.len() as f64;
    Some((min, max, mean))
}

fn value_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Array(a) => format!(
            "{{{}}}",
            a.iter().map(value_text).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// `axis=value` pairs of a task's labels, skipping those already shown by its parent.
fn labels(t: &Task, shown: &BTreeMap<String, Json>) -> String {
    t.axes
        .iter()
        .filter(|(k, v)| shown.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text report of `mlvf plan`.
pub fn text(plan: &Plan, cached: &[bool], tree: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "sweep {}  ({} cells; manifest {}; store {})",
        plan.sweep,
        plan.cells.len(),
        plan.manifest.display(),
        plan.store.display()
    );
    let _ = writeln!(
        o,
        "\n{:<10} {:>7} {:>7} {:>7}",
        "stage", "tasks", "cached", "missing"
    );
    let c = counts(plan, cached);
    for (s, n) in &c {
        let _ = writeln!(
            o,
            "{:<10} {:>7} {:>7} {:>7}",
            s.as_str(),
            n.total,
            n.cached,
            n.missing
        );
    }
    let total: usize = c.values().map(|n| n.total).sum();
    let missing: usize = c.values().map(|n| n.missing).sum();
    let _ = writeln!(
        o,
        "{:<10} {:>7} {:>7} {:>7}",
        "total",
        total,
        total - missing,
        missing
    );
    let _ = writeln!(o);
    for (p, ch, what) in [
        (StageKind::Pretrain, StageKind::Finetune, "finetunes"),
        (StageKind::Finetune, StageKind::Eval, "evals"),
    ] {
        if let Some((min, max, mean)) = sharing(plan, p, ch) {
            let _ = writeln!(
                o,
                "sharing: each {} feeds {min}–{max} {what} (mean {mean:.2})",
                p.as_str()
            );
        }
    }
    let pretrain_cells: usize = plan
        .tasks
        .iter()
        .filter(|t| t.stage == StageKind::Pretrain)
        .map(|t| t.cells.len())
        .sum();
    if c[&StageKind::Pretrain].total > 0 {
        let _ = writeln!(
            o,
            "sharing: {} cells need {} pretrains ({:.1} cells per pretrain)",
            pretrain_cells,
            c[&StageKind::Pretrain].total,
            pretrain_cells as f64 / c[&StageKind::Pretrain].total as f64
        );
    }
    if !tree {
        return o;
    }
    let _ = writeln!(
        o,
        "(`mlvf explain KEY MANIFEST` prints a task's key pre-image and why it would rerun)"
    );
    let mark = |i: usize| if cached[i] { "cached " } else { "missing" };
    let index: HashMap<&TaskKey, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (&t.key, i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, t) in plan.tasks.iter().enumerate() {
        if matches!(t.stage, StageKind::Finetune | StageKind::Eval) {
            if let Some(&p) = t.deps.first().and_then(|d| index.get(d)) {
                children.entry(p).or_default().push(i);
            }
        }
    }
    let inputs: Vec<usize> = (0..plan.tasks.len())
        .filter(|&i| matches!(plan.tasks[i].stage, StageKind::Prepare | StageKind::Encode))
        .collect();
    if !inputs.is_empty() {
        let _ = writeln!(o, "\ninputs:");
        for i in inputs {
            let t = &plan.tasks[i];
            let _ = writeln!(
                o,
                "  [{}] {:<8} {}  {}",
                mark(i),
                t.stage.as_str(),
                t.key.short(),
                labels(t, &BTreeMap::new())
            );
        }
    }
    let _ = writeln!(o, "\ntasks:");
    let empty = BTreeMap::new();
    for (i, t) in plan
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.stage == StageKind::Pretrain)
    {
        let _ = writeln!(
            o,
            "  [{}] pretrain {}  {}",
            mark(i),
            t.key.short(),
            labels(t, &empty)
        );
        for &f in children.get(&i).into_iter().flatten() {
            let ft = &plan.tasks[f];
            let _ = writeln!(
                o,
                "  [{}]   finetune {}  {}",
                mark(f),
                ft.key.short(),
                labels(ft, &t.axes)
            );
            for &e in children.get(&f).into_iter().flatten() {
                let et = &plan.tasks[e];
                let _ = writeln!(
                    o,
                    "  [{}]     eval {}  {}",
                    mark(e),
                    et.key.short(),
                    labels(et, &ft.axes)
                );
            }
        }
    }
    o
}

/// The JSON report: `{sweep, store, stages: {<stage>: {total, cached, missing}}, tasks: [{key,
/// stage, deps, cells: [{axis: value}], state, control?}]}` (`state` is `cached` or `missing`;
/// `control` only on the evals of `[eval] controls`).
pub fn json(plan: &Plan, cached: &[bool]) -> Json {
    let stages: serde_json::Map<String, Json> = counts(plan, cached)
        .into_iter()
        .map(|(s, n)| {
            (
                s.as_str().to_string(),
                json!({"total": n.total, "cached": n.cached, "missing": n.missing}),
            )
        })
        .collect();
    let tasks: Vec<Json> = plan
        .tasks
        .iter()
        .zip(cached)
        .map(|(t, &c)| {
            let mut task = json!({
                "key": t.key,
                "stage": t.stage,
                "deps": t.deps,
                "cells": t.cells.iter().map(|&i| &plan.cells[i].axes).collect::<Vec<_>>(),
                "state": if c { "cached" } else { "missing" },
            });
            // A control eval serves its with-image eval's cells; say which control it is.
            if let Some(control) = t.axes.get("control").filter(|_| t.stage == StageKind::Eval) {
                task["control"] = control.clone();
            }
            task
        })
        .collect();
    json!({
        "sweep": plan.sweep,
        "store": plan.store.display().to_string(),
        "stages": stages,
        "tasks": tasks,
    })
}

/// A graphviz digraph of the plan (dependency → dependent; cached tasks filled grey).
pub fn dot(plan: &Plan, cached: &[bool]) -> anyhow::Result<String> {
    use petgraph::dot::{Config, Dot};
    let g = dag::graph(plan)?;
    let node_label = |_: &_, (_, &i): (petgraph::graph::NodeIndex, &usize)| {
        let t = &plan.tasks[i];
        let lab = labels(t, &BTreeMap::new())
            .replace('"', "'")
            .replace(' ', "\\n");
        format!(
            "label=\"{} {}\\n{}\" shape=box{}",
            t.stage.as_str(),
            t.key.short(),
            lab,
            if cached[i] {
                " style=filled fillcolor=lightgrey"
            } else {
                ""
            }
        )
    };
    let d = Dot::with_attr_getters(
        &g,
        &[Config::EdgeNoLabel, Config::NodeNoLabel],
        &|_, _| String::new(),
        &node_label,
    );
    Ok(format!("{d:?}"))
}
