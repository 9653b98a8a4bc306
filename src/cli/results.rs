//! `mlvf results`: result tables: long, pivoted, CSV/Markdown/JSON.

use crate::db::Db;
use crate::eval::Control;
use crate::manifest::TableSpec;
use crate::report::publish::wide_table;
use crate::report::render::{render_long, render_wide, Format};
use crate::report::{long_table, MetricSel};
use crate::task::{Plan, StageKind};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ResultsArgs {
    /// The sweep manifest.
    #[arg(required_unless_present_any = ["sweep", "plan_json"])]
    pub manifest: Option<PathBuf>,
    /// Store root (default: the manifest's, else `results`).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// A sweep recorded in the store, instead of a manifest.
    #[arg(long, conflicts_with = "manifest")]
    pub sweep: Option<String>,
    /// Axes labelling the rows (comma-separated), e.g. fusion,layers.
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
    /// Axes labelling the columns (comma-separated), e.g. benchmark.
    #[arg(long, value_delimiter = ',')]
    pub cols: Vec<String>,
    /// A metric name, or `primary` for the metric each eval task marks primary.
    #[arg(long)]
    pub metric: Option<String>,
    /// One of the manifest's [[table]]s (default: the first, if any and no --rows/--cols).
    #[arg(long)]
    pub table: Option<String>,
    /// The long table (one row per cell × metric), even if the manifest has [[table]]s.
    #[arg(long, conflicts_with_all = ["rows", "cols", "table"])]
    pub long: bool,
    /// Add an `avg` column: each row's mean over its columns (the paper's Avg; also
    /// `average = true` in a [[table]]).
    #[arg(long, conflicts_with = "long")]
    pub average: bool,
    /// Show each value minus its baseline cell's (fusion = baseline, same other axes).
    #[arg(long)]
    pub baseline_delta: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also draw the pivoted table as a heatmap PNG (colour = rank within each column, best
    /// outlined) into this file.
    #[arg(long, conflicts_with = "long")]
    pub plot: Option<PathBuf>,
    /// A plan saved as JSON instead of a manifest (tests and tools).
    #[arg(long, hide = true)]
    pub plan_json: Option<PathBuf>,
}

pub fn run(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let plan = match &args.sweep {
        Some(name) => {
            let root = args
                .store
                .clone()
                .unwrap_or_else(|| PathBuf::from("results"));
            crate::store::sweeps::read_sweep(&root, name)?
        }
        None => super::run::load_plan(
            args.manifest.as_deref(),
            args.plan_json.as_deref(),
            args.store.as_deref(),
        )?,
    };
    if let Some(hint) = args.metric.as_deref().and_then(|m| control_hint(&plan, m)) {
        eprintln!("note: {hint}");
    }
    let db = Db::open_read(&plan.store)?;
    let finals = db.final_metrics()?;
    let rows = db.task_rows()?;

    let table = if args.long {
        None
    } else if !args.rows.is_empty() || !args.cols.is_empty() {
        Some(TableSpec {
            name: String::new(),
            rows: args.rows.clone(),
            cols: args.cols.clone(),
            metric: "primary".to_string(),
            average: false,
            filter: Default::default(),
        })
    } else if let Some(name) = &args.table {
        let t = plan
            .tables
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = plan.tables.iter().map(|t| t.name.as_str()).collect();
                super::UserError(format!(
                    "sweep `{}` has no table `{name}` (tables: {})",
                    plan.sweep,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })?;
        Some(t.clone())
    } else {
        plan.tables.first().cloned()
    };

    if table.is_none() && args.plot.is_some() {
        return Err(super::UserError(
            "--plot draws a pivoted table: give --rows/--cols or --table, or a manifest with a [[table]]".into(),
        )
        .into());
    }
    let text = match table {
        None => {
            let sel = args
                .metric
                .as_deref()
                .map(MetricSel::parse)
                .unwrap_or(MetricSel::All);
            render_long(&long_table(&plan, &finals, &rows, &sel), args.format)?
        }
        Some(mut spec) => {
            if let Some(m) = &args.metric {
                spec.metric = m.clone();
            }
            spec.average |= args.average;
            let wide = wide_table(&plan, &finals, &rows, &spec, args.baseline_delta)
                .map_err(|e| super::UserError(format!("{e:#}")))?;
            if matches!(args.format, Format::Csv) && !wide.gaps.is_empty() {
                eprintln!("{} cell(s) without a value:", wide.gaps.len());
                for g in &wide.gaps {
                    eprintln!("- {g}");
                }
            }
            if let Some(png) = &args.plot {
                let title =
                    crate::report::publish::heatmap_title(&plan.sweep, &spec.name, &wide.metric);
                crate::atomic::write_atomic(
                    png,
                    &crate::report::heatmap::heatmap_png(&wide, &title)?,
                )?;
                eprintln!("plot: {}", png.display());
            }
            render_wide(&wide, args.format)?
        }
    };
    match &args.output {
        Some(path) => crate::atomic::write_atomic(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A note when `metric` is one only the evals of a grounding control record (`mg`, `mg_none/…`,
/// `blank/primary_score`) and the sweep plans none of them: every cell would just be missing.
fn control_hint(plan: &Plan, metric: &str) -> Option<String> {
    let control = Control::ALL.into_iter().find(|c| {
        let under = |prefix: &str| {
            metric
                .strip_prefix(prefix)
                .is_some_and(|r| r.starts_with('/'))
        };
        metric == c.gain_metric() || under(c.gain_metric()) || under(c.name())
    })?;
    let planned = plan.tasks.iter().any(|t| {
        t.stage == StageKind::Eval
            && t.config.get("control").and_then(|c| c.as_str()) == Some(control.name())
    });
    (!planned).then(|| {
        format!(
            "`{metric}` is recorded by the evals of the `{control}` grounding control, which this \
             sweep does not plan: add `controls = [\"{control}\"]` to [eval] (it reruns nothing \
             published)"
        )
    })
}
