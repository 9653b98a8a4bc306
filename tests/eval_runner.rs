//! The eval runner with a fake generator: prompts, metrics, resume after an error or a kill, and
//! re-scoring cached predictions after the scorer changes (no generation).

use image::DynamicImage;
use mlvf::eval::predictions::load_predictions;
use mlvf::eval::{run_benchmark, score_benchmark, Benchmark, Generator, Request, RunOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
}

fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    for entry in walkdir::WalkDir::new(fixture(name)) {
        let entry = entry.unwrap();
        let target = dst.join(entry.path().strip_prefix(fixture(name)).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    (tmp, dst)
}

/// Answers by question text; fails after `fail_after` calls when set; records every call.
struct FakeGen {
    answers: HashMap<&'static str, &'static str>,
    calls: Vec<(usize, String, usize)>,
    fail_after: Option<usize>,
}

impl FakeGen {
    fn new(answers: &[(&'static str, &'static str)]) -> Self {
        FakeGen {
            answers: answers.iter().copied().collect(),
            calls: Vec::new(),
            fail_after: None,
        }
    }
}

impl Generator for FakeGen {
    fn generate(
        &mut self,
        images: &[DynamicImage],
        prompt: &str,
        max_new_tokens: usize,
    ) -> anyhow::Result<String> {
        if self.fail_after == Some(self.calls.len()) {
            anyhow::bail!("out of memory (simulated)");
        }
        for img in images {
            assert_eq!(
                img.color(),
                image::ColorType::Rgb8,
                "images reach the model as RGB"
            );
        }
        self.calls
            .push((images.len(), prompt.to_string(), max_new_tokens));
        let q = self.answers.keys().find(|q| prompt.contains(*q)).copied();
        Ok(q.map(|q| self.answers[q])
            .unwrap_or("I cannot tell")
            .to_string())
    }
}

const GQA_ANSWERS: &[(&str, &str)] = &[
    ("Is it overcast?", "No"),
    ("What color is the car?", "Red!"),
    ("Which side is the cup on?", "right"),
    ("What is on the table?", "T-shirt"),
];

#[test]
fn generates_with_the_llava_prompt_and_scores() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let preds = dir.join("out/predictions.jsonl");
    let mut gen = FakeGen::new(GQA_ANSWERS);
    let summary = run_benchmark(&mut gen, &bench, &preds, &RunOptions::default()).unwrap();
    assert_eq!(
        (summary.total, summary.cached, summary.generated),
        (4, 0, 4)
    );
    let (n_images, prompt, max_new) = &gen.calls[0];
    assert_eq!(*n_images, 1);
    assert_eq!(*max_new, 16, "max_new_tokens comes from the manifest");
    assert_eq!(
        prompt,
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, \
         detailed, and polite answers to the user's questions. USER: <image>\nIs it overcast?\nAnswer the question \
         using a single word or phrase. ASSISTANT:"
    );
    let set = load_predictions(&preds, &bench, true).unwrap();
    let report = score_benchmark(&bench, &set).unwrap();
    // No ✓, Red! ✓ (punctuation ignored), right ✗, T-shirt ✓.
    assert_eq!(report.metrics["exact_match"], 0.75);
    assert_eq!((report.n, report.missing), (4, 0));
    assert_eq!(report.primary_value, Some(0.75));
}

#[test]
fn resumes_after_a_generator_error_without_asking_again() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let preds = dir.join("predictions.jsonl");
    let mut failing = FakeGen::new(GQA_ANSWERS);
    failing.fail_after = Some(2);
    let err = run_benchmark(&mut failing, &bench, &preds, &RunOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("sample \"g3\""), "{err:#}");

    let mut gen = FakeGen::new(GQA_ANSWERS);
    let summary = run_benchmark(&mut gen, &bench, &preds, &RunOptions::default()).unwrap();
    assert_eq!((summary.cached, summary.generated), (2, 2));
    assert!(
        gen.calls
            .iter()
            .all(|(_, p, _)| !p.contains("Is it overcast?")),
        "answered samples are not regenerated"
    );
    let set = load_predictions(&preds, &bench, true).unwrap();
    assert_eq!(set.by_index.len(), 4);
    // A third run has nothing to do.
    let mut idle = FakeGen::new(GQA_ANSWERS);
    let s = run_benchmark(&mut idle, &bench, &preds, &RunOptions::default()).unwrap();
    assert_eq!((s.cached, s.generated), (4, 0));
    assert!(idle.calls.is_empty());
}

#[test]
fn a_line_cut_by_a_kill_is_ignored_and_regenerated() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let preds = dir.join("predictions.jsonl");
    let mut gen = FakeGen::new(GQA_ANSWERS);
    run_benchmark(
        &mut gen,
        &bench,
        &preds,
        &RunOptions {
            limit: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    // Simulate a kill in the middle of writing the third record.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&preds)
        .unwrap();
    f.write_all(b"{\"doc_id\": 2, \"id\": \"g3\", \"resp")
        .unwrap();
    drop(f);
    let partial = load_predictions(&preds, &bench, true).unwrap();
    assert!(partial.dropped_partial_line);
    assert_eq!(partial.by_index.len(), 2);

    let mut gen = FakeGen::new(GQA_ANSWERS);
    let s = run_benchmark(&mut gen, &bench, &preds, &RunOptions::default()).unwrap();
    assert!(s.recovered_partial_line);
    assert_eq!((s.cached, s.generated), (2, 2));
    // The file is clean again: every line parses.
    let text = std::fs::read_to_string(&preds).unwrap();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
    assert_eq!(text.lines().count(), 5, "header + 4 answers");
}

/// Locks the cache from inside `generate`, like a second process would find it.
struct Probe {
    path: PathBuf,
    seen_locked: Option<bool>,
}

impl Generator for Probe {
    fn generate(&mut self, _: &[DynamicImage], _: &str, _: usize) -> anyhow::Result<String> {
        if self.seen_locked.is_none() {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .unwrap();
            self.seen_locked = Some(!fs4::fs_std::FileExt::try_lock_exclusive(&f).unwrap());
        }
        Ok("no".into())
    }
}

#[test]
fn the_cache_is_locked_while_generating() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let preds = dir.join("predictions.jsonl");
    let mut probe = Probe {
        path: preds.clone(),
        seen_locked: None,
    };
    run_benchmark(&mut probe, &bench, &preds, &RunOptions::default()).unwrap();
    assert_eq!(
        probe.seen_locked,
        Some(true),
        "another handle cannot take the lock during a run"
    );
    // Released afterwards: a rerun works.
    run_benchmark(
        &mut FakeGen::new(GQA_ANSWERS),
        &bench,
        &preds,
        &RunOptions::default(),
    )
    .unwrap();
}

#[test]
fn a_header_cut_by_a_kill_is_rewritten() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let preds = dir.join("predictions.jsonl");
    let header = mlvf::eval::predictions::cache_header(&bench, "vicuna_v1", None).to_string();
    std::fs::write(&preds, &header).unwrap(); // no newline: the kill came before it
    let mut gen = FakeGen::new(GQA_ANSWERS);
    let s = run_benchmark(&mut gen, &bench, &preds, &RunOptions::default()).unwrap();
    assert_eq!(s.generated, 4);
    let set = load_predictions(&preds, &bench, true).unwrap();
    assert!(set.header.is_some());
    assert_eq!(set.by_index.len(), 4);
    assert_eq!(std::fs::read_to_string(&preds).unwrap().lines().count(), 5);
}

#[test]
fn a_broken_line_in_the_middle_is_an_error_not_a_result() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let preds = dir.join("predictions.jsonl");
    let mut gen = FakeGen::new(GQA_ANSWERS);
    run_benchmark(
        &mut gen,
        &bench,
        &preds,
        &RunOptions {
            limit: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&preds)
        .unwrap();
    f.write_all(b"garbage\n{\"doc_id\": 1, \"id\": \"g2\", \"response\": \"red\"}\n")
        .unwrap();
    drop(f);
    let err = load_predictions(&preds, &bench, true).unwrap_err();
    assert!(format!("{err:#}").contains("line 3"), "{err:#}");
}

#[test]
fn changing_the_scorer_rescores_cached_predictions() {
    let (_t, dir) = scratch("gqa_mini");
    let preds = dir.join("predictions.jsonl");
    {
        let bench = Benchmark::load(&dir).unwrap();
        let mut gen = FakeGen::new(GQA_ANSWERS);
        run_benchmark(&mut gen, &bench, &preds, &RunOptions::default()).unwrap();
    }
    // Switch to RealWorldQA's rule (lower/strip/rstrip(".") equality): "Red!" is now wrong.
    let mpath = dir.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["scorer"] = Value::from("realworldqa");
    std::fs::write(&mpath, m.to_string()).unwrap();
    let bench = Benchmark::load(&dir).unwrap();
    // The cache still belongs to this data, so a rerun generates nothing...
    let mut idle = FakeGen::new(GQA_ANSWERS);
    let s = run_benchmark(&mut idle, &bench, &preds, &RunOptions::default()).unwrap();
    assert_eq!(s.generated, 0);
    assert!(idle.calls.is_empty());
    // ...and scoring uses the new scorer.
    let report = score_benchmark(&bench, &load_predictions(&preds, &bench, true).unwrap()).unwrap();
    assert_eq!(report.scorer, "realworldqa");
    assert_eq!(report.metrics["exact_match"], 0.5);
}

#[test]
fn a_cache_for_other_data_is_refused() {
    let (_t, dir) = scratch("gqa_mini");
    let preds = dir.join("predictions.jsonl");
    {
        let bench = Benchmark::load(&dir).unwrap();
        run_benchmark(
            &mut FakeGen::new(GQA_ANSWERS),
            &bench,
            &preds,
            &RunOptions::default(),
        )
        .unwrap();
    }
    let dpath = dir.join("data.jsonl");
    let text = std::fs::read_to_string(&dpath)
        .unwrap()
        .replace("\"left\"", "\"right\"");
    std::fs::write(&dpath, text).unwrap();
    let mpath = dir.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("sha256_data");
    std::fs::write(&mpath, m.to_string()).unwrap();
    let bench = Benchmark::load(&dir).unwrap();
    let err = run_benchmark(
        &mut FakeGen::new(GQA_ANSWERS),
        &bench,
        &preds,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("different data.jsonl"),
        "{err:#}"
    );
}

/// Answers to pope_mini: dog ✓, cat ✗, car ✗ ("No" for yes), bus ✓, cup ✗ ("Yes." is no yes), fork ✓.
const POPE_ANSWERS: &[(&str, &str)] = &[
    ("dog", "yes"),
    ("cat", "yes"),
    ("car", "No"),
    ("bus", "no"),
    ("cup", "Yes."),
    ("fork", "no"),
];

#[test]
fn mme_pairs_and_pope_subsets_through_the_runner() {
    let bench = Benchmark::load(&fixture("mme_mini")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let preds = tmp.path().join("mme.jsonl");
    let mut gen = FakeGen::new(&[
        ("dog", "Yes"),
        ("cat", "Yes"),
        ("car", "yes"),
        ("bus", "No."),
        ("print 3", "No"),
        ("print 4", "I don't know"),
    ]);
    run_benchmark(&mut gen, &bench, &preds, &RunOptions::default()).unwrap();
    let r = score_benchmark(&bench, &load_predictions(&preds, &bench, true).unwrap()).unwrap();
    // existence: image 1 (1,0) → 50 + 0; image 2 (1,1) → 100 + 100; mean 125. code: 0.
    assert_eq!(r.metrics["mme_perception_score"], 125.0);
    assert_eq!(r.metrics["mme_cognition_score"], 0.0);
    assert_eq!(r.metrics["category/existence"], 125.0);

    let bench = Benchmark::load(&fixture("pope_mini")).unwrap();
    let preds = tmp.path().join("pope.jsonl");
    let mut gen = FakeGen::new(POPE_ANSWERS);
    run_benchmark(&mut gen, &bench, &preds, &RunOptions::default()).unwrap();
    assert!(gen.calls.iter().all(|(_, _, m)| *m == 128));
    let r = score_benchmark(&bench, &load_predictions(&preds, &bench, true).unwrap()).unwrap();
    let m = &r.metrics;
    assert_eq!(m["pope_accuracy"], 0.5);
    assert_eq!(m["pope_precision"], 0.5);
    assert_eq!(m["pope_recall"], 0.5);
    assert_eq!(m["pope_f1_score"], 0.5);
    assert_eq!(
        m["pope_yes_ratio"], 0.5,
        "lmms-eval's key counts ground-truth yes"
    );
    assert!(
        (m["pope_pred_yes_ratio"] - 2.0 / 6.0).abs() < 1e-12,
        "\"Yes.\" is not a yes (no punctuation stripping)"
    );
    assert_eq!(m["pope_f1_score/adversarial"], 0.5);
    assert_eq!(m["pope_f1_score/random"], 0.0);
    assert_eq!(m["pope_f1_subset_mean"], 0.25);
    assert_eq!(r.primary_value, Some(0.25));
}

#[test]
fn evaluate_writes_cache_samples_and_results() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let out = dir.join("eval-out");
    let mut gen = FakeGen::new(GQA_ANSWERS);
    let info = mlvf::eval::RunInfo {
        model: Some("fake".into()),
        ..Default::default()
    };
    let (summary, report) =
        mlvf::eval::evaluate(&mut gen, &bench, &out, &RunOptions::default(), &info).unwrap();
    assert_eq!(summary.generated, 4);
    assert_eq!(report.metrics["exact_match"], 0.75);
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["results"]["gqa_mini"]["exact_match,none"], 0.75);
    assert_eq!(results["config"]["model"], "fake");
    assert_eq!(
        std::fs::read_to_string(out.join("samples_gqa_mini.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    assert!(out.join("predictions.jsonl").is_file());
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["primary"]["value"], 0.75);
    assert_eq!(metrics["primary"]["scale"], 100.0);
}

#[test]
fn generation_key_ignores_the_scorer_but_not_the_token_budget() {
    let (_t, dir) = scratch("gqa_mini");
    let base = Benchmark::load(&dir).unwrap().generation_key();
    let mpath = dir.join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let mut m: Value = serde_json::from_str(&original).unwrap();
    m["scorer"] = Value::from("realworldqa");
    std::fs::write(&mpath, m.to_string()).unwrap();
    assert_eq!(Benchmark::load(&dir).unwrap().generation_key(), base);
    m["generation"]["max_new_tokens"] = Value::from(32);
    std::fs::write(&mpath, m.to_string()).unwrap();
    assert_ne!(Benchmark::load(&dir).unwrap().generation_key(), base);
}

/// Answers like [`FakeGen`], records the size of every batch, and fails any batch (or single
/// request) whose prompt contains `poison`.
struct Batcher {
    inner: FakeGen,
    batches: Vec<usize>,
    poison: Option<&'static str>,
}

impl Generator for Batcher {
    fn generate(
        &mut self,
        images: &[DynamicImage],
        prompt: &str,
        max_new_tokens: usize,
    ) -> anyhow::Result<String> {
        if self.poison.is_some_and(|p| prompt.contains(p)) {
            anyhow::bail!("cannot answer this one (simulated)");
        }
        self.inner.generate(images, prompt, max_new_tokens)
    }

    fn generate_batch(
        &mut self,
        requests: &[Request<'_>],
        max_new_tokens: usize,
    ) -> anyhow::Result<Vec<String>> {
        self.batches.push(requests.len());
        if let Some(p) = self.poison {
            if requests.iter().any(|r| r.prompt.contains(p)) {
                anyhow::bail!("out of memory (simulated)");
            }
        }
        requests
            .iter()
            .map(|r| self.inner.generate(r.images, r.prompt, max_new_tokens))
            .collect()
    }
}

fn batcher(poison: Option<&'static str>) -> Batcher {
    Batcher {
        inner: FakeGen::new(GQA_ANSWERS),
        batches: Vec::new(),
        poison,
    }
}

#[test]
fn samples_are_answered_in_batches_with_the_same_predictions() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let one = dir.join("one.jsonl");
    run_benchmark(&mut batcher(None), &bench, &one, &RunOptions::default()).unwrap();
    let three = dir.join("three.jsonl");
    let opts = RunOptions {
        batch: 3,
        ..Default::default()
    };
    let mut gen = batcher(None);
    let s = run_benchmark(&mut gen, &bench, &three, &opts).unwrap();
    assert_eq!((s.generated, s.cached), (4, 0));
    assert_eq!(
        gen.batches,
        vec![3],
        "3 in a batch, then the last one alone"
    );
    assert_eq!(gen.inner.calls.len(), 4);
    assert_eq!(
        std::fs::read_to_string(&one).unwrap(),
        std::fs::read_to_string(&three).unwrap()
    );
    // A rerun with another batch size finds everything cached.
    let mut idle = batcher(None);
    let s = run_benchmark(&mut idle, &bench, &three, &RunOptions { batch: 2, ..opts }).unwrap();
    assert_eq!((s.generated, s.cached), (0, 4));
    assert!(idle.batches.is_empty() && idle.inner.calls.is_empty());
}

#[test]
fn a_failed_batch_is_answered_one_at_a_time_and_the_bad_sample_named() {
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let preds = dir.join("predictions.jsonl");
    let opts = RunOptions {
        batch: 4,
        ..Default::default()
    };
    // The third sample's question: the batch fails, its first two samples are still answered.
    let mut gen = batcher(Some("Which side is the cup on?"));
    let err = run_benchmark(&mut gen, &bench, &preds, &opts).unwrap_err();
    assert!(format!("{err:#}").contains("sample \"g3\""), "{err:#}");
    assert_eq!(gen.batches, vec![4]);
    let set = load_predictions(&preds, &bench, true).unwrap();
    assert_eq!(set.by_index.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    // A rerun resumes at the bad sample.
    let mut gen = batcher(None);
    let s = run_benchmark(&mut gen, &bench, &preds, &opts).unwrap();
    assert_eq!((s.generated, s.cached), (2, 2));
    assert_eq!(gen.batches, vec![2]);
}

/// Records the pixels and the prompt of every request; answers "no".
struct Recorder {
    seen: Vec<(Vec<image::RgbImage>, String)>,
    fill: [u8; 3],
}

impl Generator for Recorder {
    fn generate(
        &mut self,
        images: &[DynamicImage],
        prompt: &str,
        _: usize,
    ) -> anyhow::Result<String> {
        let pixels = images.iter().map(DynamicImage::to_rgb8).collect();
        self.seen.push((pixels, prompt.to_string()));
        Ok("no".into())
    }

    fn blank_fill(&self) -> [u8; 3] {
        self.fill
    }
}

#[test]
fn grounding_controls_change_what_the_generator_sees() {
    use mlvf::eval::Control;
    let (_t, dir) = scratch("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    // g1 and g2 ask about one image, g3 and g4 about another.
    let own: Vec<image::RgbImage> = bench
        .samples
        .iter()
        .map(|s| bench.load_images(s).unwrap()[0].to_rgb8())
        .collect();
    assert_ne!(own[0], own[2]);
    let run = |control: Option<Control>| {
        let mut gen = Recorder {
            seen: Vec::new(),
            fill: [10, 20, 30],
        };
        let path = dir.join(format!("{}.jsonl", control.map_or("images", Control::name)));
        let opts = RunOptions {
            control,
            ..Default::default()
        };
        let summary = run_benchmark(&mut gen, &bench, &path, &opts).unwrap();
        assert_eq!(summary.generated, 4);
        (gen.seen, summary, path)
    };

    let (plain, ..) = run(None);
    for (i, (images, prompt)) in plain.iter().enumerate() {
        assert_eq!(images, &vec![own[i].clone()]);
        assert!(prompt.contains("USER: <image>\n"), "{prompt}");
    }

    // blank: the same prompt, one image of the same size, every pixel the model's blank colour.
    let (blank, _, blank_cache) = run(Some(Control::Blank));
    for (i, (images, prompt)) in blank.iter().enumerate() {
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].dimensions(), own[i].dimensions());
        assert!(
            images[0].pixels().all(|p| p.0 == [10, 20, 30]),
            "sample {i}"
        );
        assert_eq!(prompt, &plain[i].1);
    }

    // shuffle: the same prompt with the other image; questions on one image move together.
    let (shuffled, summary, _) = run(Some(Control::Shuffle));
    assert_eq!(summary.control_unchanged, 0);
    for (i, (images, prompt)) in shuffled.iter().enumerate() {
        assert_eq!(images.len(), 1);
        assert_ne!(images[0], own[i], "sample {i} kept its own image");
        assert_eq!(prompt, &plain[i].1);
    }
    assert_eq!(shuffled[0].0[0], own[2]);
    assert_eq!(shuffled[1].0[0], own[2]);
    assert_eq!(shuffled[2].0[0], own[0]);

    // none: no image, and no `<image>` in the prompt.
    let (none, ..) = run(Some(Control::None));
    for (i, (images, prompt)) in none.iter().enumerate() {
        assert!(images.is_empty());
        assert!(!prompt.contains("<image>"), "{prompt}");
        assert_eq!(prompt, &plain[i].1.replace("<image>\n", ""));
    }

    // Answers are cached under their control: resumable, and never read as another's.
    let text = std::fs::read_to_string(&blank_cache).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["control"], "blank");
    let mut idle = Recorder {
        seen: Vec::new(),
        fill: [0; 3],
    };
    let blank_opts = RunOptions {
        control: Some(Control::Blank),
        ..Default::default()
    };
    let s = run_benchmark(&mut idle, &bench, &blank_cache, &blank_opts).unwrap();
    assert_eq!((s.cached, s.generated), (4, 0));
    for other in [None, Some(Control::None)] {
        let opts = RunOptions {
            control: other,
            ..Default::default()
        };
        let err = run_benchmark(&mut idle, &bench, &blank_cache, &opts).unwrap_err();
        assert!(
            format!("{err:#}").contains("holds answers under control \"blank\""),
            "{err:#}"
        );
    }
    assert!(idle.seen.is_empty());
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("images.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(header.get("control").is_none(), "{header}");
}

#[test]
fn shuffle_says_how_many_samples_it_could_not_move() {
    // pope_mini asks all six questions about one image: there is no other image to give.
    let bench = Benchmark::load(&fixture("pope_mini")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut gen = Recorder {
        seen: Vec::new(),
        fill: [0; 3],
    };
    let opts = RunOptions {
        control: Some(mlvf::eval::Control::Shuffle),
        limit: Some(4),
        ..Default::default()
    };
    let s = run_benchmark(&mut gen, &bench, &tmp.path().join("p.jsonl"), &opts).unwrap();
    assert_eq!(s.control_unchanged, 4);
}

/// Answers `bench` with a [`FakeGen`] into `preds` and scores the answers.
fn answer_and_score(
    bench: &Benchmark,
    answers: &[(&'static str, &'static str)],
    preds: &Path,
) -> mlvf::eval::ScoreReport {
    run_benchmark(
        &mut FakeGen::new(answers),
        bench,
        preds,
        &RunOptions::default(),
    )
    .unwrap();
    score_benchmark(bench, &load_predictions(preds, bench, true).unwrap()).unwrap()
}

#[test]
fn every_score_comes_with_types_and_the_majority_baseline() {
    let bench = Benchmark::load(&fixture("pope_mini")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r = answer_and_score(&bench, POPE_ANSWERS, &tmp.path().join("pope.jsonl"));
    let b = &r.breakdown;
    // POPE's questions are typed by subset; per sample: dog ✓ cat ✗ car ✗ bus ✓ | cup ✗ fork ✓.
    assert_eq!(b.type_field, Some("subset"));
    assert_eq!(b.types["adversarial"].n, 4);
    assert_eq!(b.types["adversarial"].acc, 50.0);
    assert_eq!(b.types["random"].acc, 50.0);
    // Three yes and three no: of the tied answers, always "yes" scores best (F1 2/3 in each
    // subset; always "no" has none). Per type both are half right: the first, "no", is shown.
    assert_eq!(b.majority_answer.as_deref(), Some("yes"));
    let two_thirds = b.majority_value.unwrap();
    assert!((two_thirds - 2.0 / 3.0).abs() < 1e-12, "{two_thirds}");
    assert_eq!(b.types["random"].majority_answer, "no");
    assert_eq!(b.types["random"].majority, 50.0);
    let m: HashMap<String, f64> = b.metrics(100.0).into_iter().collect();
    assert_eq!(m["majority"], two_thirds * 100.0);
    assert_eq!(m["acc/adversarial"], 50.0);
    assert_eq!(m["majority/adversarial"], 50.0);
    assert_eq!(r.summary_json(100.0)["breakdown"]["type_field"], "subset");

    // GQA's mini set has no types; four answers tie and each is right once: "left", the first.
    let bench = Benchmark::load(&fixture("gqa_mini")).unwrap();
    let r = answer_and_score(&bench, GQA_ANSWERS, &tmp.path().join("gqa.jsonl"));
    assert_eq!(r.breakdown.type_field, None);
    assert_eq!(r.breakdown.majority_answer.as_deref(), Some("left"));
    assert_eq!(
        r.breakdown.metrics(100.0),
        vec![("majority".to_string(), 25.0)]
    );
}
