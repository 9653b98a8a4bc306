//! The long results table: one row per grid cell × metric, with every axis value.
//!
//! A cell's results are the final metrics (step = null) of the tasks that serve it at its most
//! downstream stage (its eval tasks in a full sweep). A cell whose result task is not done
//! gets one row with no value and state `missing` or `failed`.

use crate::db::{AttemptState, TaskRow};
use crate::plan::{Plan, TaskKey};
use std::collections::{BTreeSet, HashMap};

/// Which metrics a table shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricSel {
    /// Every final metric.
    All,
    /// The metric each result task marked primary (`StageContext::record_primary`).
    Primary,
    /// One metric by name.
    Named(String),
}

impl MetricSel {
    /// `primary` → [`MetricSel::Primary`], anything else a metric name.
    pub fn parse(s: &str) -> MetricSel {
        if s == "primary" {
            MetricSel::Primary
        } else {
            MetricSel::Named(s.to_string())
        }
    }
}

/// Whether a row has a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellState {
    Ok,
    /// The result task has not run (or its result was not found).
    Missing,
    /// The result task's newest attempt failed.
    Failed,
}

impl CellState {
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Ok => "ok",
            CellState::Missing => "missing",
            CellState::Failed => "failed",
        }
    }
}

/// One row of the long table.
#[derive(Clone, Debug, PartialEq)]
pub struct LongRow {
    /// Index into the plan's cells.
    pub cell: usize,
    /// Axis values, rendered as text (`None` where the axis does not apply to the cell).
    pub axes: Vec<Option<String>>,
    pub task: TaskKey,
    pub metric: String,
    pub value: Option<f64>,
    pub state: CellState,
}

/// The long table.
#[derive(Clone, Debug, PartialEq)]
pub struct LongTable {
    /// Axis names, the columns before `metric`.
    pub axes: Vec<String>,
    pub rows: Vec<LongRow>,
}

impl LongTable {
    /// The column index of axis `name`.
    pub fn axis(&self, name: &str) -> Option<usize> {
        self.axes.iter().position(|a| a == name)
    }

    /// Keeps the rows whose every filtered axis has one of its listed values (a `[[table]]`'s
    /// `where`); a row without the axis is dropped.
    pub fn retain_where(&mut self, filter: &std::collections::BTreeMap<String, Vec<String>>) {
        for (axis, allowed) in filter {
            let at = self.axis(axis);
            self.rows.retain(|r| {
                at.and_then(|i| r.axes[i].as_ref())
                    .is_some_and(|v| allowed.contains(v))
            });
        }
    }
}

/// Renders an axis value as table text: strings bare, everything else as compact JSON.
pub fn axis_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds the long table of `plan` from the database's final metrics and task rows.
pub fn long_table(
    plan: &Plan,
    final_metrics: &HashMap<TaskKey, Vec<(String, f64)>>,
    rows: &HashMap<TaskKey, TaskRow>,
    sel: &MetricSel,
) -> LongTable {
    let axes: Vec<String> = plan
        .cells
        .iter()
        .flat_map(|c| c.axes.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut result_tasks: Vec<Vec<usize>> = vec![Vec::new(); plan.cells.len()];
    for (i, t) in plan.tasks.iter().enumerate() {
        for &c in &t.cells {
            if let Some(list) = result_tasks.get_mut(c) {
                list.push(i);
            }
        }
    }
    let mut out = Vec::new();
    for (c, cell) in plan.cells.iter().enumerate() {
        let cell_axes: Vec<Option<String>> = axes
            .iter()
            .map(|a| cell.axes.get(a).map(axis_text))
            .collect();
        let Some(last_stage) = result_tasks[c].iter().map(|&i| plan.tasks[i].stage).max() else {
            continue;
        };
        let any_failed = result_tasks[c].iter().any(|&i| {
            let r = rows.get(&plan.tasks[i].key);
            r.is_some_and(|r| {
                r.done_attempt.is_none()
                    && r.last_attempt
                        .as_ref()
                        .is_some_and(|a| a.state == AttemptState::Failed)
            })
        });
        for &i in result_tasks[c]
            .iter()
            .filter(|&&i| plan.tasks[i].stage == last_stage)
        {
            let task = &plan.tasks[i];
            let row = rows.get(&task.key);
            let done = row.is_some_and(|r| r.done_attempt.is_some());
            let metrics = final_metrics.get(&task.key);
            let wanted = match sel {
                MetricSel::All => None,
                MetricSel::Primary => Some(row.and_then(|r| r.primary_metric.clone())),
                MetricSel::Named(n) => Some(Some(n.clone())),
            };
            let mut pushed = false;
            if done {
                for (name, value) in metrics.into_iter().flatten() {
                    let take = match &wanted {
                        None => true,
                        Some(Some(w)) => w == name,
                        Some(None) => false,
                    };
                    if take {
                        out.push(LongRow {
                            cell: c,
                            axes: cell_axes.clone(),
                            task: task.key.clone(),
                            metric: name.clone(),
                            value: Some(*value),
                            state: CellState::Ok,
                        });
                        pushed = true;
                    }
                }
            }
            if !pushed {
                let metric = match &wanted {
                    Some(Some(w)) => w.clone(),
                    Some(None) if done => "(no primary metric)".to_string(),
                    _ => match sel {
                        MetricSel::Primary => "primary".to_string(),
                        _ => String::new(),
                    },
                };
                out.push(LongRow {
                    cell: c,
                    axes: cell_axes.clone(),
                    task: task.key.clone(),
                    metric,
                    value: None,
                    state: if any_failed {
                        CellState::Failed
                    } else {
                        CellState::Missing
                    },
                });
            }
        }
    }
    LongTable { axes, rows: out }
}
