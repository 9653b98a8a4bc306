//! MMMU (eval.md §3.9): the official multiple-choice parser with lmms-eval's random fallback
//! (reproduced with a CPython-compatible RNG seeded 0, drawn in data order; the number of
//! fallbacks is reported), the open-ended parser and `eval_open` with official list semantics.
//! `scorer_options.open_ended = "head_bug"` reproduces lmms-eval v0.3.5–HEAD, which collapses the
//! candidate list to `str(first)` and so scores every open question wrong.

use super::{Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use crate::eval::text::{is_word_char, py_float, py_round2};
use anyhow::{bail, Result};
use serde_json::{json, Map};
use std::collections::BTreeMap;

/// A normalised open-ended candidate: a number rounded to 2 places, or a lowercased string.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenPred {
    /// `round(float(s.replace(",", "")), 2)`.
    Num(f64),
    /// Lowercased text (1-char strings become `" s"` and `"s "`).
    Str(String),
}

/// Result of the multiple-choice parser.
#[derive(Debug, Clone, PartialEq)]
pub struct McParse {
    /// The chosen letter.
    pub letter: String,
    /// True when no candidate was found and the letter was drawn at random.
    pub random: bool,
}

/// `parse_multi_choice_response` with `index2ans` = (letter, option text).
pub fn parse_mmmu_multi_choice(
    response: &str,
    options: &[(String, String)],
    rng: &mut crate::eval::pyrandom::PyRandom,
) -> McParse {
    let mut r = response;
    for c in [',', '.', '!', '?', ';', ':', '\''] {
        r = r.trim_matches(c);
    }
    let resp = format!(" {r} ");
    let letters: Vec<&str> = options.iter().map(|(l, _)| l.as_str()).collect();
    let mut cands: Vec<&str> = letters
        .iter()
        .copied()
        .filter(|l| resp.contains(&format!("({l})")))
        .collect();
    let with_brackets = !cands.is_empty();
    let mut index_ans = true;
    if cands.is_empty() {
        cands = letters
            .iter()
            .copied()
            .filter(|l| resp.contains(&format!("{l} ")))
            .collect();
    }
    if cands.is_empty() {
        cands = letters
            .iter()
            .copied()
            .filter(|l| resp.contains(&format!("{l}.")))
            .collect();
    }
    if cands.is_empty() && resp.split_whitespace().count() > 5 {
        let lower = resp.to_lowercase();
        cands = options
            .iter()
            .filter(|(_, t)| lower.contains(&t.to_lowercase()))
            .map(|(l, _)| l.as_str())
            .collect();
        index_ans = false;
    }
    let rfind_chars = |hay: &str, needle: &str| -> i64 {
        hay.rfind(needle)
            .map_or(-1, |b| hay[..b].chars().count() as i64)
    };
    match cands.len() {
        0 => McParse {
            letter: rng.choice(&letters).to_string(),
            random: true,
        },
        1 => McParse {
            letter: cands[0].to_string(),
            random: false,
        },
        _ => {
            let lower = resp.to_lowercase();
            let starts: Vec<i64> = cands
                .iter()
                .map(|c| {
                    if index_ans && with_brackets {
                        rfind_chars(&resp, &format!("({c})"))
                    } else if index_ans {
                        rfind_chars(&resp, &format!(" {c} "))
                    } else {
                        let text = &options.iter().find(|(l, _)| l == c).unwrap().1;
                        rfind_chars(&lower, &text.to_lowercase())
                    }
                })
                .collect();
            // np.argmax: first maximum.
            let mut best = 0;
            for (i, s) in starts.iter().enumerate() {
                if *s > starts[best] {
                    best = i;
                }
            }
            McParse {
                letter: cands[best].to_string(),
                random: false,
            }
        }
    }
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// Python `\b` at char index `i` of `c`.
fn boundary(c: &[char], i: usize) -> bool {
    let before = i > 0 && is_word_char(c[i - 1]);
    let after = i < c.len() && is_word_char(c[i]);
    before != after
}

fn digits_end(c: &[char], i: usize) -> usize {
    let mut j = i;
    while j < c.len() && is_digit(c[j]) {
        j += 1;
    }
    j
}

/// `-?\b\d{1,3}(?:,\d{3})+\b` at position `i`; returns the end of the match.
fn match_commas(c: &[char], i: usize) -> Option<usize> {
    let try_at = |s: usize| -> Option<usize> {
        if !boundary(c, s) {
            return None;
        }
        let run = digits_end(c, s) - s;
        for d in (1..=run.min(3)).rev() {
            let mut ends = Vec::new();
            let mut p = s + d;
            while p + 4 <= c.len() && c[p] == ',' && c[p + 1..p + 4].iter().all(|&x| is_digit(x)) {
                p += 4;
                ends.push(p);
            }
            for &e in ends.iter().rev() {
                if boundary(c, e) {
                    return Some(e);
                }
            }
        }
        None
    };
    if c.get(i) == Some(&'-') {
        if let Some(e) = try_at(i + 1) {
            return Some(e);
        }
    }
    try_at(i)
}

/// `-?\d+(?:\.\d+)?[eE][+-]?\d+` at position `i`.
fn match_scientific(c: &[char], i: usize) -> Option<usize> {
    let s = if c.get(i) == Some(&'-') { i + 1 } else { i };
    let p = digits_end(c, s);
    if p == s {
        return None;
    }
    let exp = |p: usize| -> Option<usize> {
        if !matches!(c.get(p), Some('e' | 'E')) {
            return None;
        }
        let mut q = p + 1;
        if matches!(c.get(q), Some('+' | '-')) {
            q += 1;
        }
        let e = digits_end(c, q);
        (e > q).then_some(e)
    };
    if c.get(p) == Some(&'.') {
        let f = digits_end(c, p + 1);
        if f > p + 1 {
            if let Some(e) = exp(f) {
                return Some(e);
            }
        }
    }
    exp(p)
}

/// The two negative lookaheads of the simple-number pattern.
fn simple_lookahead_ok(c: &[char], e: usize) -> bool {
    if matches!(c.get(e), Some(',')) || c.get(e).is_some_and(|&x| is_digit(x)) {
        return false;
    }
    if matches!(c.get(e), Some('e' | 'E')) {
        let mut q = e + 1;
        if matches!(c.get(q), Some('+' | '-')) {
            q += 1;
        }
        if c.get(q).is_some_and(|&x| is_digit(x)) {
            return false;
        }
    }
    true
}

/// `-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])` at position `i`.
fn match_simple(c: &[char], i: usize) -> Option<usize> {
    let try_at = |s: usize| -> Option<usize> {
        let d = digits_end(c, s);
        // \d+\.\d+
        if d > s && c.get(d) == Some(&'.') {
            let f = digits_end(c, d + 1);
            if f > d + 1 && simple_lookahead_ok(c, f) {
                return Some(f);
            }
        }
        // \.\d+
        if c.get(s) == Some(&'.') {
            let f = digits_end(c, s + 1);
            if f > s + 1 && simple_lookahead_ok(c, f) {
                return Some(f);
            }
        }
        // \d+\b
        if d > s && boundary(c, d) && simple_lookahead_ok(c, d) {
            return Some(d);
        }
        None
    };
    if c.get(i) == Some(&'-') {
        if let Some(e) = try_at(i + 1) {
            return Some(e);
        }
    }
    try_at(i)
}

fn findall(c: &[char], m: impl Fn(&[char], usize) -> Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        match m(c, i) {
            Some(e) if e > i => {
                out.push(c[i..e].iter().collect());
                i = e;
            }
            _ => i += 1,
        }
    }
    out
}

/// MMMU `extract_numbers`: comma numbers, then scientific, then simple numbers (with the same
/// quirks as the Python regexes: "1,000" also yields "000").
pub fn extract_numbers(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut all = findall(&c, match_commas);
    all.extend(findall(&c, match_scientific));
    all.extend(findall(&c, match_simple));
    all
}

/// MMMU `normalize_str`.
pub fn normalize_str(s: &str) -> Vec<OpenPred> {
    let s = s.trim();
    if let Some(x) = py_float(&s.replace(',', "")) {
        return vec![OpenPred::Num(py_round2(x))];
    }
    let l = s.to_lowercase();
    if l.chars().count() == 1 {
        vec![
            OpenPred::Str(format!(" {l}")),
            OpenPred::Str(format!("{l} ")),
        ]
    } else {
        vec![OpenPred::Str(l)]
    }
}

fn key_subresponses(response: &str) -> Vec<String> {
    let r = response.trim().trim_matches('.').to_lowercase();
    // re.split(r"\.\s(?=[A-Z])|\n") on lowercased text: only "\n" can split.
    let pieces: Vec<&str> = r.split('\n').collect();
    let mut indicators = vec![
        "could be ",
        "so ",
        "is ",
        "thus ",
        "therefore ",
        "final ",
        "answer ",
        "result ",
    ];
    let mut keys = Vec::new();
    for (idx, piece) in pieces.iter().enumerate() {
        if idx == pieces.len() - 1 {
            indicators.push("=");
        }
        let mut shortest: Option<String> = None;
        for ind in &indicators {
            if piece.contains(ind) {
                let tail = piece.rsplit(ind).next().unwrap_or("").trim().to_string();
                match &shortest {
                    Some(s) if !s.is_empty() => {
                        if tail.chars().count() < s.chars().count() {
                            shortest = Some(tail);
                        }
                    }
                    _ => shortest = Some(tail),
                }
            }
        }
        if let Some(s) = shortest {
            if !s.is_empty() && ![":", ",", ".", "!", "?", ";", "'"].contains(&s.trim()) {
                keys.push(s);
            }
        }
    }
    if keys.is_empty() {
        vec![r]
    } else {
        keys
    }
}

/// MMMU `parse_open_response`: key sub-responses plus every number in them, normalised and
/// de-duplicated.
pub fn parse_open_response(response: &str) -> Vec<OpenPred> {
    let keys = key_subresponses(response);
    let mut all: Vec<String> = keys.clone();
    for k in &keys {
        all.extend(extract_numbers(k));
    }
    let mut out: Vec<OpenPred> = Vec::new();
    for s in all {
        for p in normalize_str(&s) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// MMMU `eval_open` (official semantics): a string prediction is right if a normalised gold
/// string is a substring of it; a number if it equals a normalised gold number.
pub fn eval_open(golds: &[&str], preds: &[OpenPred]) -> bool {
    let norm: Vec<OpenPred> = golds.iter().flat_map(|g| normalize_str(g)).collect();
    preds.iter().any(|p| match p {
        OpenPred::Str(s) => norm
            .iter()
            .any(|g| matches!(g, OpenPred::Str(gs) if s.contains(gs.as_str()))),
        OpenPred::Num(x) => norm.iter().any(|g| matches!(g, OpenPred::Num(y) if x == y)),
    })
}

fn py_str(p: &OpenPred) -> String {
    match p {
        OpenPred::Str(s) => s.clone(),
        OpenPred::Num(x) => format!("{x:?}"),
    }
}

pub(super) struct Mmmu {
    head_bug: bool,
}

impl Mmmu {
    pub(super) fn new(open_ended: Option<&str>) -> Result<Self> {
        let head_bug = match open_ended {
            None | Some("official") => false,
            Some("head_bug") => true,
            Some(o) => bail!(
                "mmmu: scorer_options.open_ended = {o:?}; expected \"official\" or \"head_bug\""
            ),
        };
        Ok(Mmmu { head_bug })
    }
}

impl Scorer for Mmmu {
    fn name(&self) -> &'static str {
        "mmmu"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["mmmu_acc"]
    }
    fn score(&self, sample: &Sample, response: &str, ctx: &mut ScoreContext) -> Result<Scored> {
        let pred = response.trim();
        let is_mc = match sample.qtype.as_deref() {
            Some("multiple-choice") => true,
            Some("open") => false,
            _ => sample.options.as_ref().is_some_and(|o| !o.is_empty()),
        };
        let (ok, parsed, random) = if is_mc {
            let options: Vec<(String, String)> = sample
                .option_letters()
                .into_iter()
                .zip(sample.options.clone().unwrap_or_default())
                .collect();
            if options.is_empty() {
                bail!(
                    "sample {}: MMMU multiple-choice question without options",
                    sample.id
                );
            }
            let p = parse_mmmu_multi_choice(pred, &options, &mut ctx.rng);
            (p.letter == sample.answer.trim(), json!(p.letter), p.random)
        } else {
            let mut preds = parse_open_response(pred);
            if self.head_bug {
                // str(parsed_pred[0]) iterated character by character.
                let first = preds.first().map(py_str).unwrap_or_default();
                preds = first
                    .chars()
                    .map(|c| OpenPred::Str(c.to_string()))
                    .collect();
            }
            let shown: Vec<String> = preds.iter().map(py_str).collect();
            (eval_open(&sample.references(), &preds), json!(shown), false)
        };
        let score = f64::from(u8::from(ok));
        let mut payload = Map::new();
        payload.insert(
            "mmmu_acc".into(),
            json!({"id": sample.id, "subdomain": sample.category, "question_type": if is_mc {"multiple-choice"} else {"open"},
                   "answer": sample.answer, "parsed_pred": parsed, "random_fallback": random, "score": score}),
        );
        Ok(Scored {
            filtered: pred.to_string(),
            score,
            parsed: Some(parsed.to_string()),
            payload,
        })
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut out = Metrics::new();
        if items.is_empty() {
            return Ok(out);
        }
        let total: f64 = items.iter().map(|(_, x)| x.score).sum();
        // lmms-eval rounds to 5 decimals; the instance-weighted mean over subjects is the plain mean.
        out.insert(
            "mmmu_acc".into(),
            ((total / items.len() as f64) * 1e5).round() / 1e5,
        );
        let mut subj: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let mut fallbacks = 0usize;
        for (s, x) in items {
            let name = s.category.clone().unwrap_or_else(|| subject_from_id(&s.id));
            let e = subj.entry(name).or_default();
            e.0 += x.score;
            e.1 += 1;
            fallbacks += usize::from(x.payload["mmmu_acc"]["random_fallback"] == json!(true));
        }
        for (k, (s, n)) in subj {
            out.insert(format!("category/{k}"), s / n as f64);
        }
        out.insert("mmmu_random_fallbacks".into(), fallbacks as f64);
        Ok(out)
    }
}

/// `validation_Art_Theory_12` → `Art_Theory`.
fn subject_from_id(id: &str) -> String {
    let rest = id.split_once('_').map_or(id, |(_, r)| r);
    rest.rsplit_once('_').map_or(rest, |(s, _)| s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::pyrandom::PyRandom;

    fn opts() -> Vec<(String, String)> {
        ["1", "2", "3", "4"]
            .iter()
            .enumerate()
            .map(|(i, t)| (((b'A' + i as u8) as char).to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn mc_golden_vectors() {
        let mut rng = PyRandom::new(0);
        for (input, want) in [
            ("A", "A"),
            ("(B)", "B"),
            ("C.", "C"),
            ("The answer is D", "D"),
            ("D. 3", "D"),
        ] {
            let p = parse_mmmu_multi_choice(input, &opts(), &mut rng);
            assert_eq!(
                p,
                McParse {
                    letter: want.into(),
                    random: false
                },
                "input {input:?}"
            );
        }
        let mut rng = PyRandom::new(0);
        let p = parse_mmmu_multi_choice("answer: b", &opts(), &mut rng);
        assert_eq!(
            p,
            McParse {
                letter: "D".into(),
                random: true
            }
        );
    }

    #[test]
    fn open_golden_vectors() {
        assert_eq!(parse_open_response("12.5"), vec![OpenPred::Num(12.5)]);
        assert_eq!(
            parse_open_response("The answer is 3"),
            vec![OpenPred::Num(3.0)]
        );
        let mut got = parse_open_response("Therefore, the final answer is 1,000.");
        got.sort_by_key(py_str);
        assert_eq!(got, vec![OpenPred::Num(0.0), OpenPred::Num(1000.0)]);
        assert_eq!(
            parse_open_response("Paris"),
            vec![OpenPred::Str("paris".into())]
        );
        assert_eq!(parse_open_response("x = 5"), vec![OpenPred::Num(5.0)]);
    }

    #[test]
    fn extract_numbers_quirks() {
        assert_eq!(extract_numbers("1,000"), vec!["1,000", "000"]);
        // Expected values printed by the Python regexes of lmms-eval's extract_numbers.
        assert_eq!(extract_numbers("-3.5 and 2e10"), vec!["2e10", "-3.5", "10"]);
        assert_eq!(extract_numbers("1e5"), vec!["1e5", "5"]);
        assert_eq!(
            extract_numbers("a-1,234,567b 3.14e-2 .5 -7"),
            vec!["-1,234", "3.14e-2", "3", "-2", ".5", "-7"]
        );
        assert_eq!(extract_numbers("x12.5,"), vec!["12"]);
        assert_eq!(extract_numbers("abc"), Vec::<String>::new());
    }

    #[test]
    fn eval_open_list_semantics() {
        assert!(eval_open(
            &["1000"],
            &parse_open_response("Therefore, the final answer is 1,000.")
        ));
        assert!(eval_open(
            &["Paris"],
            &parse_open_response("It is paris, france")
        ));
        assert!(!eval_open(&["London"], &parse_open_response("Paris")));
        // One-character golds become " a" / "a " and match as words only.
        assert!(eval_open(&["A"], &parse_open_response("The answer is a")));
        assert!(!eval_open(&["A"], &parse_open_response("cat")));
        // A number gold matches a number anywhere in the response after rounding to 2 places.
        assert!(eval_open(
            &["3.14159"],
            &parse_open_response("so it is 3.14")
        ));
    }

    #[test]
    fn subject_names() {
        assert_eq!(subject_from_id("validation_Art_Theory_12"), "Art_Theory");
    }
}
