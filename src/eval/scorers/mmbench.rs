//! MMBench circular evaluation with the static (no GPT judge) fallback (eval.md §3.2):
//! a main question counts only if every circular copy is answered correctly. Each copy is parsed
//! with `can_infer` (option letter, then option text); copies that cannot be parsed go to
//! `extract_mcq_answer` where lmms-eval's non-static variant would ask a GPT judge.

use super::letters::extract_mcq_answer;
use super::{Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use anyhow::Result;
use serde_json::{json, Map};
use std::collections::BTreeMap;

const CHOICES5: [&str; 5] = ["A", "B", "C", "D", "E"];
const AFFIXES: [(&str, &str); 12] = [
    ("", "."),
    ("", ","),
    ("", ":"),
    ("", ")"),
    ("", ")."),
    ("(", ")"),
    ("(", ")."),
    (":", ""),
    (":", ","),
    (":", "."),
    (":", ")"),
    (":", ")."),
];

/// `can_infer_option`: a single option letter among the whitespace tokens, possibly decorated
/// (`B.`, `(C)`, `:D`…). A bare `A` among more than 3 tokens is taken for an article.
pub fn can_infer_option(answer: &str) -> Option<String> {
    if answer.contains("Failed to obtain answer via API") {
        return None;
    }
    let splits: Vec<&str> = answer.split_whitespace().collect();
    let count = |pre: &str, post: &str| {
        CHOICES5
            .iter()
            .filter(|c| splits.contains(&format!("{pre}{c}{post}").as_str()))
            .count()
    };
    if count("", "") == 1 {
        let article = splits.contains(&"A") && splits.len() > 3;
        if !article {
            if let Some(c) = CHOICES5.iter().find(|c| splits.contains(c)) {
                return Some(c.to_string());
            }
        }
    }
    for (pre, post) in AFFIXES {
        if count(pre, post) == 1 {
            if let Some(c) = CHOICES5
                .iter()
                .find(|c| splits.contains(&format!("{pre}{c}{post}").as_str()))
            {
                return Some(c.to_string());
            }
        }
    }
    None
}

/// `can_infer_text`: the single option whose (lowercased) text occurs in the answer.
pub fn can_infer_text(answer: &str, options: &[(String, String)]) -> Option<String> {
    let a = answer.to_lowercase();
    let hits: Vec<&String> = options
        .iter()
        .filter(|(_, t)| a.contains(&t.to_lowercase()))
        .map(|(k, _)| k)
        .collect();
    (hits.len() == 1).then(|| hits[0].clone())
}

/// `can_infer`: option letter first, then option text. `options` are (letter, text) for A–D.
pub fn can_infer(answer: &str, options: &[(String, String)]) -> Option<String> {
    can_infer_option(answer).or_else(|| can_infer_text(answer, options))
}

fn lettered_options(sample: &Sample) -> Vec<(String, String)> {
    sample
        .option_letters()
        .into_iter()
        .zip(sample.options.clone().unwrap_or_default())
        .filter(|(l, t)| l.as_str() <= "D" && !t.is_empty() && t != "nan")
        .collect()
}

pub(super) struct MmbenchCircular;

impl Scorer for MmbenchCircular {
    fn name(&self) -> &'static str {
        "mmbench_circular"
    }
    fn needs_complete_groups(&self) -> bool {
        true
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["gpt_eval_score", "circular_accuracy", "vanilla_accuracy"]
    }
    /// lmms-eval's `gpt_eval_score` is already a percentage.
    fn default_report(&self) -> (&'static str, f64) {
        ("gpt_eval_score", 1.0)
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let options = lettered_options(sample);
        let (letter, how) = match can_infer(pred, &options) {
            Some(l) => (l, "prefetch"),
            None => {
                let letters: Vec<&str> = options.iter().map(|(l, _)| l.as_str()).collect();
                (extract_mcq_answer(pred, &letters), "static_fallback")
            }
        };
        let score = f64::from(u8::from(letter == sample.answer.trim()));
        let mut payload = Map::new();
        payload.insert(
            "gpt_eval_score".into(),
            json!({"index": sample.meta.get("index").cloned().unwrap_or(json!(sample.id)),
                   "group": sample.group, "prediction": pred, "parsed": letter, "parsed_by": how,
                   "answer": sample.answer, "category": sample.category, "l2-category": sample.subcategory}),
        );
        Ok(Scored {
            filtered: pred.to_string(),
            score,
            parsed: Some(letter),
            payload,
        })
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        // group (main index) → (all copies right, category of the group)
        let mut groups: BTreeMap<String, (bool, Option<String>)> = BTreeMap::new();
        let mut fallbacks = 0usize;
        for (s, x) in items {
            let key = s.group.clone().unwrap_or_else(|| s.id.clone());
            let e = groups.entry(key).or_insert((true, None));
            e.0 &= x.score == 1.0;
            if e.1.is_none() || s.meta.get("main").and_then(|v| v.as_bool()) == Some(true) {
                e.1 = s.category.clone();
            }
            fallbacks += usize::from(
                x.payload
                    .get("gpt_eval_score")
                    .and_then(|p| p.get("parsed_by"))
                    .and_then(|v| v.as_str())
                    == Some("static_fallback"),
            );
        }
        let mut out = Metrics::new();
        if groups.is_empty() {
            return Ok(out);
        }
        let hit = groups.values().filter(|(ok, _)| *ok).count() as f64 / groups.len() as f64;
        out.insert("circular_accuracy".into(), hit);
        // lmms-eval's key; it reports ×100 already.
        out.insert("gpt_eval_score".into(), hit * 100.0);
        let main: Vec<f64> = items
            .iter()
            .filter(|(s, _)| {
                s.meta
                    .get("main")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false)
            })
            .map(|(_, x)| x.score)
            .collect();
        let vanilla = if main.is_empty() {
            items.iter().map(|(_, x)| x.score).collect()
        } else {
            main
        };
        out.insert(
            "vanilla_accuracy".into(),
            vanilla.iter().sum::<f64>() / vanilla.len() as f64,
        );
        out.insert("static_fallbacks".into(), fallbacks as f64);
        let mut cats: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (ok, cat) in groups.values() {
            if let Some(c) = cat {
                let e = cats.entry(c.clone()).or_default();
                e.0 += usize::from(*ok);
                e.1 += 1;
            }
        }
        for (c, (h, n)) in cats {
            out.insert(format!("category/{c}"), h as f64 / n as f64);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn can_infer_golden_vectors() {
        let opts: Vec<(String, String)> = [
            ("A", "teddy bear"),
            ("B", "rabbit"),
            ("C", "cat"),
            ("D", "dog"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let cases = [
            ("A", Some("A")),
            ("B.", Some("B")),
            ("(C)", Some("C")),
            ("The answer is D", Some("D")),
            ("It is a cat", Some("C")),
            ("A cat", Some("A")),
            ("A dog and a cat", None),
            ("Answer: B", Some("B")),
            ("rabbit", Some("B")),
        ];
        for (input, want) in cases {
            assert_eq!(can_infer(input, &opts).as_deref(), want, "input {input:?}");
        }
    }
}
