//! Scorers: per-sample judgement of a response plus the task's aggregation, one file per family,
//! reachable by name through [`build`]. Names and behaviour follow eval.md §3, §4 and §7; metric
//! keys are lmms-eval's (`exact_match`, `mme_perception_score`, `pope_f1_score`, …) so results line
//! up with its `results[task]["<metric>,<filter>"]`.

mod exact;
mod letters;
mod mmbench;
mod mmmu;
mod numeric;
mod ocrbench;
mod vqa;
mod yesno;

pub use exact::{ai2d_filter, hf_exact_match, realworldqa_classic_filter};
pub use letters::{
    cvbench_letter, extract_mcq_answer, mmstar_classic_correct, mmvp_letter, seed_first_char,
    sqa_correct,
};
pub use mmbench::{can_infer, can_infer_option, can_infer_text};
pub use mmmu::{
    eval_open, extract_numbers, parse_mmmu_multi_choice, parse_open_response, OpenPred,
};
pub use numeric::{anls, relaxed_correctness};
pub use ocrbench::{fold_fullwidth, ocrbench_correct};
pub use vqa::{evalai_normalize, punct_digit_normalize, vqa_accuracy, VqaNormalize};
pub use yesno::mme_parse;

use crate::eval::format::{BenchmarkManifest, Sample};
use crate::eval::pyrandom::PyRandom;
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Aggregated metrics of one benchmark: lmms-eval metric key → value.
pub type Metrics = BTreeMap<String, f64>;

/// The scorer names a manifest may use (eval.md §7).
pub const SCORER_NAMES: &[&str] = &[
    "vqa_acc",
    "exact_match_hf",
    "mme_yesno",
    "pope_exact",
    "mmbench_circular",
    "seed_first_char",
    "sqa_letter",
    "mcq_extract",
    "mmstar_classic",
    "ai2d_letter",
    "mmmu",
    "relaxed_acc",
    "anls",
    "ocrbench_contains",
    "realworldqa",
    "mmvp_letter",
    "cvbench_letter",
];

/// The judgement of one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The response after the task's filter (lmms-eval's `filtered_resps`).
    pub filtered: String,
    /// Per-sample score in [0, 1] (1 = correct); the value the mean-type metrics average.
    pub score: f64,
    /// What the parser extracted (letter, yes/no label, …), for diagnostics.
    pub parsed: Option<String>,
    /// Per-metric payloads, written under one key per metric in the samples log.
    pub payload: Map<String, Value>,
}

/// State shared by the per-sample calls of one scoring pass (in data order).
pub struct ScoreContext {
    /// Python-compatible RNG for the MMMU random fallback, seeded like lmms-eval (`--seed 0`).
    pub rng: PyRandom,
}

impl Default for ScoreContext {
    fn default() -> Self {
        ScoreContext {
            rng: PyRandom::new(0),
        }
    }
}

/// A benchmark scorer.
pub trait Scorer: Send + Sync {
    /// Registry name (`exact_match_hf`, …).
    fn name(&self) -> &'static str;
    /// lmms-eval filter name used in result keys (`none`, or `flexible-extract` for AI2D).
    fn filter(&self) -> &'static str {
        "none"
    }
    /// Metrics this scorer always emits (a manifest's `report.primary` must be one of them);
    /// aggregation may add breakdown keys such as `category/<name>`.
    fn metric_names(&self) -> &'static [&'static str];
    /// The `report` a benchmark manifest without one gets: lmms-eval's headline metric for this
    /// scorer and the factor that puts it on the scale papers print (100 for a fraction; MME's
    /// sums and MMBench's percentages as they are, OCRBench out of 1000), the same choice
    /// `scripts/export_lmms_task.py` writes. Unless a scorer says otherwise, its first metric,
    /// a fraction.
    fn default_report(&self) -> (&'static str, f64) {
        (self.metric_names()[0], 100.0)
    }
    /// Whether the aggregation pairs samples by `group` (MME images, MMBench circular copies,
    /// MMVP pairs): then a group with any unanswered member is left out of scoring entirely.
    fn needs_complete_groups(&self) -> bool {
        false
    }
    /// Judge one raw response (not yet stripped: filters see the raw text, as in lmms-eval).
    fn score(&self, sample: &Sample, response: &str, ctx: &mut ScoreContext) -> Result<Scored>;
    /// Aggregate the judged samples (only those that have a response).
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics>;
}

/// Build the scorer a manifest names, honouring `scorer_version` and `scorer_options`.
pub fn build(m: &BenchmarkManifest) -> Result<Box<dyn Scorer>> {
    // `scorer_version` picks between lmms-eval behaviours that changed over time (eval.md §9):
    // `head-…` (default), `classic-v0.4` (v0.3.5–v0.4) and `classic-v0.3` (≤ v0.3.4, where
    // ScienceQA still lowercased the prediction before its `B.` rule).
    let (classic, pre_v035) = match m.scorer_version.as_deref() {
        None => (false, false),
        Some(v) if v.starts_with("head") => (false, false),
        Some("classic-v0.4") => (true, false),
        Some("classic-v0.3") => (true, true),
        Some(v) => bail!(
            "unknown scorer_version {v:?}; expected \"head-2026-08\", \"classic-v0.4\" or \"classic-v0.3\""
        ),
    };
    // A misspelt option would silently fall back to the default: refuse unknown keys.
    let known: &[&str] = match m.scorer.as_str() {
        "vqa_acc" => &["normalize"],
        "mmmu" => &["open_ended"],
        _ => &[],
    };
    if let Some(k) = m
        .scorer_options
        .keys()
        .find(|k| !known.contains(&k.as_str()))
    {
        bail!(
            "scorer_options.{k}: scorer {} takes {}",
            m.scorer,
            if known.is_empty() {
                "no options".to_string()
            } else {
                format!("only {}", known.join(", "))
            }
        );
    }
    let opt = |key: &str| m.scorer_options.get(key).and_then(Value::as_str);
    Ok(match m.scorer.as_str() {
        "vqa_acc" => Box::new(vqa::VqaAcc::new(opt("normalize"))?),
        "exact_match_hf" => Box::new(exact::ExactMatchHf),
        "mme_yesno" => Box::new(yesno::MmeYesNo),
        "pope_exact" => Box::new(yesno::PopeExact),
        "mmbench_circular" => Box::new(mmbench::MmbenchCircular),
        "seed_first_char" => Box::new(letters::SeedFirstChar),
        "sqa_letter" => Box::new(letters::SqaLetter { classic: pre_v035 }),
        "mcq_extract" => Box::new(letters::McqExtract {
            classic_rules: false,
        }),
        "mmstar_classic" => Box::new(letters::McqExtract {
            classic_rules: true,
        }),
        "ai2d_letter" => Box::new(exact::Ai2dLetter),
        "mmmu" => Box::new(mmmu::Mmmu::new(opt("open_ended"))?),
        "relaxed_acc" => Box::new(numeric::RelaxedAcc),
        "anls" => Box::new(numeric::Anls),
        "ocrbench_contains" => Box::new(ocrbench::OcrBench { classic }),
        "realworldqa" => Box::new(exact::RealWorldQa { classic }),
        "mmvp_letter" => Box::new(letters::MmvpLetter),
        "cvbench_letter" => Box::new(letters::CvBenchLetter),
        other => {
            let near = SCORER_NAMES
                .iter()
                .map(|n| (strsim::jaro_winkler(n, other), *n))
                .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
            let hint = if near.0 > 0.8 {
                format!(" (did you mean {:?}?)", near.1)
            } else {
                String::new()
            };
            bail!(
                "unknown scorer {other:?}{hint}; expected one of {}",
                SCORER_NAMES.join(", ")
            )
        }
    })
}

/// A `Scored` for the common case of one numeric metric.
pub(crate) fn scored(filtered: &str, metric: &str, score: f64, parsed: Option<String>) -> Scored {
    let mut payload = Map::new();
    payload.insert(metric.to_string(), json!(score));
    Scored {
        filtered: filtered.to_string(),
        score,
        parsed,
        payload,
    }
}

/// Mean of the per-sample scores (0 samples → no value).
pub(crate) fn mean<'a>(scores: impl IntoIterator<Item = &'a Scored>) -> Option<f64> {
    let (sum, n) = scores
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x.score, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Mean score per value of a sample field (`category`, `subset`, …), sorted by key.
pub(crate) fn mean_by(
    items: &[(&Sample, &Scored)],
    key: impl Fn(&Sample) -> Option<String>,
) -> BTreeMap<String, f64> {
    let mut acc: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (s, x) in items {
        if let Some(k) = key(s) {
            let e = acc.entry(k).or_default();
            e.0 += x.score;
            e.1 += 1;
        }
    }
    acc.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// The plain-mean aggregation under one metric name, plus `category/<c>` breakdowns when the
/// samples carry categories.
pub(crate) fn mean_metrics(metric: &str, items: &[(&Sample, &Scored)]) -> Metrics {
    let mut out = Metrics::new();
    if let Some(m) = mean(items.iter().map(|(_, x)| *x)) {
        out.insert(metric.to_string(), m);
    }
    for (k, v) in mean_by(items, |s| s.category.clone()) {
        out.insert(format!("category/{k}"), v);
    }
    out
}
