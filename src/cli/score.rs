//! `mlvf score`: re-score predictions of a benchmark and print every metric.
//!
//! Reads our prediction cache or an lmms-eval `--log_samples` JSONL (matched by `id`, else by
//! `doc_id` as the row index of `data.jsonl`), scores with the benchmark's scorer and prints
//! `{"task", "scorer", "metrics", "primary", "n", "missing", …}` (JSON by default). Optionally
//! writes the lmms-eval-shaped samples log and results JSON.

use crate::cli::UserError;
use crate::eval::output::{write_results_json, write_samples_jsonl, RunInfo};
use crate::eval::{load_predictions, score_benchmark, Benchmark};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// How `mlvf score` prints its result.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScoreFormat {
    /// One JSON object.
    Json,
    /// One metric per line.
    Text,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Benchmark directory (manifest.json + data.jsonl + images/, format mmeval-jsonl/1).
    #[arg(long, value_name = "DIR")]
    pub benchmark: PathBuf,
    /// Predictions: an mlvf cache or an lmms-eval --log_samples JSONL.
    #[arg(long, value_name = "FILE.jsonl")]
    pub predictions: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: ScoreFormat,
    /// Also write the per-sample log in lmms-eval's --log_samples shape.
    #[arg(long, value_name = "FILE.jsonl")]
    pub samples_out: Option<PathBuf>,
    /// Also write a results JSON in lmms-eval's shape.
    #[arg(long, value_name = "FILE.json")]
    pub results_out: Option<PathBuf>,
    /// Score with this scorer instead of the manifest's (e.g. compare rules on the same answers).
    #[arg(long, value_name = "NAME")]
    pub scorer: Option<String>,
    /// Override the manifest's scorer_version (head-2026-08, classic-v0.4, classic-v0.3).
    #[arg(long, value_name = "VERSION")]
    pub scorer_version: Option<String>,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let user = |e: anyhow::Error| anyhow::Error::new(UserError(format!("{e:#}")));
    let mut bench = Benchmark::load(&args.benchmark).map_err(user)?;
    if args.scorer.is_some() || args.scorer_version.is_some() {
        let m = &mut bench.manifest;
        if let Some(s) = &args.scorer {
            m.scorer = s.clone();
        }
        if let Some(v) = &args.scorer_version {
            m.scorer_version = Some(v.clone());
        }
        let scorer = bench.scorer().map_err(user)?;
        // A different scorer may not have the manifest's primary metric: take its default.
        if !scorer
            .metric_names()
            .contains(&bench.manifest.report.primary.as_str())
        {
            let (primary, scale) = scorer.default_report();
            bench.manifest.report.primary = primary.to_string();
            bench.manifest.report.scale = scale;
        }
    }
    if !args.predictions.is_file() {
        return Err(UserError(format!(
            "predictions file {} does not exist",
            args.predictions.display()
        ))
        .into());
    }
    let preds = load_predictions(&args.predictions, &bench, false).map_err(user)?;
    if preds.by_index.is_empty() {
        return Err(UserError(format!(
            "{} holds no prediction for any sample of {:?} ({} lines matched nothing)",
            args.predictions.display(),
            bench.manifest.task,
            preds.unmatched
        ))
        .into());
    }
    let report = score_benchmark(&bench, &preds).map_err(user)?;
    if let Some(path) = &args.samples_out {
        write_samples_jsonl(path, &bench, &report)?;
    }
    if let Some(path) = &args.results_out {
        write_results_json(path, &bench, &report, &RunInfo::default())?;
    }
    match args.format {
        ScoreFormat::Json => {
            let mut out = report.summary_json(bench.manifest.report.scale);
            out["unmatched"] = json!(preds.unmatched);
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ScoreFormat::Text => {
            println!(
                "task      {} (scorer {}, filter {})",
                report.task, report.scorer, report.filter
            );
            println!(
                "samples   {} scored, {} missing, {} in incomplete groups",
                report.n, report.missing, report.incomplete_groups
            );
            if let Some(v) = report.primary_value {
                println!(
                    "primary   {} = {:.4} (×{} = {:.2})",
                    report.primary,
                    v,
                    bench.manifest.report.scale,
                    v * bench.manifest.report.scale
                );
            }
            let width = report.metrics.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in &report.metrics {
                println!("  {k:<width$}  {v:.6}");
            }
            let b = &report.breakdown;
            if let (Some(answer), Some(v)) = (&b.majority_answer, b.majority_value) {
                println!(
                    "majority  always {answer:?}: {} = {v:.4} (×{} = {:.2})",
                    report.primary,
                    bench.manifest.report.scale,
                    v * bench.manifest.report.scale
                );
            }
            if let Some(field) = b.type_field {
                println!("by {field} (accuracy ×100; majority answer and its accuracy)");
                let width = b.types.keys().map(String::len).max().unwrap_or(0);
                for (t, s) in &b.types {
                    println!(
                        "  {t:<width$}  n {:>5}  acc {:>6.2}  majority {:?} {:.2}",
                        s.n, s.acc, s.majority_answer, s.majority
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
