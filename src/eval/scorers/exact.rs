//! HF `exact_match` with ignore_case + ignore_punctuation (GQA), the AI2D `flexible-extract`
//! filter in front of it, and RealWorldQA's HEAD rule (eval.md §3.4, §3.11, §3.15, §4.3).

use super::letters::extract_mcq_answer;
use super::{mean_metrics, scored, Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use crate::eval::text::ASCII_PUNCTUATION;
use anyhow::Result;
use regex::Regex;
use std::sync::OnceLock;

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

/// RealWorldQA classic (≤ v0.7.1) `flexible-extract` filter: a whole-response number word becomes
/// its digit; then the response, stripped of non-word characters, is searched for the option texts
/// parsed from the question (`\b([A-Z])\.\s+([^\n]*)`); a hit becomes its letter (letters follow
/// the parsed order), otherwise the cleaned response is kept. Scored with HF exact_match after.
pub fn realworldqa_classic_filter(raw: &str, question: &str) -> String {
    const WORDS: [(&str, &str); 11] = [
        ("zero", "0"),
        ("one", "1"),
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
        ("five", "5"),
        ("six", "6"),
        ("seven", "7"),
        ("eight", "8"),
        ("nine", "9"),
        ("ten", "10"),
    ];
    static CHOICE: OnceLock<Regex> = OnceLock::new();
    static NON_WORD: OnceLock<Regex> = OnceLock::new();
    let lower = raw.to_lowercase();
    let mapped = WORDS
        .iter()
        .find(|(w, _)| *w == lower)
        .map_or(raw, |(_, d)| *d);
    let choice_re = CHOICE.get_or_init(|| Regex::new(r"\b([A-Z])\.\s+([^\n]*)").unwrap());
    let mut texts: Vec<String> = Vec::new();
    let mut to_alpha: std::collections::HashMap<String, char> = std::collections::HashMap::new();
    let mut next = b'A';
    for c in choice_re.captures_iter(question) {
        let text = c[2].trim().to_string();
        texts.push(regex::escape(&text));
        to_alpha.insert(text, next as char);
        next = next.wrapping_add(1);
    }
    let non_word = NON_WORD.get_or_init(|| Regex::new(r"[^\w\s]").unwrap());
    let cleaned = non_word.replace_all(mapped, "").trim().to_string();
    let Ok(alternation) = Regex::new(&texts.join("|")) else {
        return cleaned;
    };
    match alternation.find(&cleaned) {
        Some(m) => to_alpha
            .get(m.as_str())
            .map_or(cleaned.clone(), |c| c.to_string()),
        None => cleaned,
    }
}

pub(super) struct RealWorldQa {
    pub(super) classic: bool,
}

impl Scorer for RealWorldQa {
    fn name(&self) -> &'static str {
        "realworldqa"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["exact_match"]
    }
    fn filter(&self) -> &'static str {
        if self.classic {
            "flexible-extract"
        } else {
            "none"
        }
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        if self.classic {
            let question = sample.question.as_deref().unwrap_or(&sample.prompt);
            let filtered = realworldqa_classic_filter(response, question);
            let pred = filtered.trim();
            let ok = hf_exact_match(pred, &[sample.answer.as_str()]);
            return Ok(scored(
                pred,
                "exact_match",
                f64::from(u8::from(ok)),
                Some(pred.to_string()),
            ));
        }
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

    #[test]
    fn realworldqa_classic_filter_maps_words_and_choice_texts() {
        let q = "How many cars?\nA. two cars\nB. three cars\nC. 4\nPlease answer directly with only the letter.";
        assert_eq!(realworldqa_classic_filter("There are three cars.", q), "B");
        assert_eq!(realworldqa_classic_filter("C", q), "C");
        assert_eq!(
            realworldqa_classic_filter("Four", q),
            "C",
            "number word → digit → option text"
        );
        assert_eq!(realworldqa_classic_filter("Maybe.", "Is it red?"), "Maybe");
    }
}
