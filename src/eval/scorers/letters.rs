//! Letter-answer parsers and their scorers: `extract_mcq_answer` (HEAD MMStar, RealWorldQA,
//! MMBench static fallback), MMStar classic rules, SEED first char, ScienceQA, MMVP, CV-Bench
//! (eval.md §3.3, §3.7, §3.10, §3.16, §3.17, §4.4).

use super::{mean, mean_by, mean_metrics, scored, Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use anyhow::Result;
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const ANSWER_PHRASES: &[&str] = &[
    "the answer is",
    "answer is",
    "the correct answer is",
    "correct answer is",
    "the best answer is",
    "best answer is",
    "the correct option is",
    "correct option is",
    "the best option is",
    "best option is",
    "the choice is",
    "choice is",
    "the correct choice is",
    "correct choice is",
    "i choose",
    "i select",
    "i pick",
    "my answer is",
    "my choice is",
    "옵션",
    "정답은",
    "답은",
    "답:",
    "答案是",
    "答案为",
    "选",
    "答えは",
];

fn find_from(hay: &[char], needle: &[char], start: usize) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (start..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

fn rfind(hay: &[char], needle: &[char]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .rev()
        .find(|&i| hay[i..i + needle.len()] == *needle)
}

/// lmms-eval `extract_mcq_answer`: candidates in several formats, each at its last occurrence,
/// ranked by (format priority, position); `""` when nothing matches. Case-sensitive.
pub fn extract_mcq_answer(response: &str, choices: &[&str]) -> String {
    if response.trim().is_empty() {
        return String::new();
    }
    let default = ["A", "B", "C", "D", "E", "F", "G", "H"];
    let choices: &[&str] = if choices.is_empty() {
        &default
    } else {
        choices
    };
    let mut t = response.trim();
    for c in [',', '.', '!', '?', ';', ':', '\'', '"'] {
        t = t.trim_matches(c);
    }
    let text: Vec<char> = format!(" {t} ").chars().collect();
    let lower: Vec<char> = text.iter().flat_map(|c| c.to_lowercase()).collect();
    // (letter, position, priority)
    let mut cands: Vec<(&str, usize, u8)> = Vec::new();
    let forms: [(&str, &str, u8); 5] = [
        ("(", ")", 6),
        ("", ".", 5),
        ("", ":", 4),
        ("", ")", 3),
        ("", " ", 2),
    ];
    for (pre, post, prio) in forms {
        for ch in choices {
            let needle: Vec<char> = format!("{pre}{ch}{post}").chars().collect();
            if let Some(p) = rfind(&text, &needle) {
                cands.push((ch, p, prio));
            }
        }
    }
    for phrase in ANSWER_PHRASES {
        let pv: Vec<char> = phrase.chars().collect();
        if let Some(idx) = find_from(&lower, &pv, 0) {
            let after = idx + pv.len();
            for ch in choices {
                let cv: Vec<char> = ch.chars().collect();
                if let Some(p) = find_from(&text, &cv, after.min(text.len())) {
                    cands.push((ch, p, 7));
                }
            }
        }
    }
    let stripped: Vec<char> = t.trim().chars().collect();
    for ch in choices {
        let cv: Vec<char> = ch.chars().collect();
        if stripped.starts_with(&cv) && (stripped.len() == 1 || !stripped[1].is_alphabetic()) {
            cands.push((ch, 0, 10));
        }
    }
    for ch in choices {
        let cv: Vec<char> = ch.chars().collect();
        if stripped.ends_with(&cv)
            && (stripped.len() == 1 || !stripped[stripped.len() - 2].is_alphabetic())
        {
            cands.push((ch, text.len() - 1, 9));
        }
    }
    if cands.is_empty() {
        for ch in choices {
            let cv: Vec<char> = ch.chars().collect();
            if let Some(p) = rfind(&text, &cv) {
                cands.push((ch, p, 0));
            }
        }
    }
    // Stable sort descending, like Python's sort(reverse=True).
    cands.sort_by_key(|c| std::cmp::Reverse((c.2, c.1)));
    cands.first().map(|c| c.0.to_string()).unwrap_or_default()
}

/// MMStar classic (≤ v0.7.1) rule: first char, `(X`, `option X`, `the answer is X`.
pub fn mmstar_classic_correct(pred: &str, gt: &str) -> bool {
    let a: Vec<char> = gt.to_lowercase().chars().collect();
    let p: Vec<char> = pred
        .to_lowercase()
        .replace('\n', " ")
        .trim()
        .chars()
        .collect();
    let at = |i: usize| p.get(i).copied();
    let a0 = a.first().copied();
    if a.len() != 1 {
        // Python compares a 1-char slice with the whole gt string: only 1-char gts can match.
        return false;
    }
    let starts = |s: &str| p.iter().take(s.chars().count()).copied().eq(s.chars());
    (at(0).is_some() && at(0) == a0)
        || (at(0) == Some('(') && at(1).is_some() && at(1) == a0)
        || (starts("option ") && at(7).is_some() && at(7) == a0)
        || (starts("the answer is ") && at(14).is_some() && at(14) == a0)
}

/// SEED-Bench: the first character of the stripped response.
pub fn seed_first_char(pred: &str) -> String {
    pred.trim()
        .chars()
        .next()
        .map(String::from)
        .unwrap_or_default()
}

/// ScienceQA (v0.3.5 and later): exact letter, or an uppercase letter followed by `.` (`"B. b"`).
/// `classic` (≤ v0.3.4) keeps only the exact (case-insensitive) letter.
pub fn sqa_correct(pred: &str, target: &str, classic: bool) -> bool {
    let p = pred.trim();
    if p.to_lowercase() == target.to_lowercase() {
        return true;
    }
    if classic {
        return false;
    }
    let c: Vec<char> = p.chars().collect();
    c.len() >= 2
        && c[0].is_uppercase()
        && c[1] == '.'
        && c[0].to_lowercase().eq(target.to_lowercase().chars())
}

fn mmvp_regexes() -> &'static [Regex; 5] {
    static RE: OnceLock<[Regex; 5]> = OnceLock::new();
    RE.get_or_init(|| {
        [
            Regex::new(r"(?i)^\s*\(?([AB])\)?\.?\s*$").unwrap(),
            Regex::new(r"(?i)^\s*\(?([AB])\)?[\.\s]").unwrap(),
            Regex::new(r"(?i)answer\s+is\s+\(?([AB])\)?").unwrap(),
            Regex::new(r"(?i)option\s+\(?([AB])\)?").unwrap(),
            Regex::new(r"(?i)\(?([AB])\)?(?:\s|$)").unwrap(),
        ]
    })
}

/// MMVP letter extraction: the regex cascade, then the first char if it is A/B; `""` otherwise.
pub fn mmvp_letter(pred: &str) -> String {
    let pred = pred.trim();
    for re in mmvp_regexes() {
        if let Some(c) = re.captures(pred) {
            return c[1].to_uppercase();
        }
    }
    match pred.trim().chars().next().map(|c| c.to_ascii_uppercase()) {
        Some(c @ ('A' | 'B')) => c.to_string(),
        _ => String::new(),
    }
}

/// CV-Bench: `re.match(r"[\(\s]*([A-Z])[\)\.\s]*", pred.strip(), IGNORECASE)`, i.e. the first
/// letter after optional `(`/spaces ("The answer is A" → "T").
pub fn cvbench_letter(pred: &str) -> String {
    let first = pred
        .trim()
        .chars()
        .find(|c| !(*c == '(' || c.is_whitespace()));
    match first {
        // Python's IGNORECASE [A-Z] also matches the four non-ASCII letters whose simple case
        // mapping is ASCII (İ ı ſ K); `.upper()` then gives İ, I, S, K.
        Some(c) if c.is_ascii_alphabetic() || matches!(c, 'İ' | 'ı' | 'ſ' | '\u{212A}') => {
            c.to_uppercase().collect()
        }
        _ => String::new(),
    }
}

fn bool_score(b: bool) -> f64 {
    f64::from(u8::from(b))
}

pub(super) struct SeedFirstChar;

impl Scorer for SeedFirstChar {
    fn name(&self) -> &'static str {
        "seed_first_char"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["seed_image", "seed_video", "seed_all"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let letter = seed_first_char(response);
        let ok = letter.to_lowercase() == sample.answer.trim().to_lowercase();
        let mut s = scored(response.trim(), "seed_all", bool_score(ok), Some(letter));
        let key = match sample.subset.as_deref() {
            Some("video") => "seed_video",
            _ => "seed_image",
        };
        s.payload
            .insert(key.to_string(), s.payload["seed_all"].clone());
        Ok(s)
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        if let Some(m) = mean(items.iter().map(|(_, x)| *x)) {
            out.insert("seed_all".into(), m);
        }
        for (k, v) in mean_by(items, |s| {
            Some(s.subset.clone().unwrap_or_else(|| "image".into()))
        }) {
            out.insert(format!("seed_{k}"), v);
        }
        Ok(out)
    }
}

pub(super) struct SqaLetter {
    pub(super) classic: bool,
}

impl Scorer for SqaLetter {
    fn name(&self) -> &'static str {
        "sqa_letter"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["exact_match"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let ok = sqa_correct(response, &sample.answer, self.classic);
        Ok(scored(response.trim(), "exact_match", bool_score(ok), None))
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        Ok(mean_metrics("exact_match", items))
    }
}

/// `mcq_extract` (HEAD) and `mmstar_classic`: MMStar-style aggregation, i.e. `average` = the
/// unweighted mean over L2 categories (`subcategory`), and per `category` the same macro mean.
pub(super) struct McqExtract {
    pub(super) classic_rules: bool,
}

fn macro_over_l2(items: &[&(&Sample, &Scored)]) -> Option<f64> {
    let mut by_l2: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (s, x) in items {
        let e = by_l2
            .entry(s.subcategory.clone().unwrap_or_default())
            .or_default();
        e.0 += x.score;
        e.1 += 1;
    }
    (!by_l2.is_empty())
        .then(|| by_l2.values().map(|(s, n)| s / *n as f64).sum::<f64>() / by_l2.len() as f64)
}

impl Scorer for McqExtract {
    fn name(&self) -> &'static str {
        if self.classic_rules {
            "mmstar_classic"
        } else {
            "mcq_extract"
        }
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["average", "accuracy"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let (ok, parsed) = if self.classic_rules {
            (mmstar_classic_correct(pred, &sample.answer), None)
        } else {
            let letters = sample.option_letters();
            let choices: Vec<&str> = if letters.is_empty() {
                vec!["A", "B", "C", "D"]
            } else {
                letters.iter().map(String::as_str).collect()
            };
            let letter = extract_mcq_answer(pred, &choices);
            (letter == sample.answer.trim().to_uppercase(), Some(letter))
        };
        let mut s = scored(pred, "average", bool_score(ok), parsed);
        if let Some(cat) = &sample.category {
            s.payload.insert(cat.clone(), s.payload["average"].clone());
        }
        Ok(s)
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        let all: Vec<&(&Sample, &Scored)> = items.iter().collect();
        if let Some(m) = macro_over_l2(&all) {
            out.insert("average".into(), m);
        }
        if let Some(m) = mean(items.iter().map(|(_, x)| *x)) {
            out.insert("accuracy".into(), m);
        }
        let mut cats: BTreeMap<String, Vec<&(&Sample, &Scored)>> = BTreeMap::new();
        for it in items {
            if let Some(c) = &it.0.category {
                cats.entry(c.clone()).or_default().push(it);
            }
        }
        for (c, list) in cats {
            if let Some(m) = macro_over_l2(&list) {
                out.insert(format!("category/{c}"), m);
            }
        }
        Ok(out)
    }
}

/// MMVP's target normalisation: `(a)`/`a` → `A`, `(b)`/`b` → `B`, anything else uppercased.
fn mmvp_target(answer: &str) -> String {
    let a = answer.trim().to_lowercase();
    if a.contains("(a)") || a == "a" {
        "A".into()
    } else if a.contains("(b)") || a == "b" {
        "B".into()
    } else {
        a.to_uppercase()
    }
}

pub(super) struct MmvpLetter;

impl Scorer for MmvpLetter {
    fn name(&self) -> &'static str {
        "mmvp_letter"
    }
    fn needs_complete_groups(&self) -> bool {
        true
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["mmvp_accuracy", "mmvp_pair_accuracy"]
    }
    /// MMVP's headline is the pair accuracy (both images of a pair right).
    fn default_report(&self) -> (&'static str, f64) {
        ("mmvp_pair_accuracy", 100.0)
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let letter = mmvp_letter(pred);
        let gt = mmvp_target(&sample.answer);
        let mut s = scored(
            pred,
            "mmvp_accuracy",
            bool_score(letter == gt),
            Some(letter),
        );
        s.payload.insert(
            "mmvp_pair_accuracy".into(),
            s.payload["mmvp_accuracy"].clone(),
        );
        Ok(s)
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        if let Some(m) = mean(items.iter().map(|(_, x)| *x)) {
            out.insert("mmvp_accuracy".into(), m);
        }
        let mut pairs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (s, x) in items {
            pairs
                .entry(s.group.clone().unwrap_or_else(|| s.id.clone()))
                .or_default()
                .push(x.score);
        }
        if !pairs.is_empty() {
            let hit = pairs
                .values()
                .filter(|v| v.iter().all(|&x| x == 1.0))
                .count();
            out.insert("mmvp_pair_accuracy".into(), hit as f64 / pairs.len() as f64);
        }
        Ok(out)
    }
}

pub(super) struct CvBenchLetter;

impl Scorer for CvBenchLetter {
    fn name(&self) -> &'static str {
        "cvbench_letter"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["cv_bench_acc", "cv_bench_official"]
    }
    /// CV-Bench's official score averages its 2D and 3D halves.
    fn default_report(&self) -> (&'static str, f64) {
        ("cv_bench_official", 100.0)
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let letter = cvbench_letter(response);
        // lmms-eval compares with `answer.strip("()")` as is (CV-Bench answers are "(A)"…).
        let gt = sample.answer.trim_matches(|c| c == '(' || c == ')');
        Ok(scored(
            response.trim(),
            "cv_bench_acc",
            bool_score(letter == gt),
            Some(letter),
        ))
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        if let Some(m) = mean(items.iter().map(|(_, x)| *x)) {
            out.insert("cv_bench_acc".into(), m);
        }
        let by_source = mean_by(items, |s| s.subset.clone());
        for (k, v) in &by_source {
            out.insert(format!("source/{k}"), *v);
        }
        // Cambrian's official formula: ((ADE20K + COCO)/2 + Omni3D)/2; partial data degrades
        // to the mean of whatever halves are present.
        let two_d: Vec<f64> = ["ADE20K", "COCO"]
            .iter()
            .filter_map(|k| by_source.get(*k).copied())
            .collect();
        let mut halves = Vec::new();
        if !two_d.is_empty() {
            halves.push(two_d.iter().sum::<f64>() / two_d.len() as f64);
        }
        if let Some(o) = by_source.get("Omni3D") {
            halves.push(*o);
        }
        if !halves.is_empty() {
            out.insert(
                "cv_bench_official".into(),
                halves.iter().sum::<f64>() / halves.len() as f64,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_mcq_golden_vectors() {
        let abcd = ["A", "B", "C", "D"];
        let cases = [
            ("B", "B"),
            ("(C)", "C"),
            ("The answer is D.", "D"),
            ("A. cat", "A"),
            ("I think it's B because A is wrong", "A"),
            ("b", ""),
            ("Answer: C", "C"),
            ("A cat sits", "A"),
            ("D)", "D"),
            ("none", ""),
        ];
        for (input, want) in cases {
            assert_eq!(extract_mcq_answer(input, &abcd), want, "input {input:?}");
        }
        assert_eq!(extract_mcq_answer("", &abcd), "");
    }

    #[test]
    fn sqa_golden_vectors() {
        let cases = [
            ("B", true),
            ("b", true),
            ("B.", true),
            ("B. b", true),
            ("(B)", false),
            ("The answer is B", false),
            ("B: b", false),
        ];
        for (input, want) in cases {
            assert_eq!(sqa_correct(input, "B", false), want, "input {input:?}");
        }
        assert!(
            !sqa_correct("B.", "B", true),
            "classic never fires the `B.` branch"
        );
    }

    #[test]
    fn mmvp_golden_vectors() {
        let cases = [
            ("A", "A"),
            ("(b)", "B"),
            ("B.", "B"),
            ("The answer is A", "A"),
            ("a dog", "A"),
            ("Option B", "B"),
            ("Yes", ""),
        ];
        for (input, want) in cases {
            assert_eq!(mmvp_letter(input), want, "input {input:?}");
        }
    }

    #[test]
    fn cvbench_golden_vectors() {
        let cases = [
            ("A", "A"),
            ("(B)", "B"),
            ("C.", "C"),
            ("The answer is A", "T"),
            ("b) two", "B"),
            (" (D) 3", "D"),
        ];
        for (input, want) in cases {
            assert_eq!(cvbench_letter(input), want, "input {input:?}");
        }
        // Python's IGNORECASE [A-Z] matches İ (simple lowercase "i"); found by differential fuzzing.
        assert_eq!(cvbench_letter("İ"), "İ");
        assert_eq!(cvbench_letter("(3)"), "");
    }

    #[test]
    fn seed_takes_first_char() {
        assert_eq!(seed_first_char(" The answer is B"), "T");
        assert_eq!(seed_first_char("B"), "B");
        assert_eq!(seed_first_char(""), "");
    }

    #[test]
    fn mmstar_classic_rules() {
        assert!(mmstar_classic_correct("B", "B"));
        assert!(mmstar_classic_correct("(b) cat", "B"));
        assert!(mmstar_classic_correct("Option B", "B"));
        assert!(mmstar_classic_correct("The answer is B", "B"));
        assert!(!mmstar_classic_correct("", "B"));
        assert!(!mmstar_classic_correct("(", "B"));
        assert!(!mmstar_classic_correct("I pick B", "B"));
    }
}
