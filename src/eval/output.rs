//! lmms-eval-shaped outputs (eval.md §5): a samples JSONL like `--log_samples` and a results JSON
//! like `<date>_results.json`, so existing tooling reads our numbers. Both are written to a
//! temporary file and renamed, so a half-written file is never taken for a result.

use crate::atomic::write_atomic;
use crate::eval::format::Benchmark;
use crate::eval::scoring::ScoreReport;
use anyhow::Result;
use serde_json::{json, Map, Value};
use std::path::Path;

/// What produced the predictions (lmms-eval's `config` block); all optional.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Model source, lmms-eval's `--model` (e.g. `mlvf`).
    pub model: Option<String>,
    /// Model arguments / checkpoint description.
    pub model_args: Option<String>,
    /// `--limit`, if the run was limited.
    pub limit: Option<usize>,
}

/// One samples-log line per scored sample: `doc_id`, `id`, `target`, `input`, `resps`,
/// `filtered_resps`, and one key per metric holding that sample's payload.
pub fn sample_lines(bench: &Benchmark, report: &ScoreReport) -> Vec<Value> {
    report
        .samples
        .iter()
        .map(|(index, raw, scored)| {
            let s = &bench.samples[*index];
            let mut line = Map::new();
            line.insert("doc_id".into(), json!(index));
            line.insert("id".into(), json!(s.id));
            let target = match &s.answers {
                Some(a) if !a.is_empty() => json!(a).to_string(),
                _ => s.answer.clone(),
            };
            line.insert("target".into(), json!(target));
            line.insert("input".into(), json!(s.prompt));
            line.insert("resps".into(), json!([[raw]]));
            line.insert("filtered_resps".into(), json!([scored.filtered]));
            if let Some(p) = &scored.parsed {
                line.insert("parsed".into(), json!(p));
            }
            for (k, v) in &scored.payload {
                line.insert(k.clone(), v.clone());
            }
            Value::Object(line)
        })
        .collect()
}

/// Write the samples log (`samples_<task>.jsonl`).
pub fn write_samples_jsonl(path: &Path, bench: &Benchmark, report: &ScoreReport) -> Result<()> {
    let mut text = String::new();
    for line in sample_lines(bench, report) {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// The results document in lmms-eval's shape (`results[task]["<metric>,<filter>"]`, `configs`,
/// `versions`, `n-samples`, …) plus an `mlvf` block with what lmms-eval has no field for.
pub fn results_json(bench: &Benchmark, report: &ScoreReport, info: &RunInfo) -> Value {
    let m = &bench.manifest;
    let task = &report.task;
    let mut res = Map::new();
    res.insert("alias".into(), json!(task));
    for (k, v) in &report.metrics {
        res.insert(format!("{k},{}", report.filter), json!(v));
        // Aggregations here are not bootstrapped; lmms-eval writes "N/A" for custom ones too.
        res.insert(format!("{k}_stderr,{}", report.filter), json!("N/A"));
    }
    res.insert("samples".into(), json!(report.n));
    let higher: Map<String, Value> = report
        .metrics
        .keys()
        .map(|k| (k.clone(), json!(!k.ends_with("fallbacks"))))
        .collect();
    let metric_list: Vec<Value> = m
        .aggregates
        .iter()
        .cloned()
        .chain(std::iter::once(
            json!({"metric": report.primary, "primary": true}),
        ))
        .collect();
    json!({
        "results": {task: res},
        "group_subtasks": {task: []},
        "configs": {task: {
            "task": task,
            "dataset_path": m.source.get("hf_dataset"),
            "dataset_name": m.source.get("config"),
            "test_split": m.source.get("split"),
            "generation_kwargs": {"max_new_tokens": m.generation.max_new_tokens, "do_sample": !m.generation.greedy,
                                   "temperature": 0, "num_beams": 1},
            "metric_list": metric_list,
            "prompt_profile": m.prompt_profile,
        }},
        "versions": {task: m.scorer_version.clone().unwrap_or_else(|| "head-2026-08".into())},
        "n-shot": {task: 0},
        "higher_is_better": {task: higher},
        "n-samples": {task: {"original": bench.samples.len(), "effective": report.n}},
        "config": {"model": info.model, "model_args": info.model_args, "batch_size": "1", "limit": info.limit,
                   "random_seed": 0},
        "date": utc_date_id(),
        "mlvf": {
            "version": env!("CARGO_PKG_VERSION"),
            "benchmark_dir": bench.dir.display().to_string(),
            "format": m.format,
            "scorer": report.scorer,
            "scorer_options": m.scorer_options,
            "data_blake3": bench.data_digest,
            "primary": {"metric": report.primary, "value": report.primary_value, "scale": m.report.scale},
            "missing": report.missing,
            "incomplete_groups": report.incomplete_groups,
            "source": m.source,
        },
    })
}

/// Write the results JSON (pretty-printed, like lmms-eval).
pub fn write_results_json(
    path: &Path,
    bench: &Benchmark,
    report: &ScoreReport,
    info: &RunInfo,
) -> Result<()> {
    let doc = results_json(bench, report, info);
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// `YYYYMMDD_HHMMSS` in UTC, lmms-eval's date id.
pub fn utc_date_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}_{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
