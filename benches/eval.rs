//! Evaluation throughput: answer normalisation/parsing, loading a benchmark directory, and
//! scoring a full benchmark from cached predictions (the cost of re-scoring after a scorer
//! change). Run: `cargo bench --bench eval -- --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, criterion_main, Criterion};
use mlvf::eval::predictions::{load_predictions, PredictionSet};
use mlvf::eval::scorers::{evalai_normalize, extract_mcq_answer, parse_open_response};
use mlvf::eval::{score_benchmark, Benchmark};
use serde_json::json;
use std::hint::black_box;
use std::io::Write;

const RESPONSES: &[&str] = &[
    "Two dogs.",
    "The answer is (B) because the cat is on the left.",
    "yes, it is!",
    "Therefore, the final answer is 1,000.",
    "U.S.A.",
    "I think it's B because A is wrong",
    "a red t-shirt",
    "left / right",
];

/// A VQA-style benchmark of `n` samples (10 references each, no images) and a matching cache.
fn synthetic(n: usize) -> (tempfile::TempDir, Benchmark, PredictionSet) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vqa");
    std::fs::create_dir_all(&dir).unwrap();
    let mut data = std::fs::File::create(dir.join("data.jsonl")).unwrap();
    for i in 0..n {
        let answers: Vec<String> = (0..10).map(|k| format!("answer {}", (i + k) % 7)).collect();
        let rec = json!({"id": format!("q{i}"), "images": [], "prompt": format!("Question {i}?"),
                         "answer": answers[0], "answers": answers});
        writeln!(data, "{rec}").unwrap();
    }
    let manifest = json!({"format": "mmeval-jsonl/1", "task": "vqa_synth", "count": n,
        "generation": {"max_new_tokens": 16}, "scorer": "vqa_acc", "report": {"primary": "exact_match"}});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let bench = Benchmark::load(&dir).unwrap();
    let preds = tmp.path().join("preds.jsonl");
    let mut f = std::fs::File::create(&preds).unwrap();
    for i in 0..n {
        writeln!(
            f,
            "{}",
            json!({"doc_id": i, "filtered_resps": [format!("Answer {}.", i % 5)]})
        )
        .unwrap();
    }
    let set = load_predictions(&preds, &bench, false).unwrap();
    (tmp, bench, set)
}

fn parsers(c: &mut Criterion) {
    c.bench_function("evalai_normalize x8", |b| {
        b.iter(|| {
            RESPONSES
                .iter()
                .map(|r| evalai_normalize(black_box(r)).len())
                .sum::<usize>()
        })
    });
    c.bench_function("extract_mcq_answer x8", |b| {
        b.iter(|| {
            RESPONSES
                .iter()
                .map(|r| extract_mcq_answer(black_box(r), &["A", "B", "C", "D"]).len())
                .sum::<usize>()
        })
    });
    c.bench_function("mmmu parse_open_response x8", |b| {
        b.iter(|| {
            RESPONSES
                .iter()
                .map(|r| parse_open_response(black_box(r)).len())
                .sum::<usize>()
        })
    });
}

fn benchmark_level(c: &mut Criterion) {
    let (tmp, bench, set) = synthetic(5000);
    c.bench_function("load 5k-sample benchmark", |b| {
        b.iter(|| Benchmark::load(&bench.dir).unwrap().samples.len())
    });
    c.bench_function("score 5k vqa_acc samples", |b| {
        b.iter(|| score_benchmark(&bench, &set).unwrap().n)
    });
    drop(tmp);
}

criterion_group!(benches, parsers, benchmark_level);
criterion_main!(benches);
