//! The reports a finished `mlvf run` leaves behind: every `[[table]]` of the manifest as text
//! (printed), CSV, Markdown and a heatmap PNG under `<store>/reports/<sweep>/`, written
//! atomically so a half-written file is never read as a report.
//!
//! A manifest without `[[table]]`s gets one default table: every axis that varies (except
//! `benchmark` and `seed`) labels the rows, `benchmark` the columns, primary metrics.

use crate::db::Db;
use crate::plan::{Plan, TableSpec};
use crate::report::render::{render_wide, Format};
use crate::report::{long_table, pivot, MetricSel, PivotSpec, WideTable};
use anyhow::Result;
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

/// Where the reports of `sweep` live under a store root.
pub fn reports_dir(store: &Path, sweep: &str) -> PathBuf {
    store.join("reports").join(sweep)
}

/// The tables a sweep reports: its `[[table]]`s, or the default table.
pub fn tables_of(plan: &Plan) -> Vec<TableSpec> {
    if !plan.tables.is_empty() {
        return plan.tables.clone();
    }
    let mut rows: Vec<String> = Vec::new();
    for cell in &plan.cells {
        for (axis, _) in cell.axes.iter() {
            if axis == "benchmark" || axis == "seed" || rows.contains(axis) {
                continue;
            }
            let first = plan.cells[0].axes.get(axis);
            if plan.cells.iter().any(|c| c.axes.get(axis) != first) {
                rows.push(axis.clone());
            }
        }
    }
    if rows.is_empty() {
        rows.push("fusion".into());
    }
    vec![TableSpec {
        name: "main".into(),
        rows,
        cols: vec!["benchmark".into()],
        metric: "primary".into(),
        average: false,
    }]
}

/// Pivots `spec` from the database.
pub fn wide_table(plan: &Plan, db: &Db, spec: &TableSpec) -> Result<WideTable> {
    let finals = db.final_metrics()?;
    let rows = db.task_rows()?;
    let long = long_table(plan, &finals, &rows, &MetricSel::parse(&spec.metric));
    let mut wide = pivot(
        &long,
        &PivotSpec {
            rows: spec.rows.clone(),
            cols: spec.cols.clone(),
            baseline_delta: false,
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
    let dir = reports_dir(&plan.store, &plan.sweep);
    let mut out = Vec::new();
    for spec in tables_of(plan) {
        let wide = wide_table(plan, &db, &spec)?;
        let name = if spec.name.is_empty() {
            "table".to_string()
        } else {
            spec.name.clone()
        };
        let csv = dir.join(format!("{name}.csv"));
        let markdown = dir.join(format!("{name}.md"));
        let png = dir.join(format!("{name}.png"));
        crate::store::write_atomic(&csv, render_wide(&wide, Format::Csv)?.as_bytes())?;
        crate::store::write_atomic(&markdown, render_wide(&wide, Format::Md)?.as_bytes())?;
        let title = format!("{}: {} ({})", plan.sweep, name, spec.metric);
        crate::store::write_atomic(&png, &super::heatmap::heatmap_png(&wide, &title)?)?;
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
