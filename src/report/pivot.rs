//! Pivoting the long table into a paper-style table: rows and columns labelled by axis values,
//! seeds aggregated (mean, sample std, n), the best value per column marked, and optionally
//! each value's difference to its baseline cell.

use crate::report::long::{CellState, LongTable};
use crate::report::lower_is_better;
use anyhow::bail;
use std::collections::{BTreeMap, BTreeSet};

/// The axis aggregated as repetitions rather than labelled.
pub const SEED_AXIS: &str = "seed";

/// How to pivot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PivotSpec {
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// Show each value minus its baseline cell's (the cell with `fusion = "baseline"` and the
    /// same values on every axis but fusion, layers and seed).
    pub baseline_delta: bool,
}

/// One table cell: the mean over seeds, their sample standard deviation (if n > 1) and n.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agg {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

/// A pivoted table.
#[derive(Clone, Debug, PartialEq)]
pub struct WideTable {
    pub row_axes: Vec<String>,
    /// Row labels, one value per row axis ("-" where the axis does not apply).
    pub rows: Vec<Vec<String>>,
    /// Column labels (column-axis values joined by "/", or the metric name if no column axes).
    pub cols: Vec<String>,
    pub cells: Vec<Vec<Option<Agg>>>,
    /// `best[r][c]`: the best value of column c is in row r (ties all marked).
    pub best: Vec<Vec<bool>>,
    /// The metric(s) shown.
    pub metric: String,
    pub baseline_delta: bool,
    /// Cells without a value, and why ("missing" / "failed" / "no baseline").
    pub gaps: Vec<String>,
}

impl WideTable {
    /// Whether any cell aggregates more than one seed.
    pub fn has_std(&self) -> bool {
        self.cells.iter().flatten().flatten().any(|a| a.n > 1)
    }
}

fn label(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_string())
}

fn aggregate(values: &[f64]) -> Agg {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
    });
    Agg { mean, std, n }
}

/// Pivots `long` (which should hold one metric per cell) by `spec`.
pub fn pivot(long: &LongTable, spec: &PivotSpec) -> anyhow::Result<WideTable> {
    for a in spec.rows.iter().chain(&spec.cols) {
        if long.axis(a).is_none() && a != "metric" {
            bail!(
                "no axis `{a}` in this sweep's cells (axes: {}; `metric` also works)",
                long.axes.join(", ")
            );
        }
    }
    let pick = |row: &crate::report::LongRow, names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(|n| {
                if n == "metric" {
                    row.metric.clone()
                } else {
                    label(&row.axes[long.axis(n).unwrap()])
                }
            })
            .collect()
    };
    // Every other axis (but seed) must be constant within a table cell, or the mean would mix
    // different models.
    let other: Vec<usize> = long
        .axes
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            !spec.rows.contains(a) && !spec.cols.contains(a) && a.as_str() != SEED_AXIS
        })
        .map(|(i, _)| i)
        .collect();

    let baseline_of = |row: &crate::report::LongRow| -> Option<f64> {
        let fusion = long.axis("fusion")?;
        let ignore: Vec<Option<usize>> =
            vec![Some(fusion), long.axis("layers"), long.axis(SEED_AXIS)];
        let vals: Vec<f64> = long
            .rows
            .iter()
            .filter(|b| b.state == CellState::Ok && b.metric == row.metric)
            .filter(|b| b.axes[fusion].as_deref() == Some("baseline"))
            .filter(|b| {
                (0..long.axes.len())
                    .filter(|i| !ignore.contains(&Some(*i)))
                    .all(|i| b.axes[i].is_none() || b.axes[i] == row.axes[i])
            })
            .filter_map(|b| b.value)
            .collect();
        (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
    };

    let mut groups: BTreeMap<(Vec<String>, Vec<String>), (Vec<f64>, Vec<Option<String>>)> =
        BTreeMap::new();
    let mut row_keys: Vec<Vec<String>> = Vec::new();
    let mut col_keys: Vec<Vec<String>> = Vec::new();
    let mut gaps = Vec::new();
    let mut metrics = BTreeSet::new();
    for row in &long.rows {
        let rk = pick(row, &spec.rows);
        let ck = pick(row, &spec.cols);
        if !row_keys.contains(&rk) {
            row_keys.push(rk.clone());
        }
        if !col_keys.contains(&ck) {
            col_keys.push(ck.clone());
        }
        let where_ = long
            .axes
            .iter()
            .zip(&row.axes)
            .filter_map(|(a, v)| v.as_ref().map(|v| format!("{a}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        let Some(mut value) = row.value.filter(|_| row.state == CellState::Ok) else {
            gaps.push(format!(
                "{} ({where_}{})",
                row.state.as_str(),
                if row.metric.is_empty() {
                    String::new()
                } else {
                    format!(", metric {}", row.metric)
                }
            ));
            continue;
        };
        metrics.insert(row.metric.clone());
        if spec.baseline_delta {
            match baseline_of(row) {
                Some(b) => value -= b,
                None => {
                    gaps.push(format!("no baseline ({where_})"));
                    continue;
                }
            }
        }
        let entry = groups.entry((rk, ck)).or_insert_with(|| {
            (
                Vec::new(),
                other.iter().map(|&i| row.axes[i].clone()).collect(),
            )
        });
        for (slot, &i) in other.iter().enumerate() {
            if entry.1[slot] != row.axes[i] {
                bail!(
                    "axis `{}` varies within one table cell ({} vs {}); add it to --rows or --cols, or pick a [[table]] that labels it",
                    long.axes[i],
                    label(&entry.1[slot]),
                    label(&row.axes[i])
                );
            }
        }
        entry.0.push(value);
    }
    row_keys.sort();
    let cells: Vec<Vec<Option<Agg>>> = row_keys
        .iter()
        .map(|rk| {
            col_keys
                .iter()
                .map(|ck| {
                    groups
                        .get(&(rk.clone(), ck.clone()))
                        .map(|(v, _)| aggregate(v))
                })
                .collect()
        })
        .collect();
    let metric = metrics.into_iter().collect::<Vec<_>>().join(", ");
    let lower = lower_is_better(&metric);
    let mut best = vec![vec![false; col_keys.len()]; row_keys.len()];
    for c in 0..col_keys.len() {
        let vals = cells
            .iter()
            .map(|r| r[c].map(|a| a.mean))
            .filter(|v| v.is_some_and(|v| !v.is_nan()));
        let top = if lower {
            vals.flatten().fold(f64::INFINITY, f64::min)
        } else {
            vals.flatten().fold(f64::NEG_INFINITY, f64::max)
        };
        for r in 0..row_keys.len() {
            best[r][c] = cells[r][c].is_some_and(|a| a.mean == top);
        }
    }
    let cols = col_keys
        .into_iter()
        .map(|k| {
            if k.is_empty() {
                metric.clone()
            } else {
                k.join("/")
            }
        })
        .collect();
    Ok(WideTable {
        row_axes: spec.rows.clone(),
        rows: row_keys,
        cols,
        cells,
        best,
        metric,
        baseline_delta: spec.baseline_delta,
        gaps,
    })
}
