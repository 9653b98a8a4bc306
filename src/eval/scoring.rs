//! Scoring a benchmark from predictions, separate from generation: the same cached responses can
//! be re-scored after a scorer changes, and lmms-eval's own sample logs score the same way.

use crate::eval::breakdown::{breakdown, Breakdown};
use crate::eval::format::{Benchmark, Sample};
use crate::eval::predictions::PredictionSet;
use crate::eval::scorers::{Metrics, ScoreContext, Scored};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashSet};

/// The outcome of scoring one benchmark.
#[derive(Debug, Clone)]
pub struct ScoreReport {
    /// Task name from the manifest.
    pub task: String,
    /// Scorer name.
    pub scorer: String,
    /// lmms-eval filter name (`none`, `flexible-extract`).
    pub filter: String,
    /// Aggregated metrics.
    pub metrics: Metrics,
    /// Name of the primary metric (`report.primary`).
    pub primary: String,
    /// Its value, when it could be computed.
    pub primary_value: Option<f64>,
    /// Samples scored.
    pub n: usize,
    /// Samples without a prediction.
    pub missing: usize,
    /// Answered samples left out because their group (MME image, MMBench question, MMVP pair)
    /// has an unanswered member.
    pub incomplete_groups: usize,
    /// Per-sample results in data order: (sample index, raw response, judgement).
    pub samples: Vec<(usize, String, Scored)>,
    /// Accuracy per question type and the majority-answer baseline of the scored samples.
    pub breakdown: Breakdown,
}

/// Score `bench` from `preds`. Samples without a prediction are counted in `missing`; the
/// metrics cover the answered ones (and, for pairwise scorers, only complete groups).
pub fn score_benchmark(bench: &Benchmark, preds: &PredictionSet) -> Result<ScoreReport> {
    let scorer = bench.scorer()?;
    let missing = bench
        .samples
        .iter()
        .filter(|s| !preds.by_index.contains_key(&s.index))
        .count();
    let mut skip_groups: HashSet<&str> = HashSet::new();
    if scorer.needs_complete_groups() {
        for s in &bench.samples {
            if !preds.by_index.contains_key(&s.index) {
                if let Some(g) = &s.group {
                    skip_groups.insert(g.as_str());
                }
            }
        }
    }
    let mut ctx = ScoreContext::default();
    let mut samples = Vec::new();
    let mut incomplete_groups = 0;
    for s in &bench.samples {
        let Some(p) = preds.by_index.get(&s.index) else {
            continue;
        };
        if s.group.as_deref().is_some_and(|g| skip_groups.contains(g)) {
            incomplete_groups += 1;
            continue;
        }
        let scored = scorer.score(s, &p.response, &mut ctx).with_context(|| {
            format!(
                "scoring sample {:?} (record {} of data.jsonl) of {}",
                s.id,
                s.index + 1,
                bench.manifest.task
            )
        })?;
        samples.push((s.index, p.response.clone(), scored));
    }
    let items: Vec<(&Sample, &Scored)> = samples
        .iter()
        .map(|(i, _, x)| (&bench.samples[*i], x))
        .collect();
    let metrics = scorer
        .aggregate(&items)
        .with_context(|| format!("aggregating {}", bench.manifest.task))?;
    let primary = bench.manifest.report.primary.clone();
    let breakdown = breakdown(bench, scorer.as_ref(), &primary, &samples)
        .with_context(|| format!("the majority baseline of {}", bench.manifest.task))?;
    Ok(ScoreReport {
        task: bench.manifest.task.clone(),
        scorer: scorer.name().to_string(),
        filter: scorer.filter().to_string(),
        primary_value: metrics.get(&primary).copied(),
        primary,
        metrics,
        n: samples.len(),
        missing,
        incomplete_groups,
        samples,
        breakdown,
    })
}

impl ScoreReport {
    /// The summary `mlvf score` prints and the eval stage stores as `metrics.json`:
    /// `{"task", "scorer", "metrics", "primary": {"metric", "value", "scale"}, "n", "missing",
    /// "incomplete_groups", "breakdown": {"type_field", "types": {<type>: {"n", "acc",
    /// "majority_answer", "majority"}}, "majority_answer", "majority_value"}}`.
    pub fn summary_json(&self, scale: f64) -> serde_json::Value {
        serde_json::json!({
            "task": self.task,
            "scorer": self.scorer,
            "metrics": self.metrics,
            "primary": {"metric": self.primary, "value": self.primary_value, "scale": scale},
            "n": self.n,
            "missing": self.missing,
            "incomplete_groups": self.incomplete_groups,
            "breakdown": self.breakdown,
        })
    }

    /// Metrics as `"<metric>,<filter>"` keys, like lmms-eval's `results[task]`.
    pub fn keyed_metrics(&self) -> BTreeMap<String, f64> {
        self.metrics
            .iter()
            .map(|(k, v)| (format!("{k},{}", self.filter), *v))
            .collect()
    }
}
