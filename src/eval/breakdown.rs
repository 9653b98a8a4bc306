//! What a reader needs beside a benchmark's score to judge it: accuracy per question type, and
//! the majority-answer baseline (the score of always giving the most frequent reference answer),
//! so chance level sits next to the score. A model that learnt only the answer prior scores about
//! the baseline; one that reads the image beats it. When several answers are the most frequent
//! (POPE is half yes, half no) the baseline is the best of them under the benchmark's own
//! scorer: always "yes" has POPE F1 66.7, always "no" 0, and a chance level should not flatter.
//!
//! The question type is the first sample field among [`TYPE_FIELDS`] that takes at least two
//! values in the scored samples (`category`: GQA family, MME/MMBench/CV-Bench/OCRBench category;
//! `subset`: POPE's adversarial/popular/random; `qtype`: MMMU's multiple-choice/open). Per-type
//! numbers are the mean per-sample score × 100, not the benchmark's own aggregation (MME's
//! acc+, MMBench's circular rule and POPE's F1 are not per-sample).

use crate::eval::format::{Benchmark, Sample};
use crate::eval::scorers::{ScoreContext, Scored, Scorer};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Sample fields that can type questions, in the order they are tried.
pub const TYPE_FIELDS: [&str; 3] = ["category", "subset", "qtype"];

/// One question type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeStats {
    /// Scored samples of this type.
    pub n: usize,
    /// Mean per-sample score × 100.
    pub acc: f64,
    /// The type's most frequent reference answer (of several, the one scoring best).
    pub majority_answer: String,
    /// Mean per-sample score × 100 of answering `majority_answer` to every sample of the type.
    pub majority: f64,
}

/// Per-type accuracy and the majority-answer baseline of one scoring pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// The field that typed the questions (None: no field has two values; `types` is empty).
    pub type_field: Option<&'static str>,
    pub types: BTreeMap<String, TypeStats>,
    /// The most frequent reference answer over the scored samples (of several, the one whose
    /// `majority_value` is best).
    pub majority_answer: Option<String>,
    /// The benchmark's primary metric (raw, like `primary.value`) when every scored sample is
    /// answered `majority_answer`, aggregated by the benchmark's own scorer.
    pub majority_value: Option<f64>,
}

/// Metric name of the majority baseline on the primary reporting scale.
pub const MAJORITY: &str = "majority";

impl Breakdown {
    /// The metrics an eval records: `acc/<type>` and `majority/<type>` (0–100), and
    /// [`MAJORITY`] (the primary metric × `scale`, comparable to `primary_score`).
    pub fn metrics(&self, scale: f64) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        if let Some(v) = self.majority_value {
            out.push((MAJORITY.to_string(), v * scale));
        }
        for (t, s) in &self.types {
            out.push((format!("acc/{t}"), s.acc));
            out.push((format!("{MAJORITY}/{t}"), s.majority));
        }
        out
    }
}

/// A sample's value of a type field.
pub fn type_of<'s>(sample: &'s Sample, field: &str) -> Option<&'s str> {
    match field {
        "category" => sample.category.as_deref(),
        "subset" => sample.subset.as_deref(),
        "qtype" => sample.qtype.as_deref(),
        _ => None,
    }
}

/// The most frequent of `answers` (trimmed): every answer tied for the top count, sorted.
fn most_frequent<'a>(answers: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for a in answers {
        *counts.entry(a.trim()).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    let mut out: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n == top)
        .map(|(a, _)| a.to_string())
        .collect();
    out.sort();
    out
}

/// The candidate with the highest value (the first of equals: candidates come sorted).
fn best(scored: Vec<(String, f64)>) -> Option<(String, f64)> {
    scored.into_iter().fold(None, |acc, (a, v)| match acc {
        Some((_, w)) if w >= v => acc,
        _ => Some((a, v)),
    })
}

/// Per-type accuracy and majority baselines for the samples a scoring pass judged (`samples`
/// as in [`crate::eval::ScoreReport::samples`]: sample index, response, judgement).
pub fn breakdown(
    bench: &Benchmark,
    scorer: &dyn Scorer,
    primary: &str,
    samples: &[(usize, String, Scored)],
) -> Result<Breakdown> {
    let scored: Vec<(&Sample, &Scored)> = samples
        .iter()
        .map(|(i, _, x)| (&bench.samples[*i], x))
        .collect();
    let judge = |s: &Sample, answer: &str, ctx: &mut ScoreContext| {
        scorer
            .score(s, answer, ctx)
            .with_context(|| format!("scoring the majority answer {answer:?} on {:?}", s.id))
    };

    let mut out = Breakdown::default();
    let mut candidates = Vec::new();
    for answer in most_frequent(scored.iter().map(|(s, _)| s.answer.as_str())) {
        let mut ctx = ScoreContext::default();
        let judged = scored
            .iter()
            .map(|(s, _)| judge(s, &answer, &mut ctx))
            .collect::<Result<Vec<_>>>()?;
        let items: Vec<(&Sample, &Scored)> =
            scored.iter().map(|(s, _)| *s).zip(judged.iter()).collect();
        if let Some(&v) = scorer.aggregate(&items)?.get(primary) {
            candidates.push((answer, v));
        }
    }
    if let Some((answer, v)) = best(candidates) {
        out.majority_answer = Some(answer);
        out.majority_value = Some(v);
    }

    out.type_field = TYPE_FIELDS.into_iter().find(|f| {
        let mut values = scored.iter().filter_map(|(s, _)| type_of(s, f));
        values
            .next()
            .is_some_and(|first| values.any(|v| v != first))
    });
    let Some(field) = out.type_field else {
        return Ok(out);
    };
    let mut by_type: BTreeMap<&str, Vec<(&Sample, &Scored)>> = BTreeMap::new();
    for (s, x) in &scored {
        if let Some(t) = type_of(s, field) {
            by_type.entry(t).or_default().push((s, x));
        }
    }
    let mut ctx = ScoreContext::default();
    for (t, items) in by_type {
        let n = items.len();
        let acc = items.iter().map(|(_, x)| x.score).sum::<f64>() / n as f64 * 100.0;
        let mut candidates = Vec::new();
        for answer in most_frequent(items.iter().map(|(s, _)| s.answer.as_str())) {
            let mut hits = 0.0;
            for (s, _) in &items {
                hits += judge(s, &answer, &mut ctx)?.score;
            }
            candidates.push((answer, hits / n as f64 * 100.0));
        }
        let (majority_answer, majority) = best(candidates).unwrap_or_default();
        out.types.insert(
            t.to_string(),
            TypeStats {
                n,
                acc,
                majority_answer,
                majority,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majority_is_every_most_frequent_answer_and_the_best_of_them_wins() {
        assert_eq!(most_frequent(["yes", "no", " yes"]), ["yes"]);
        assert_eq!(most_frequent(["b", "a"]), ["a", "b"]);
        assert!(most_frequent([]).is_empty());
        assert_eq!(
            best(vec![("no".into(), 0.0), ("yes".into(), 0.67)]),
            Some(("yes".into(), 0.67))
        );
        assert_eq!(
            best(vec![("a".into(), 0.5), ("b".into(), 0.5)]),
            Some(("a".into(), 0.5))
        );
    }
}
