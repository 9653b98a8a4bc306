//! The long results table: one row per grid cell × metric, with every axis value.
//!
//! A cell's results are the final metrics (step = null) of the tasks that serve it at its most
//! downstream stage: its eval task in a full sweep, plus one eval per grounding control
//! (`[eval] controls`), whose metrics carry their own names (`mg`, `blank/primary_score`, …)
//! and which mark nothing primary. A cell with no value for the selected metric gets one row
//! with no value and state `missing` or `failed`, naming the task that should supply it.

use crate::db::{AttemptState, TaskRow};
use crate::task::{Plan, TaskKey};
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
        let last: Vec<&crate::task::Task> = result_tasks[c]
            .iter()
            .map(|&i| &plan.tasks[i])
            .filter(|t| t.stage == last_stage)
            .collect();
        let is_done =
            |t: &crate::task::Task| rows.get(&t.key).is_some_and(|r| r.done_attempt.is_some());
        let mut pushed = false;
        for task in last.iter().filter(|t| is_done(t)) {
            let wanted = match sel {
                MetricSel::All => None,
                MetricSel::Primary => {
                    Some(rows.get(&task.key).and_then(|r| r.primary_metric.clone()))
                }
                MetricSel::Named(n) => Some(Some(n.clone())),
            };
            for (name, value) in final_metrics.get(&task.key).into_iter().flatten() {
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
            // The task still to run is the one that would supply the value.
            let pending = last.iter().find(|t| !is_done(t));
            let metric = match sel {
                MetricSel::Named(w) => w.clone(),
                MetricSel::Primary if pending.is_none() => "(no primary metric)".to_string(),
                MetricSel::Primary => "primary".to_string(),
                MetricSel::All => String::new(),
            };
            out.push(LongRow {
                cell: c,
                axes: cell_axes.clone(),
                task: pending.unwrap_or(&last[0]).key.clone(),
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
    LongTable { axes, rows: out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Cell, StageKind, Task};

    /// One cell served by a with-image eval `e` (primary `primary_score`) and a blank control
    /// `b` depending on it (no primary; `mg`, `blank/primary_score`).
    fn plan() -> Plan {
        let task = |k: &str, config: serde_json::Value, deps: Vec<&str>| Task {
            key: TaskKey(k.repeat(64)),
            stage: StageKind::Eval,
            version: 1,
            config,
            deps: deps.into_iter().map(|d| TaskKey(d.repeat(64))).collect(),
            cells: vec![0],
            axes: Default::default(),
            runtime: Default::default(),
        };
        Plan {
            sweep: "s".into(),
            manifest: "s.toml".into(),
            store: "store".into(),
            cells: vec![Cell {
                axes: [("benchmark".to_string(), serde_json::json!("pope"))].into(),
            }],
            tasks: vec![
                task("e", serde_json::json!({}), vec![]),
                task("b", serde_json::json!({"control": "blank"}), vec!["e"]),
            ],
            tables: vec![],
            executor: Default::default(),
        }
    }

    fn done(primary: Option<&str>) -> TaskRow {
        TaskRow {
            stage: Some(StageKind::Eval),
            done_attempt: Some(1),
            primary_metric: primary.map(str::to_string),
            last_attempt: None,
        }
    }

    fn values(t: &LongTable) -> Vec<(String, Option<f64>, CellState, String)> {
        t.rows
            .iter()
            .map(|r| {
                (
                    r.metric.clone(),
                    r.value,
                    r.state,
                    r.task.0[..1].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_cells_control_evals_add_their_metrics_and_leave_primary_alone() {
        let p = plan();
        let (e, b) = (p.tasks[0].key.clone(), p.tasks[1].key.clone());
        let mut finals = HashMap::from([(e.clone(), vec![("primary_score".to_string(), 80.0)])]);
        let mut rows = HashMap::from([(e.clone(), done(Some("primary_score")))]);
        let table = |finals: &HashMap<_, _>, rows: &HashMap<_, _>, metric: &str| {
            values(&long_table(&p, finals, rows, &MetricSel::parse(metric)))
        };
        let primary = [(
            "primary_score".into(),
            Some(80.0),
            CellState::Ok,
            "e".into(),
        )];
        // Before the control ran: primary is there, `mg` is missing and names the control task.
        assert_eq!(table(&finals, &rows, "primary"), primary);
        assert_eq!(
            table(&finals, &rows, "mg"),
            [("mg".into(), None, CellState::Missing, "b".into())]
        );
        finals.insert(
            b.clone(),
            vec![
                ("blank/primary_score".to_string(), 50.0),
                ("mg".to_string(), 30.0),
            ],
        );
        rows.insert(b, done(None));
        assert_eq!(
            table(&finals, &rows, "primary"),
            primary,
            "one primary per cell: the control marks none"
        );
        assert_eq!(
            table(&finals, &rows, "mg"),
            [("mg".into(), Some(30.0), CellState::Ok, "b".into())]
        );
        assert_eq!(
            long_table(&p, &finals, &rows, &MetricSel::All).rows.len(),
            3
        );
    }
}
