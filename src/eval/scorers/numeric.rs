//! ChartQA relaxed accuracy (5 %, Python `float()` semantics; eval.md §3.12) and DocVQA ANLS
//! (τ = 0.5, raw-length denominator; §3.13).

use super::{mean, mean_by, scored, Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use crate::eval::text::py_float;
use anyhow::Result;

fn to_float(t: &str) -> Option<f64> {
    if t.ends_with('%') {
        py_float(t.trim_end_matches('%')).map(|x| x / 100.0)
    } else {
        py_float(t)
    }
}

/// ChartQA `relaxed_correctness(pred, target, 0.05)`: numeric within 5 % when both parse and the
/// target is non-zero, otherwise case-insensitive string equality.
pub fn relaxed_correctness(pred: &str, target: &str) -> bool {
    match (to_float(pred), to_float(target)) {
        (Some(p), Some(t)) if t != 0.0 && !t.is_nan() => (p - t).abs() / t.abs() <= 0.05,
        _ => pred.to_lowercase() == target.to_lowercase(),
    }
}

/// Levenshtein distance over chars.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// lmms-eval `anls`: `1 - min normalised Levenshtein` over the references, 0 below 0.5. Strings
/// are compared after strip/lower/whitespace-collapse, but the length divides by the raw strings.
pub fn anls(pred: &str, gts: &[&str]) -> f64 {
    let norm = |s: &str| -> Vec<char> {
        s.trim()
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .collect()
    };
    let p = norm(pred);
    let best = gts
        .iter()
        .map(|g| {
            let len = g
                .to_uppercase()
                .chars()
                .count()
                .max(pred.to_uppercase().chars().count());
            if len == 0 {
                0.0
            } else {
                levenshtein(&norm(g), &p) as f64 / len as f64
            }
        })
        .fold(f64::INFINITY, f64::min);
    if !best.is_finite() {
        return 0.0;
    }
    let score = 1.0 - best;
    if score < 0.5 {
        0.0
    } else {
        score
    }
}

pub(super) struct RelaxedAcc;

impl Scorer for RelaxedAcc {
    fn name(&self) -> &'static str {
        "relaxed_acc"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &[
            "relaxed_overall",
            "relaxed_human_split",
            "relaxed_augmented_split",
        ]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let ok = sample
            .references()
            .iter()
            .any(|t| relaxed_correctness(pred, t));
        let mut s = scored(pred, "relaxed_overall", f64::from(u8::from(ok)), None);
        let split = if is_human(sample) {
            "relaxed_human_split"
        } else {
            "relaxed_augmented_split"
        };
        s.payload
            .insert(split.into(), s.payload["relaxed_overall"].clone());
        Ok(s)
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        if let Some(m) = mean(items.iter().map(|(_, x)| *x)) {
            out.insert("relaxed_overall".into(), m);
        }
        for (k, v) in mean_by(items, |s| {
            Some(if is_human(s) { "human" } else { "augmented" }.to_string())
        }) {
            out.insert(format!("relaxed_{k}_split"), v);
        }
        Ok(out)
    }
}

/// ChartQA: `type == "human_test"` (subset `human`) is the human split, everything else augmented.
fn is_human(s: &Sample) -> bool {
    matches!(s.subset.as_deref(), Some("human") | Some("human_test"))
}

pub(super) struct Anls;

impl Scorer for Anls {
    fn name(&self) -> &'static str {
        "anls"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["anls"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        Ok(scored(pred, "anls", anls(pred, &sample.references()), None))
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        if let Some(m) = mean(items.iter().map(|(_, x)| *x)) {
            out.insert("anls".into(), m);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_golden_vectors() {
        let cases = [
            ("10.4", "10", true),
            ("10.6", "10", false),
            ("12%", "0.12", true),
            ("0", "0", true),
            ("0.0", "0", false),
            ("Yes", "yes", true),
            ("1,000", "1000", false),
            ("5", "5.0", true),
            ("45%", "45", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(relaxed_correctness(p, t), want, "{p}|{t}");
        }
    }

    #[test]
    fn anls_golden_vectors() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(anls("1/2/201", &["1/2/2010"]), 0.875));
        assert!(close(anls("abcdef", &["abcxyz"]), 0.5));
        assert!(close(anls("ab", &["abcd"]), 0.5));
        assert!(close(anls(" The  Cat ", &["the cat"]), 1.0));
        assert!(close(anls("x", &["a", "x"]), 1.0));
        assert!(close(anls("zzzz", &["abcd"]), 0.0));
    }
}
