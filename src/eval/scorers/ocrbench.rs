//! OCRBench (eval.md §3.14): a reference counts when it is contained in the prediction after
//! fullwidth folding + lowercasing; HME100k (handwritten math) compares without spaces and
//! case-sensitively. Reported as the number right out of 1000 (`ocrbench_accuracy` = sum/1000,
//! lmms-eval's value) with per-question-type counts.

use super::{Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use anyhow::Result;
use serde_json::{json, Map};
use std::collections::BTreeMap;

/// Map fullwidth ASCII variants (U+FF01–U+FF5E) and the ideographic space to ASCII.
pub fn fold_fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c as u32 {
            0x3000 => ' ',
            cp @ 0xFF01..=0xFF5E => char::from_u32(cp - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Is any reference contained in the prediction? `dataset` is the source dataset (HME100k rule);
/// `classic` reproduces ≤ v0.3.0 (no fullwidth fold, prediction lowercased before the HME branch).
pub fn ocrbench_correct(pred: &str, refs: &[&str], dataset: Option<&str>, classic: bool) -> bool {
    let pred = if classic {
        pred.to_lowercase()
    } else {
        pred.to_string()
    };
    refs.iter().any(|gt| {
        if dataset == Some("HME100k") {
            let a = gt.trim().replace('\n', " ").replace(' ', "");
            let p = pred.trim().replace('\n', " ").replace(' ', "");
            p.contains(&a)
        } else {
            let fold = |s: &str| {
                if classic {
                    s.to_string()
                } else {
                    fold_fullwidth(s)
                }
            };
            let a = fold(gt).to_lowercase().trim().replace('\n', " ");
            let p = fold(&pred).to_lowercase().trim().replace('\n', " ");
            p.contains(&a)
        }
    })
}

pub(super) struct OcrBench {
    pub(super) classic: bool,
}

impl Scorer for OcrBench {
    fn name(&self) -> &'static str {
        "ocrbench_contains"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["ocrbench_accuracy", "ocrbench_score", "ocrbench_mean"]
    }
    /// OCRBench is reported as the number right out of its 1000 questions.
    fn default_report(&self) -> (&'static str, f64) {
        ("ocrbench_accuracy", 1000.0)
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let ok = ocrbench_correct(
            pred,
            &sample.references(),
            sample.qtype.as_deref(),
            self.classic,
        );
        let score = f64::from(u8::from(ok));
        let mut payload = Map::new();
        payload.insert(
            "ocrbench_accuracy".into(),
            json!({"question_type": sample.category, "dataset": sample.qtype, "score": score, "prediction": pred}),
        );
        Ok(Scored {
            filtered: pred.to_string(),
            score,
            parsed: None,
            payload,
        })
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        if items.is_empty() {
            return Ok(out);
        }
        let total: f64 = items.iter().map(|(_, x)| x.score).sum();
        out.insert("ocrbench_accuracy".into(), total / 1000.0);
        out.insert("ocrbench_score".into(), total);
        out.insert("ocrbench_mean".into(), total / items.len() as f64);
        let mut types: BTreeMap<String, f64> = BTreeMap::new();
        for (s, x) in items {
            *types
                .entry(s.category.clone().unwrap_or_else(|| "unknown".into()))
                .or_default() += x.score;
        }
        for (k, v) in types {
            out.insert(format!("category/{k}"), v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_rules() {
        assert!(ocrbench_correct(
            "The sign says STOP here",
            &["stop"],
            None,
            false
        ));
        assert!(
            ocrbench_correct("ＳＴＯＰ", &["stop"], None, false),
            "fullwidth folds at HEAD"
        );
        assert!(
            !ocrbench_correct("ＳＴＯＰ", &["stop"], None, true),
            "classic does not fold"
        );
        assert!(ocrbench_correct(
            "x ^ { 2 }",
            &["x^{2}"],
            Some("HME100k"),
            false
        ));
        assert!(
            !ocrbench_correct("X^{2}", &["x^{2}"], Some("HME100k"), false),
            "HME is case-sensitive"
        );
        assert!(!ocrbench_correct("go", &["stop"], None, false));
    }
}
