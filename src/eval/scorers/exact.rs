//! HF `exact_match` with ignore_case + ignore_punctuation (GQA), the AI2D `flexible-extract`
//! filter in front of it, and RealWorldQA's HEAD rule (eval.md §3.4, §3.11, §3.15, §4.3).

use super::letters::extract_mcq_answer;
use super::{mean_metrics, scored, Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use crate::eval::text::ASCII_PUNCTUATION;
use anyhow::Result;

fn hf_normalize(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| !ASCII_PUNCTUATION.contains(*c))
        .collect()
}

/// HF `exact_match(ignore_case=True, ignore_punctuation=True)` against any of the references:
/// lowercase, delete Python's `string.punctuation`, compare. Whitespace is not touched.
pub fn hf_exact_match(pred: &str, refs: &[&str]) -> bool {
    let p = hf_normalize(pred);
    refs.iter().any(|r| hf_normalize(r) == p)
}

/// AI2D `flexible-extract`: if the raw response matches `^\s*([A-Z])\.`, keep just the letter;
/// otherwise keep the response unchanged.
pub fn ai2d_filter(raw: &str) -> String {
    let t = raw.trim_start();
    let mut it = t.chars();
    if let (Some(c), Some('.')) = (it.next(), it.next()) {
        if c.is_ascii_uppercase() {
            return c.to_string();
        }
    }
    raw.to_string()
}

pub(super) struct ExactMatchHf;

impl Scorer for ExactMatchHf {
    fn name(&self) -> &'static str {
        "exact_match_hf"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["exact_match"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let ok = hf_exact_match(pred, &sample.references());
        Ok(scored(pred, "exact_match", f64::from(u8::from(ok)), None))
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        Ok(mean_metrics("exact_match", items))
    }
}

pub(super) struct Ai2dLetter;

impl Scorer for Ai2dLetter {
    fn name(&self) -> &'static str {
        "ai2d_letter"
    }
    fn filter(&self) -> &'static str {
        "flexible-extract"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["exact_match"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        // The filter sees the raw response; the evaluator strips what the filter returns.
        let filtered = ai2d_filter(response);
        let pred = filtered.trim();
        let ok = hf_exact_match(pred, &[sample.answer.as_str()]);
        Ok(scored(
            pred,
            "exact_match",
            f64::from(u8::from(ok)),
            Some(pred.to_string()),
        ))
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        Ok(mean_metrics("exact_match", items))
    }
}

pub(super) struct RealWorldQa;

impl Scorer for RealWorldQa {
    fn name(&self) -> &'static str {
        "realworldqa"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["exact_match"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let gt = sample.answer.trim();
        let (ok, parsed) = if ["A", "B", "C", "D"].contains(&gt) {
            let letter = extract_mcq_answer(pred, &["A", "B", "C", "D"]);
            (letter == gt, letter)
        } else {
            let p = pred.to_lowercase().trim().trim_end_matches('.').to_string();
            (p == sample.answer.to_lowercase(), p)
        };
        Ok(scored(
            pred,
            "exact_match",
            f64::from(u8::from(ok)),
            Some(parsed),
        ))
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        Ok(mean_metrics("exact_match", items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_exact_match_golden_vectors() {
        assert!(hf_exact_match("Yes", &["yes"]));
        assert!(hf_exact_match("yes.", &["yes"]));
        assert!(!hf_exact_match("The table", &["table"]));
        assert!(hf_exact_match("t-shirt", &["tshirt"]));
        assert!(hf_exact_match("b", &["a", "b"]));
    }

    #[test]
    fn ai2d_filter_golden_vectors() {
        assert_eq!(ai2d_filter("A"), "A");
        assert_eq!(ai2d_filter("A."), "A");
        assert_eq!(ai2d_filter("A. cat"), "A");
        assert_eq!(ai2d_filter("(A)"), "(A)");
        assert_eq!(ai2d_filter("The answer is A"), "The answer is A");
        // Then EM: "(A)" is right after punctuation is stripped, "The answer is A" is wrong.
        assert!(hf_exact_match(&ai2d_filter("(A)"), &["A"]));
        assert!(!hf_exact_match(&ai2d_filter("The answer is A"), &["A"]));
        assert!(hf_exact_match(&ai2d_filter("  B. dog"), &["B"]));
    }
}
