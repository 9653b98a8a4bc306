//! The reports a finished `mlvf run` leaves behind: every `[[table]]` of the manifest as text
//! (printed), CSV, Markdown and a heatmap PNG under `<store>/reports/<sweep>/`, written
//! atomically so a half-written file is never read as a report.
//!
//! A manifest without `[[table]]`s gets one default table: every axis that varies (except
//! `benchmark` and `seed`) labels the rows, `benchmark` the columns, primary metrics.

use crate::db::{Db, TaskRow};
use crate::manifest::TableSpec;
use crate::report::render::{render_wide, Format};
use crate::report::{long_table, pivot, MetricSel, PivotSpec, WideTable};
use crate::task::{Plan, TaskKey};
use anyhow::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One table written to disk.
#[derive(Debug)]
pub struct PublishedTable {
    pub name: String,
    /// The table as text, for the terminal (gaps listed at the end).
    pub text: String,
    pub csv: PathBuf,
    pub markdown: PathBuf,
    pub png: PathBuf,
}

/// The heading of a table's heatmap: the sweep, the table's name when it has one, the metric.
pub fn heatmap_title(sweep: &str, table: &str, metric: &str) -> String {
    if table.is_empty() {
        format!("{sweep}: {metric}")
    } else {
        format!("{sweep}: {table} ({metric})")
    }
}

/// Where the reports of `sweep` live under a store root.
pub fn reports_dir(store: &Path, sweep: &str) -> PathBuf {
    store.join("reports").join(sweep)
}

/// The tables a sweep reports: its `[[table]]`s, or the default table.
pub fn tables_of(plan: &Plan) -> Vec<TableSpec> {
    if !plan.tables.is_empty() {
        return plan.tables.clone();
    }
    // Every axis any cell has, in first-seen order; an axis varies when some cell's value (or
    // its absence) differs from the first cell's.
    let mut axes: Vec<&String> = Vec::new();
    for cell in &plan.cells {
        for axis in cell.axes.keys() {
            if !axes.contains(&axis) {
                axes.push(axis);
            }
        }
    }
    let first = plan.cells.first();
    let mut rows: Vec<String> = axes
        .into_iter()
        .filter(|a| a.as_str() != "benchmark" && a.as_str() != "seed")
        .filter(|a| {
            let v0 = first.and_then(|c| c.axes.get(*a));
            plan.cells.iter().any(|c| c.axes.get(*a) != v0)
        })
        .cloned()
        .collect();
    if rows.is_empty() {
        rows.push("fusion".into());
    }
    vec![TableSpec {
        name: "main".into(),
        rows,
        cols: vec!["benchmark".into()],
        metric: "primary".into(),
        average: false,
        filter: Default::default(),
    }]
}

/// Pivots `spec` (its `average` column included) from the database's final metrics and task
/// rows, optionally as differences to the baseline cells. Shared by the reports a run writes
/// and `mlvf results`.
pub fn wide_table(
    plan: &Plan,
    finals: &HashMap<TaskKey, Vec<(String, f64)>>,
    rows: &HashMap<TaskKey, TaskRow>,
    spec: &TableSpec,
    baseline_delta: bool,
) -> Result<WideTable> {
    let mut long = long_table(plan, finals, rows, &MetricSel::parse(&spec.metric));
    long.retain_where(&spec.filter);
    let mut wide = pivot(
        &long,
        &PivotSpec {
            rows: spec.rows.clone(),
            cols: spec.cols.clone(),
            baseline_delta,
        },
    )?;
    if spec.average {
        crate::report::pivot::add_average(&mut wide);
    }
    Ok(wide)
}

/// Writes every table of the sweep (text, CSV, Markdown, PNG) and returns what was written.
pub fn publish_tables(plan: &Plan) -> Result<Vec<PublishedTable>> {
    let db = Db::open_read(&plan.store)?;
    let (finals, rows) = (db.final_metrics()?, db.task_rows()?);
    let dir = reports_dir(&plan.store, &plan.sweep);
    let mut out = Vec::new();
    for spec in tables_of(plan) {
        let wide = wide_table(plan, &finals, &rows, &spec, false)?;
        let name = if spec.name.is_empty() {
            "table".to_string()
        } else {
            spec.name.clone()
        };
        let csv = dir.join(format!("{name}.csv"));
        let markdown = dir.join(format!("{name}.md"));
        let png = dir.join(format!("{name}.png"));
        crate::atomic::write_atomic(&csv, render_wide(&wide, Format::Csv)?.as_bytes())?;
        crate::atomic::write_atomic(&markdown, render_wide(&wide, Format::Md)?.as_bytes())?;
        let title = heatmap_title(&plan.sweep, &name, &spec.metric);
        crate::atomic::write_atomic(&png, &super::heatmap::heatmap_png(&wide, &title)?)?;
        out.push(PublishedTable {
            name,
            text: render_wide(&wide, Format::Text)?,
            csv,
            markdown,
            png,
        });
    }
    Ok(out)
}
