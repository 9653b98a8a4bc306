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

/// The values in one table cell, and the values of the axes that must not vary inside it.
type Group = (Vec<f64>, Vec<Option<String>>);

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

    // The baseline of a row: cells with fusion = baseline that agree on every axis they have
    // except fusion and layers; the same seed if the baseline ran it (paired differences),
    // else the mean over the baseline's seeds.
    let baseline_of = |row: &crate::report::LongRow| -> Option<f64> {
        let fusion = long.axis("fusion")?;
        let layers = long.axis("layers");
        let seed = long.axis(SEED_AXIS);
        let candidates: Vec<&crate::report::LongRow> = long
            .rows
            .iter()
            .filter(|b| b.state == CellState::Ok && b.metric == row.metric && b.value.is_some())
            .filter(|b| b.axes[fusion].as_deref() == Some("baseline"))
            .filter(|b| {
                (0..long.axes.len())
                    .filter(|&i| i != fusion && Some(i) != layers && Some(i) != seed)
                    .all(|i| b.axes[i].is_none() || b.axes[i] == row.axes[i])
            })
            .collect();
        let same_seed: Vec<f64> = candidates
            .iter()
            .filter(|b| seed.is_none_or(|s| b.axes[s] == row.axes[s]))
            .filter_map(|b| b.value)
            .collect();
        let vals = if same_seed.is_empty() {
            candidates.iter().filter_map(|b| b.value).collect()
        } else {
            same_seed
        };
        (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
    };

    // (row labels, column labels) → (values over seeds, the other axes' values).
    let mut groups: BTreeMap<(Vec<String>, Vec<String>), Group> = BTreeMap::new();
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
        let top = best_mean(cells.iter().filter_map(|r| r[c].map(|a| a.mean)), lower);
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

/// The best of a column's means (NaN ignored): the smallest if `lower` is better, else the
/// largest; ±∞ for a column without values, which no cell equals.
fn best_mean(means: impl Iterator<Item = f64>, lower: bool) -> f64 {
    let means = means.filter(|v| !v.is_nan());
    if lower {
        means.fold(f64::INFINITY, f64::min)
    } else {
        means.fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The name of the column [`add_average`] appends.
pub const AVERAGE_COLUMN: &str = "avg";

/// Appends an `avg` column: each row's plain mean over its columns' means (the paper's "Avg",
/// which averages the benchmarks' primary scores on their reporting scales), only for rows
/// with a value in every column. Seeds are averaged first, so the column carries no spread.
pub fn add_average(t: &mut WideTable) {
    let avgs: Vec<Option<Agg>> = t
        .cells
        .iter()
        .map(|row| {
            let vals: Option<Vec<Agg>> = row.iter().copied().collect();
            let vals = vals.filter(|v| !v.is_empty())?;
            Some(Agg {
                mean: vals.iter().map(|a| a.mean).sum::<f64>() / vals.len() as f64,
                std: None,
                n: vals.iter().map(|a| a.n).min().unwrap_or(0),
            })
        })
        .collect();
    let top = best_mean(
        avgs.iter().flatten().map(|a| a.mean),
        lower_is_better(&t.metric),
    );
    for (r, a) in avgs.into_iter().enumerate() {
        t.best[r].push(a.is_some_and(|a| a.mean == top));
        t.cells[r].push(a);
    }
    t.cols.push(AVERAGE_COLUMN.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LongRow;
    use crate::task::TaskKey;

    fn table(rows: &[(&str, Option<&str>, &str, u64, f64)], metric: &str) -> LongTable {
        LongTable {
            axes: vec![
                "benchmark".into(),
                "fusion".into(),
                "layers".into(),
                "seed".into(),
            ],
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, (f, l, b, s, v))| LongRow {
                    cell: i,
                    axes: vec![
                        Some(b.to_string()),
                        Some(f.to_string()),
                        l.map(str::to_string),
                        Some(s.to_string()),
                    ],
                    task: TaskKey(format!("{i:064}")),
                    metric: metric.into(),
                    value: Some(*v),
                    state: CellState::Ok,
                })
                .collect(),
        }
    }

    fn spec(delta: bool) -> PivotSpec {
        PivotSpec {
            rows: vec!["fusion".into(), "layers".into()],
            cols: vec!["benchmark".into()],
            baseline_delta: delta,
        }
    }

    #[test]
    fn seeds_aggregate_to_mean_and_sample_std_and_best_is_marked() {
        let t = table(
            &[
                ("baseline", None, "gqa", 0, 0.50),
                ("baseline", None, "gqa", 1, 0.52),
                ("E_D", Some("18"), "gqa", 0, 0.60),
                ("E_D", Some("18"), "gqa", 1, 0.64),
            ],
            "accuracy",
        );
        let w = pivot(&t, &spec(false)).unwrap();
        assert_eq!(
            w.rows,
            vec![
                vec!["baseline".to_string(), "-".into()],
                vec!["E_D".into(), "18".into()]
            ]
        );
        let a = w.cells[1][0].unwrap();
        assert!((a.mean - 0.62).abs() < 1e-12);
        // Sample std (n - 1): sqrt((0.02² + 0.02²) / 1).
        assert!((a.std.unwrap() - 0.02 * 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(a.n, 2);
        assert_eq!(w.best, vec![vec![false], vec![true]]);
    }

    #[test]
    fn baseline_delta_pairs_seeds_and_lower_is_better_for_losses() {
        let t = table(
            &[
                ("baseline", None, "gqa", 0, 0.50),
                ("baseline", None, "gqa", 1, 0.60),
                ("E_D", Some("18"), "gqa", 0, 0.55),
                ("E_D", Some("18"), "gqa", 1, 0.65),
            ],
            "loss",
        );
        let w = pivot(&t, &spec(true)).unwrap();
        let d = w.cells[1][0].unwrap();
        assert!((d.mean - 0.05).abs() < 1e-12, "{d:?}");
        assert!(
            d.std.unwrap() < 1e-12,
            "paired differences have no spread: {d:?}"
        );
        // For a loss the smaller value (the baseline's delta, 0) is best.
        assert_eq!(w.best, vec![vec![true], vec![false]]);
    }

    #[test]
    fn an_unlabelled_varying_axis_is_an_error() {
        let t = table(
            &[
                ("E_D", Some("18"), "gqa", 0, 0.5),
                ("E_D", Some("18"), "pope", 0, 0.7),
            ],
            "acc",
        );
        let s = PivotSpec {
            rows: vec!["fusion".into(), "layers".into()],
            cols: vec![],
            baseline_delta: false,
        };
        let err = pivot(&t, &s).unwrap_err().to_string();
        assert!(err.contains("axis `benchmark` varies"), "{err}");
        let s = PivotSpec {
            rows: vec!["encoder".into()],
            cols: vec![],
            baseline_delta: false,
        };
        assert!(pivot(&t, &s)
            .unwrap_err()
            .to_string()
            .contains("no axis `encoder`"));
    }

    #[test]
    fn the_average_column_is_the_row_mean_over_complete_rows_and_marks_the_best() {
        let mut t = WideTable {
            row_axes: vec!["fusion".into()],
            rows: vec![vec!["E_D".into()], vec!["E_M".into()], vec!["I_D".into()]],
            cols: vec!["gqa".into(), "pope".into()],
            cells: vec![
                vec![Some(agg(40.0)), Some(agg(80.0))],
                vec![Some(agg(50.0)), Some(agg(60.0))],
                vec![Some(agg(90.0)), None],
            ],
            best: vec![vec![false, true], vec![false, false], vec![true, false]],
            metric: "primary_score".into(),
            baseline_delta: false,
            gaps: vec![],
        };
        add_average(&mut t);
        assert_eq!(t.cols.last().unwrap(), AVERAGE_COLUMN);
        assert_eq!(t.cells[0][2].unwrap().mean, 60.0);
        assert_eq!(t.cells[1][2].unwrap().mean, 55.0);
        assert!(
            t.cells[2][2].is_none(),
            "a row with a missing benchmark has no average"
        );
        assert_eq!(
            t.best.iter().map(|r| r[2]).collect::<Vec<_>>(),
            vec![true, false, false]
        );
    }

    fn agg(mean: f64) -> Agg {
        Agg {
            mean,
            std: None,
            n: 1,
        }
    }
}
