//! VQA accuracy (TextVQA, VQAv2) with the EvalAI answer normalisation of
//! `tasks/_task_utils/vqa_eval_metric.py` (eval.md §4.1–§4.2, Appendix B).

use super::{mean, scored, Metrics, ScoreContext, Scored, Scorer};
use crate::eval::format::Sample;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The 21 characters `process_punctuation` handles (`' : . * # $ % & ^ | ~` are absent on purpose).
const PUNCTUATIONS: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

const NUMBER_MAP: [(&str, &str); 12] = [
    ("none", "0"),
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

/// The 120-key contraction map of the official VQA evaluation (eval.md Appendix B), including its
/// quirks: capitalised keys never match after lowercasing, and `somebody'd → somebodyd`.
const CONTRACTIONS: &str = "aint→ain't arent→aren't cant→can't couldve→could've couldnt→couldn't \
couldn'tve→couldn't've couldnt've→couldn't've didnt→didn't doesnt→doesn't dont→don't hadnt→hadn't \
hadnt've→hadn't've hadn'tve→hadn't've hasnt→hasn't havent→haven't hed→he'd hed've→he'd've \
he'dve→he'd've hes→he's howd→how'd howll→how'll hows→how's Id've→I'd've I'dve→I'd've Im→I'm \
Ive→I've isnt→isn't itd→it'd itd've→it'd've it'dve→it'd've itll→it'll let's→let's maam→ma'am \
mightnt→mightn't mightnt've→mightn't've mightn'tve→mightn't've mightve→might've mustnt→mustn't \
mustve→must've neednt→needn't notve→not've oclock→o'clock oughtnt→oughtn't ow's'at→'ow's'at \
'ows'at→'ow's'at 'ow'sat→'ow's'at shant→shan't shed've→she'd've she'dve→she'd've she's→she's \
shouldve→should've shouldnt→shouldn't shouldnt've→shouldn't've shouldn'tve→shouldn't've \
somebody'd→somebodyd somebodyd've→somebody'd've somebody'dve→somebody'd've somebodyll→somebody'll \
somebodys→somebody's someoned→someone'd someoned've→someone'd've someone'dve→someone'd've \
someonell→someone'll someones→someone's somethingd→something'd somethingd've→something'd've \
something'dve→something'd've somethingll→something'll thats→that's thered→there'd \
thered've→there'd've there'dve→there'd've therere→there're theres→there's theyd→they'd \
theyd've→they'd've they'dve→they'd've theyll→they'll theyre→they're theyve→they've twas→'twas \
wasnt→wasn't wed've→we'd've we'dve→we'd've weve→we've werent→weren't whatll→what'll whatre→what're \
whats→what's whatve→what've whens→when's whered→where'd wheres→where's whereve→where've whod→who'd \
whod've→who'd've who'dve→who'd've wholl→who'll whos→who's whove→who've whyll→why'll whyre→why're \
whys→why's wont→won't wouldve→would've wouldnt→wouldn't wouldnt've→wouldn't've \
wouldn'tve→wouldn't've yall→y'all yall'll→y'all'll y'allll→y'all'll yall'd've→y'all'd've \
y'alld've→y'all'd've y'all'dve→y'all'd've youd→you'd youd've→you'd've you'dve→you'd've \
youll→you'll youre→you're youve→you've";

fn contractions() -> &'static HashMap<&'static str, &'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| {
        CONTRACTIONS
            .split_whitespace()
            .map(|pair| pair.split_once('→').expect("contraction pair"))
            .collect()
    })
}

/// `COMMA_STRIP = (?<=\d)(\,)+(?=\d)`: is there a digit, one or more commas, then a digit?
fn has_comma_between_digits(t: &str) -> bool {
    let c: Vec<char> = t.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i] == ',' && i > 0 && c[i - 1].is_numeric() {
            let mut j = i;
            while j < c.len() && c[j] == ',' {
                j += 1;
            }
            if j < c.len() && c[j].is_numeric() {
                return true;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    false
}

/// `process_punctuation`: each punctuation char is deleted when it touches a space anywhere in
/// the (original) text or the text has a digit-comma-digit, else replaced by a space; then at
/// most 32 periods not followed by a digit are removed (Python passes `re.UNICODE` as `count`).
fn process_punctuation(t: &str) -> String {
    let comma = has_comma_between_digits(t);
    let chars: Vec<char> = t.chars().collect();
    // Which punctuation characters touch a space somewhere in the original text (`p + " " in t`
    // or `" " + p in t`); one pass instead of 42 substring searches.
    let mut touches = [false; PUNCTUATIONS.len()];
    for (i, c) in chars.iter().enumerate() {
        if let Some(k) = PUNCTUATIONS.iter().position(|p| p == c) {
            let next_space = chars.get(i + 1) == Some(&' ');
            let prev_space = i > 0 && chars[i - 1] == ' ';
            touches[k] |= next_space || prev_space;
        }
    }
    // Replacing each punctuation char in turn equals one pass, since the replacements (nothing or
    // a space) are never punctuation themselves.
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    for c in &chars {
        match PUNCTUATIONS.iter().position(|p| p == c) {
            Some(k) if touches[k] || comma => {}
            Some(_) => out.push(' '),
            None => out.push(*c),
        }
    }
    let mut result = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, &ch) in out.iter().enumerate() {
        let followed_by_digit = out.get(i + 1).is_some_and(|c| c.is_numeric());
        if ch == '.' && !followed_by_digit && removed < 32 {
            removed += 1;
            continue;
        }
        result.push(ch);
    }
    result
}

/// `process_digit_article`: lowercase, number words → digits, drop articles, expand contractions.
fn process_digit_article(t: &str) -> String {
    let lower = t.to_lowercase();
    let mut words: Vec<&str> = Vec::new();
    for w in lower.split_whitespace() {
        let w = NUMBER_MAP
            .iter()
            .find(|(k, _)| *k == w)
            .map_or(w, |(_, v)| *v);
        if !ARTICLES.contains(&w) {
            words.push(w);
        }
    }
    let map = contractions();
    let words: Vec<&str> = words
        .into_iter()
        .map(|w| map.get(w).copied().unwrap_or(w))
        .collect();
    words.join(" ")
}

/// The full `EvalAIAnswerProcessor.__call__` (TextVQA): word_tokenize, whitespace, punctuation,
/// digits/articles/contractions.
pub fn evalai_normalize(s: &str) -> String {
    let t = s
        .to_lowercase()
        .replace([',', '?'], "")
        .replace("'s", " 's");
    let t = t.trim().replace(['\n', '\t'], " ");
    let t = process_punctuation(t.trim());
    process_digit_article(&t)
}

/// The VQAv2 HEAD normalisation: whitespace, punctuation, digits/articles (no word_tokenize,
/// so `what's` stays `what's`).
pub fn punct_digit_normalize(s: &str) -> String {
    let t = s.replace(['\n', '\t'], " ");
    let t = process_punctuation(t.trim());
    process_digit_article(&t)
}

/// VQA accuracy of an already-normalised prediction against normalised references:
/// mean over leave-one-out subsets of `min(1, matches / 3)`.
pub fn vqa_accuracy(pred: &str, gts: &[String]) -> f64 {
    if gts.is_empty() {
        return 0.0;
    }
    let total: f64 = (0..gts.len())
        .map(|i| {
            let matches = gts
                .iter()
                .enumerate()
                .filter(|(j, g)| *j != i && *g == pred)
                .count();
            (matches as f64 / 3.0).min(1.0)
        })
        .sum();
    total / gts.len() as f64
}

/// Which normalisation `vqa_acc` applies to prediction and references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VqaNormalize {
    /// Full EvalAI processor (TextVQA; classic VQAv2 prediction side).
    EvalaiFull,
    /// Punctuation + digit/article only (VQAv2 at lmms-eval HEAD).
    PunctDigit,
    /// VQAv2 ≤ v0.3.x: prediction through the full EvalAI processor; then prediction and
    /// references get punctuation + digit/article only when the references are not all equal.
    ClassicV03,
    /// VQAv2 v0.3.5–v0.4: like `ClassicV03` but the prediction is only whitespace-cleaned first
    /// (the official VQA script, which assumes the server already normalised it).
    ClassicV04,
}

pub(super) struct VqaAcc {
    mode: VqaNormalize,
}

impl VqaAcc {
    pub(super) fn new(option: Option<&str>) -> Result<Self> {
        let mode = match option {
            None | Some("evalai_full") => VqaNormalize::EvalaiFull,
            Some("punct_digit") => VqaNormalize::PunctDigit,
            Some("classic_v03") => VqaNormalize::ClassicV03,
            Some("classic_v04") => VqaNormalize::ClassicV04,
            Some(o) => bail!("vqa_acc: scorer_options.normalize = {o:?}; expected \"evalai_full\", \"punct_digit\", \"classic_v03\" or \"classic_v04\""),
        };
        Ok(VqaAcc { mode })
    }

    /// The normalised prediction and references this mode compares.
    fn normalize(&self, pred: &str, refs: &[&str]) -> (String, Vec<String>) {
        let clean = |s: &str| s.replace(['\n', '\t'], " ").trim().to_string();
        match self.mode {
            VqaNormalize::EvalaiFull => (
                evalai_normalize(pred),
                refs.iter().map(|g| evalai_normalize(g)).collect(),
            ),
            VqaNormalize::PunctDigit => (
                punct_digit_normalize(pred),
                refs.iter().map(|g| punct_digit_normalize(g)).collect(),
            ),
            VqaNormalize::ClassicV03 | VqaNormalize::ClassicV04 => {
                let mut p = if self.mode == VqaNormalize::ClassicV03 {
                    evalai_normalize(pred)
                } else {
                    clean(pred)
                };
                let mut gts: Vec<String> = refs.iter().map(|g| clean(g)).collect();
                let distinct: std::collections::HashSet<&String> = gts.iter().collect();
                if distinct.len() > 1 {
                    gts = gts
                        .iter()
                        .map(|g| process_digit_article(&process_punctuation(g)))
                        .collect();
                    p = process_digit_article(&process_punctuation(&p));
                }
                (p, gts)
            }
        }
    }
}

impl Scorer for VqaAcc {
    fn name(&self) -> &'static str {
        "vqa_acc"
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["exact_match"]
    }
    fn score(&self, sample: &Sample, response: &str, _: &mut ScoreContext) -> Result<Scored> {
        let (pred, gts) = self.normalize(response.trim(), &sample.references());
        Ok(scored(
            response.trim(),
            "exact_match",
            vqa_accuracy(&pred, &gts),
            Some(pred),
        ))
    }
    fn aggregate(&self, items: &[(&Sample, &Scored)]) -> Result<Metrics> {
        let mut m = Metrics::new();
        if let Some(v) = mean(items.iter().map(|(_, x)| *x)) {
            m.insert("exact_match".into(), v);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// eval.md Appendix A, EvalAI full.
    const EVALAI_GOLDEN: &[(&str, &str)] = &[
        ("Two dogs.", "2 dogs"),
        ("The cat", "cat"),
        ("It is 1,000", "it is 1000"),
        ("yes, it is!", "yes it is"),
        ("dont", "don't"),
        ("3.5", "3.5"),
        ("a-b", "b"),
        ("a - b", "b"),
        ("Hello. World.", "hello world"),
        ("Its \"red\"", "its red"),
        ("none", "0"),
        ("what's", "what 's"),
        ("man's hat", "man 's hat"),
        ("TEN", "10"),
        ("an apple", "apple"),
        ("(b)", "b"),
        ("dr. pepper", "dr pepper"),
        ("U.S.A.", "usa"),
        ("2:30", "2:30"),
        ("50%", "50%"),
        ("it's", "it 's"),
        ("isnt", "isn't"),
        ("Im", "im"),
        ("c++", "c"),
        ("left/right", "left right"),
        ("left / right", "left right"),
        ("e-mail", "e mail"),
        ("x.5", "x.5"),
    ];

    #[test]
    fn evalai_full_golden_vectors() {
        for (input, want) in EVALAI_GOLDEN {
            assert_eq!(evalai_normalize(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn vqav2_head_golden_vectors() {
        for (input, want) in EVALAI_GOLDEN {
            let want = match *input {
                "what's" => "what's",
                "man's hat" => "man's hat",
                "it's" => "it's",
                _ => want,
            };
            assert_eq!(punct_digit_normalize(input), want, "input {input:?}");
        }
    }

    #[test]
    fn contraction_map_has_120_keys() {
        assert_eq!(contractions().len(), 120);
    }

    #[test]
    fn vqa_accuracy_by_matching_count() {
        let want = [0.0, 0.3, 0.6, 0.9, 1.0, 1.0, 1.0];
        for (k, w) in want.iter().enumerate() {
            let gts: Vec<String> = (0..10)
                .map(|i| {
                    if i < k {
                        "cat".to_string()
                    } else {
                        format!("x{i}")
                    }
                })
                .collect();
            assert!((vqa_accuracy("cat", &gts) - w).abs() < 1e-9, "k={k}");
        }
    }

    #[test]
    fn period_strip_stops_after_32() {
        let s = ".".repeat(40);
        assert_eq!(process_punctuation(&s), ".".repeat(8));
    }
}
