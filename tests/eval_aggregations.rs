//! Aggregations of each scorer family on small hand-computed cases (eval.md §3, §7).

use mlvf::eval::predictions::{Prediction, PredictionSet};
use mlvf::eval::{score_benchmark, Benchmark, BenchmarkManifest, Sample, ScoreReport};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A sample with the fields a test sets; everything else empty.
fn sample(id: &str, answer: &str, fields: Value) -> Sample {
    let get = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    Sample {
        index: 0,
        id: id.into(),
        images: vec![],
        prompt: format!("question {id}"),
        answer: answer.into(),
        answers: fields
            .get("answers")
            .map(|a| serde_json::from_value(a.clone()).unwrap()),
        question: None,
        options: fields
            .get("options")
            .map(|a| serde_json::from_value(a.clone()).unwrap()),
        group: get("group"),
        category: get("category"),
        subcategory: get("subcategory"),
        subset: get("subset"),
        qtype: get("qtype"),
        meta: fields
            .get("meta")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(Map::new),
    }
}

/// Score `(sample, response)` pairs (None = unanswered) with `scorer`.
fn score(
    scorer: &str,
    options: Value,
    primary: &str,
    cases: Vec<(Sample, Option<&str>)>,
) -> ScoreReport {
    score_version(scorer, None, options, primary, cases)
}

/// Like [`score`], with a manifest `scorer_version`.
fn score_version(
    scorer: &str,
    version: Option<&str>,
    options: Value,
    primary: &str,
    cases: Vec<(Sample, Option<&str>)>,
) -> ScoreReport {
    let manifest: BenchmarkManifest = serde_json::from_value(json!({
        "format": "mmeval-jsonl/1", "task": "t", "count": cases.len(), "scorer_version": version,
        "generation": {"max_new_tokens": 16}, "scorer": scorer, "scorer_options": options,
        "report": {"primary": primary}
    }))
    .unwrap();
    let mut samples = Vec::new();
    let mut by_index = BTreeMap::new();
    for (i, (mut s, resp)) in cases.into_iter().enumerate() {
        s.index = i;
        if let Some(r) = resp {
            by_index.insert(
                i,
                Prediction {
                    index: i,
                    response: r.to_string(),
                },
            );
        }
        samples.push(s);
    }
    let bench = Benchmark {
        dir: ".".into(),
        manifest,
        samples,
        data_digest: String::new(),
    };
    let preds = PredictionSet {
        by_index,
        source: None,
        valid_len: 0,
        header: None,
        unmatched: 0,
        dropped_partial_line: false,
    };
    score_benchmark(&bench, &preds).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn textvqa_vqa_accuracy_with_ten_answers() {
    let answers =
        json!(["two dogs", "2 dogs", "2 dogs", "2", "dogs", "two", "2 dogs", "two dogs", "2", "2"]);
    // Normalised: "2 dogs" ×5, "2" ×4 ("two"→"2"), "dogs" ×1.
    let r = score(
        "vqa_acc",
        json!({}),
        "exact_match",
        vec![
            (
                sample("a", "2 dogs", json!({"answers": answers})),
                Some("Two dogs."),
            ),
            (sample("b", "2", json!({"answers": answers})), Some("dogs")),
        ],
    );
    assert!(
        close(r.metrics["exact_match"], (1.0 + 0.3) / 2.0),
        "{:?}",
        r.metrics
    );
}

#[test]
fn mmbench_circular_needs_every_copy_and_uses_the_static_fallback() {
    let opts = json!(["teddy bear", "rabbit", "cat", "dog"]);
    let s = |id: &str, ans: &str, group: &str, main: bool, cat: &str| {
        sample(
            id,
            ans,
            json!({"options": opts, "group": group, "category": cat, "meta": {"main": main}}),
        )
    };
    let r = score(
        "mmbench_circular",
        json!({}),
        "gpt_eval_score",
        vec![
            (s("1", "C", "1", true, "animals"), Some("C")),
            (s("1000001", "B", "1", false, "animals"), Some("answer(B)")), // fallback: (B)
            (s("2", "A", "2", true, "animals"), Some("A")),
            (
                s("1000002", "D", "2", false, "animals"),
                Some("It is a cat"),
            ), // text → C, wrong
            (s("3", "B", "3", true, "objects"), Some("B")),
            (s("1000003", "C", "3", false, "objects"), None), // unanswered copy
        ],
    );
    assert!(
        close(r.metrics["circular_accuracy"], 0.5),
        "{:?}",
        r.metrics
    );
    assert!(close(r.metrics["gpt_eval_score"], 50.0));
    assert!(
        close(r.metrics["vanilla_accuracy"], 1.0),
        "main questions alone are all right"
    );
    assert_eq!(r.metrics["static_fallbacks"], 1.0);
    assert_eq!((r.missing, r.incomplete_groups), (1, 1));
    assert!(close(r.metrics["category/animals"], 0.5));
}

#[test]
fn mmstar_average_is_a_macro_over_l2_categories() {
    let s = |id: &str, l2: &str, cat: &str| {
        sample(id, "B", json!({"category": cat, "subcategory": l2}))
    };
    let r = score(
        "mcq_extract",
        json!({}),
        "average",
        vec![
            (s("1", "l2a", "math"), Some("B")),
            (s("2", "l2b", "math"), Some("(B)")),
            (s("3", "l2b", "science"), Some("A")),
            (s("4", "l2b", "science"), Some("b")),
        ],
    );
    // l2a: 1/1, l2b: 1/3 → average (1 + 1/3)/2; plain accuracy 2/4.
    assert!(
        close(r.metrics["average"], (1.0 + 1.0 / 3.0) / 2.0),
        "{:?}",
        r.metrics
    );
    assert!(close(r.metrics["accuracy"], 0.5));
    assert!(close(r.metrics["category/math"], 1.0));
    assert!(close(r.metrics["category/science"], 0.0));

    let classic = score(
        "mmstar_classic",
        json!({}),
        "average",
        vec![
            (s("1", "l2a", "math"), Some("The answer is B")),
            (s("2", "l2a", "math"), Some("I pick B")),
        ],
    );
    assert!(close(classic.metrics["average"], 0.5));
}

#[test]
fn cvbench_plain_mean_and_official_formula() {
    let s = |id: &str, ans: &str, src: &str| sample(id, ans, json!({"subset": src}));
    let r = score(
        "cvbench_letter",
        json!({}),
        "cv_bench_official",
        vec![
            (s("1", "(A)", "ADE20K"), Some("(A) left")),
            (s("2", "(B)", "COCO"), Some("The answer is B")), // parsed "T": wrong
            (s("3", "(C)", "Omni3D"), Some("C.")),
        ],
    );
    assert!(close(r.metrics["cv_bench_acc"], 2.0 / 3.0));
    assert!(close(
        r.metrics["cv_bench_official"],
        ((1.0 + 0.0) / 2.0 + 1.0) / 2.0
    ));
}

#[test]
fn mmmu_multiple_choice_open_and_random_fallback() {
    let mc = |id: &str, ans: &str| {
        sample(
            id,
            ans,
            json!({"options": ["1", "2", "3", "4"], "qtype": "multiple-choice", "category": "Math"}),
        )
    };
    let cases = || {
        vec![
            (mc("validation_Math_1", "B"), Some("(B)")),
            (mc("validation_Math_2", "D"), Some("answer: b")), // random → D under seed 0
            (
                sample(
                    "validation_Art_1",
                    "1000",
                    json!({"qtype": "open", "category": "Art"}),
                ),
                Some("The final answer is 1,000."),
            ),
        ]
    };
    let r = score("mmmu", json!({}), "mmmu_acc", cases());
    assert!(close(r.metrics["mmmu_acc"], 1.0), "{:?}", r.metrics);
    assert_eq!(r.metrics["mmmu_random_fallbacks"], 1.0);
    assert!(close(r.metrics["category/Art"], 1.0));
    // lmms-eval HEAD's bug: every open-ended answer is scored wrong.
    let bug = score(
        "mmmu",
        json!({"open_ended": "head_bug"}),
        "mmmu_acc",
        cases(),
    );
    assert!(close(bug.metrics["mmmu_acc"], 0.66667));
}

#[test]
fn seed_image_and_video_split() {
    let s = |id: &str, sub: &str| sample(id, "A", json!({"subset": sub}));
    let r = score(
        "seed_first_char",
        json!({}),
        "seed_image",
        vec![
            (s("1", "image"), Some("A")),
            (s("2", "image"), Some("The answer is A")),
            (s("3", "video"), Some("a")),
        ],
    );
    assert!(close(r.metrics["seed_image"], 0.5));
    assert!(close(r.metrics["seed_video"], 1.0));
    assert!(close(r.metrics["seed_all"], 2.0 / 3.0));
}

#[test]
fn chartqa_splits_docvqa_anls_ocrbench_counts() {
    let r = score(
        "relaxed_acc",
        json!({}),
        "relaxed_overall",
        vec![
            (sample("1", "10", json!({"subset": "human"})), Some("10.4")),
            (
                sample("2", "yes", json!({"subset": "augmented"})),
                Some("no"),
            ),
            (
                sample("3", "12%", json!({"subset": "augmented"})),
                Some("12%"),
            ),
        ],
    );
    assert!(close(r.metrics["relaxed_human_split"], 1.0));
    assert!(close(r.metrics["relaxed_augmented_split"], 0.5));
    assert!(close(r.metrics["relaxed_overall"], 2.0 / 3.0));

    let r = score(
        "anls",
        json!({}),
        "anls",
        vec![
            (
                sample("1", "x", json!({"answers": ["1/2/2010"]})),
                Some("1/2/201"),
            ),
            (sample("2", "x", json!({"answers": ["abcd"]})), Some("zzzz")),
        ],
    );
    assert!(close(r.metrics["anls"], 0.875 / 2.0));

    let r = score(
        "ocrbench_contains",
        json!({}),
        "ocrbench_accuracy",
        vec![
            (
                sample(
                    "1",
                    "stop",
                    json!({"answers": ["stop"], "category": "Regular Text Recognition"}),
                ),
                Some("STOP"),
            ),
            (
                sample(
                    "2",
                    "x^{2}",
                    json!({"answers": ["x^{2}"], "category": "HMER", "qtype": "HME100k"}),
                ),
                Some("x ^ { 2 }"),
            ),
            (
                sample(
                    "3",
                    "go",
                    json!({"answers": ["go"], "category": "HMER", "qtype": "HME100k"}),
                ),
                Some("GO"),
            ),
        ],
    );
    assert!(close(r.metrics["ocrbench_accuracy"], 2.0 / 1000.0));
    assert_eq!(r.metrics["ocrbench_score"], 2.0);
    assert_eq!(r.metrics["category/HMER"], 1.0);
}

#[test]
fn mmvp_pairs_ai2d_filter_and_sqa() {
    let s = |id: &str, ans: &str, g: &str| sample(id, ans, json!({"group": g}));
    let r = score(
        "mmvp_letter",
        json!({}),
        "mmvp_pair_accuracy",
        vec![
            (s("1", "(a)", "0"), Some("A")),
            (s("2", "(b)", "0"), Some("(b)")),
            (s("3", "(a)", "1"), Some("a dog")),
            (s("4", "(b)", "1"), Some("Yes")),
        ],
    );
    assert!(close(r.metrics["mmvp_accuracy"], 0.75));
    assert!(close(r.metrics["mmvp_pair_accuracy"], 0.5));

    let r = score(
        "ai2d_letter",
        json!({}),
        "exact_match",
        vec![
            (sample("1", "A", json!({})), Some("A. cat")),
            (sample("2", "B", json!({})), Some("The answer is B")),
        ],
    );
    assert_eq!(r.filter, "flexible-extract");
    assert!(close(r.metrics["exact_match"], 0.5));
    assert_eq!(r.keyed_metrics()["exact_match,flexible-extract"], 0.5);

    let r = score(
        "sqa_letter",
        json!({}),
        "exact_match",
        vec![
            (sample("1", "B", json!({})), Some("B. b")),
            (sample("2", "B", json!({})), Some("(B)")),
        ],
    );
    assert!(close(r.metrics["exact_match"], 0.5));
}

#[test]
fn vqav2_classic_modes_normalise_only_when_references_disagree() {
    let same = json!(vec!["what's"; 10]);
    let mixed = json!([
        "two dogs", "2 dogs", "two dogs", "2 dogs", "two dogs", "2 dogs", "two dogs", "2 dogs",
        "two dogs", "2 dogs"
    ]);
    let run = |mode: &str, answers: &Value, pred: &str| {
        score(
            "vqa_acc",
            json!({"normalize": mode}),
            "exact_match",
            vec![(sample("q", "x", json!({"answers": answers})), Some(pred))],
        )
        .metrics["exact_match"]
    };
    // ≤ v0.3.x runs the full EvalAI processor on the prediction ("what 's") and leaves a single
    // unique reference raw, so they never meet; v0.4 compares the cleaned prediction.
    assert_eq!(run("classic_v03", &same, "what's"), 0.0);
    assert_eq!(run("classic_v04", &same, "what's"), 1.0);
    assert_eq!(run("punct_digit", &same, "what's"), 1.0);
    // With disagreeing references both sides get punctuation + digits: "two dogs" → "2 dogs".
    assert_eq!(run("classic_v04", &mixed, "two dogs"), 1.0);
    assert_eq!(run("classic_v03", &mixed, "Two dogs."), 1.0);
}

#[test]
fn realworldqa_classic_uses_the_flexible_extract_filter() {
    let q = "How many cars?\nA. two cars\nB. three cars\nPlease answer directly with only the letter of the correct option and nothing else.";
    let s = |id: &str| {
        let mut x = sample(id, "B", json!({}));
        x.question = Some(q.into());
        x
    };
    let run = |version: &str| {
        score_version(
            "realworldqa",
            Some(version),
            json!({}),
            "exact_match",
            vec![(s("1"), Some("three cars"))],
        )
        .metrics["exact_match"]
    };
    assert_eq!(
        run("head-2026-08"),
        0.0,
        "HEAD: 'three cars' is not the letter B"
    );
    assert_eq!(
        run("classic-v0.4"),
        1.0,
        "classic: the option text maps to B"
    );
}

#[test]
fn scienceqa_b_dot_rule_arrived_in_v035() {
    let run = |version: &str| {
        score_version(
            "sqa_letter",
            Some(version),
            json!({}),
            "exact_match",
            vec![(sample("1", "B", json!({})), Some("B. b"))],
        )
        .metrics["exact_match"]
    };
    assert_eq!(run("head-2026-08"), 1.0);
    assert_eq!(
        run("classic-v0.4"),
        1.0,
        "v0.4 already had the fix (8ada8050, v0.3.5)"
    );
    assert_eq!(run("classic-v0.3"), 0.0);
}
