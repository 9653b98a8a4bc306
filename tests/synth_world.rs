//! The generated world, read back through its public formats only: LLaVA JSON, the mmeval-jsonl/1
//! benchmark format, world.json and the corpus.

use mlvf::eval::predictions::load_predictions;
use mlvf::eval::sha256::hex_digest as sha256_hex;
use mlvf::eval::{run_benchmark, score_benchmark, Benchmark, Generator, RunOptions};
use mlvf::synth::{self, BenchRecord, LlavaRecord, SynthConfig, WorldSummary};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

fn config() -> SynthConfig {
    SynthConfig {
        n_pretrain: 60,
        n_finetune: 80,
        n_per_benchmark: 60,
        max_turns: 5,
        ..SynthConfig::for_scale(synth::Scale::Test)
    }
}

/// One world shared by the tests of this file, generated once per run under cargo's per-target
/// scratch directory (statics are never dropped, so a temp dir would leak).
fn world() -> &'static Path {
    static WORLD: OnceLock<std::path::PathBuf> = OnceLock::new();
    WORLD.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("synth_world");
        if out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        synth::generate(&config(), &out).unwrap();
        out
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn benchmark(task: &str) -> (Value, Vec<BenchRecord>) {
    let dir = world().join("benchmarks").join(task);
    let manifest = read_json(&dir.join("manifest.json"));
    let records = std::fs::read_to_string(dir.join("data.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (manifest, records)
}

#[test]
fn training_splits_are_valid_llava_json_with_existing_images() {
    let root = world();
    let summary = WorldSummary::load(root).unwrap();
    assert_eq!(summary.config, config());
    for split in [&summary.pretrain, &summary.finetune] {
        let text = std::fs::read_to_string(root.join(&split.json)).unwrap();
        let records: Vec<LlavaRecord> = serde_json::from_str(&text).unwrap();
        assert_eq!(records.len(), split.records);
        let mut ids = HashSet::new();
        for r in &records {
            assert!(ids.insert(r.id.clone()), "duplicate id {}", r.id);
            assert!(r.conversations.len() >= 2 && r.conversations.len() % 2 == 0);
            for (i, turn) in r.conversations.iter().enumerate() {
                assert_eq!(turn.from, if i % 2 == 0 { "human" } else { "gpt" });
                assert!(!turn.value.trim().is_empty(), "{}: empty turn", r.id);
                // The image placeholder appears once, at the start of the first human turn.
                let has_token = turn.value.contains("<image>");
                assert_eq!(has_token, i == 0 && r.image.is_some(), "{}: turn {i}", r.id);
            }
            if let Some(image) = &r.image {
                assert!(r.conversations[0].value.starts_with("<image>\n"));
                let img = image::open(root.join(&split.images).join(image)).unwrap();
                assert_eq!((img.width(), img.height()), (64, 64));
            }
        }
        let on_disk = std::fs::read_dir(root.join(&split.images)).unwrap().count();
        assert_eq!(
            on_disk,
            records.iter().filter(|r| r.image.is_some()).count()
        );
    }
    // Text-only samples exist in finetuning (LLaVA-665k has them), not in pretraining.
    assert_eq!(summary.pretrain.text_only, 0);
    // Finetuning conversations hold 1..=max_turns question turns, and the knob is used.
    let text = std::fs::read_to_string(root.join(&summary.finetune.json)).unwrap();
    let records: Vec<LlavaRecord> = serde_json::from_str(&text).unwrap();
    let most = records.iter().map(|r| r.conversations.len() / 2).max();
    assert_eq!(most, Some(config().max_turns), "turns per conversation");
    let corpus = std::fs::read_to_string(root.join(&summary.corpus)).unwrap();
    assert!(corpus.contains("Answer the question using a single word or phrase."));
    assert!(!corpus.contains("<image>"));
    // Count answers agree in number: "There is one star.", never "There is one stars.".
    for sentence in corpus
        .split(['\n', '?'])
        .filter(|l| l.starts_with("There is one "))
    {
        let noun = sentence.trim_end_matches('.').rsplit(' ').next().unwrap();
        assert!(
            !noun.ends_with('s') || noun.ends_with("ss"),
            "plural after `one`: {sentence}"
        );
    }
}

/// Answers each question with its record's `answer`, found by the record's prompt text and the
/// pixels of its image.
struct Oracle {
    records: Vec<(String, Vec<u8>, String)>,
}

impl Generator for Oracle {
    fn generate(
        &mut self,
        images: &[image::DynamicImage],
        prompt: &str,
        _: usize,
    ) -> anyhow::Result<String> {
        let pixels = images[0].to_rgb8().into_raw();
        self.records
            .iter()
            .find(|(p, px, _)| prompt.contains(p.as_str()) && *px == pixels)
            .map(|r| r.2.clone())
            .ok_or_else(|| anyhow::anyhow!("no record asks {prompt:?} about this image"))
    }
}

/// The paper's Avg is the plain mean of every benchmark's number on a 0–100 scale (MME^P as a
/// share of its maximum, OCRBench ÷ 10), so a model that answers everything right must score
/// 100 on every synthetic benchmark once the manifest's `report.scale` is applied.
#[test]
fn an_oracle_scores_100_on_every_benchmark_on_the_tables_scale() {
    let root = world();
    let summary = WorldSummary::load(root).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for b in &summary.benchmarks {
        let dir = root.join(&b.dir);
        let bench = Benchmark::load(&dir).unwrap();
        let records = benchmark(&b.task)
            .1
            .into_iter()
            .map(|r| {
                let px = image::open(dir.join(&r.images[0]))
                    .unwrap()
                    .to_rgb8()
                    .into_raw();
                (r.prompt, px, r.answer)
            })
            .collect();
        let preds = tmp.path().join(format!("{}.jsonl", b.task));
        run_benchmark(
            &mut Oracle { records },
            &bench,
            &preds,
            &RunOptions::default(),
        )
        .unwrap();
        let set = load_predictions(&preds, &bench, true).unwrap();
        let report = score_benchmark(&bench, &set).unwrap();
        let on_table = report.primary_value.unwrap() * bench.manifest.report.scale;
        assert!((on_table - 100.0).abs() < 1e-9, "{}: {on_table}", b.task);
    }
}

#[test]
fn every_benchmark_follows_the_local_format() {
    let root = world();
    let summary = WorldSummary::load(root).unwrap();
    assert_eq!(summary.benchmarks.len(), 8);
    let scorers = [
        "exact_match_hf",
        "pope_exact",
        "mme_yesno",
        "mmbench_circular",
        "cvbench_letter",
        "vqa_acc",
        "ocrbench_contains",
    ];
    for b in &summary.benchmarks {
        let dir = root.join(&b.dir);
        let manifest = read_json(&dir.join("manifest.json"));
        assert_eq!(manifest["format"], "mmeval-jsonl/1");
        assert_eq!(manifest["task"], b.task.as_str());
        assert!(scorers.contains(&manifest["scorer"].as_str().unwrap()));
        assert!(manifest["generation"]["max_new_tokens"].as_u64().unwrap() > 0);
        assert!(!manifest["aggregates"].as_array().unwrap().is_empty());
        let primary = manifest["report"]["primary"].as_str().unwrap();
        assert!(manifest["aggregates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == primary));
        let data = std::fs::read(dir.join("data.jsonl")).unwrap();
        assert_eq!(manifest["sha256_data"], sha256_hex(&data).as_str());
        let lines: Vec<&str> = std::str::from_utf8(&data).unwrap().lines().collect();
        assert_eq!(manifest["count"].as_u64().unwrap() as usize, lines.len());
        assert_eq!(b.records, lines.len());
        let mut ids = HashSet::new();
        let mut referenced = HashSet::new();
        for line in lines {
            let raw: Value = serde_json::from_str(line).unwrap();
            for key in [
                "id",
                "images",
                "prompt",
                "answer",
                "answers",
                "question",
                "options",
                "group",
                "category",
                "subcategory",
                "subset",
                "qtype",
                "meta",
            ] {
                assert!(raw.get(key).is_some(), "{}: record lacks `{key}`", b.task);
            }
            let r: BenchRecord = serde_json::from_value(raw).unwrap();
            assert!(
                ids.insert(r.id.clone()),
                "{}: duplicate id {}",
                b.task,
                r.id
            );
            assert_eq!(r.images.len(), 1);
            let level = r.meta["level"].as_str().unwrap();
            assert!(level == "low" || level == "high");
            referenced.insert(r.images[0].clone());
        }
        // Content addressing: every referenced file exists, is named by its hash, and nothing else
        // is stored.
        for name in &referenced {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(*name, format!("images/{}.png", &sha256_hex(&bytes)[..16]));
        }
        let stored = std::fs::read_dir(dir.join("images")).unwrap().count();
        assert_eq!(stored, referenced.len(), "{}", b.task);
        assert_eq!(stored, b.images);
    }
}

#[test]
fn prompts_carry_the_lmms_eval_post_prompts() {
    let short = "\nAnswer the question using a single word or phrase.";
    for task in ["synth_gqa", "synth_pope", "synth_mme", "synth_textvqa"] {
        for r in benchmark(task).1 {
            assert!(r.prompt.ends_with(short), "{task}: {:?}", r.prompt);
        }
    }
    for r in benchmark("synth_mme").1 {
        assert!(r.question.ends_with(" Please answer yes or no."));
        assert!(!r.prompt.contains("Please answer yes or no."));
    }
    for r in benchmark("synth_mmbench").1 {
        assert!(r.prompt.contains(" There are several options:\nA. "));
        assert!(r
            .prompt
            .ends_with("\n\nAnswer with the option's letter from the given choices directly."));
    }
    for r in benchmark("synth_cvbench_2d").1 {
        assert!(r
            .prompt
            .starts_with("Note: You only need to respond with A, B"));
        assert!(r
            .prompt
            .contains(" Select from the following choices.\n(A) "));
    }
    for r in benchmark("synth_ocrbench").1 {
        assert_eq!(r.prompt, r.question.trim());
    }
    for r in benchmark("synth_textvqa").1 {
        // Python's capitalize(): only the first letter upper case.
        let q = r.prompt.split('\n').next().unwrap();
        assert!(q.chars().skip(1).all(|c| !c.is_uppercase()), "{q}");
        assert_eq!(r.answers.as_ref().unwrap().len(), 10);
        let agree = r
            .answers
            .as_ref()
            .unwrap()
            .iter()
            .filter(|a| **a == r.answer)
            .count();
        assert!(agree >= 9);
    }
}

#[test]
fn yes_no_benchmarks_are_balanced() {
    let (_, pope) = benchmark("synth_pope");
    let mut by_subset: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &pope {
        let e = by_subset.entry(r.subset.clone().unwrap()).or_default();
        match r.answer.as_str() {
            "yes" => e.0 += 1,
            "no" => e.1 += 1,
            other => panic!("POPE answer {other}"),
        }
    }
    assert_eq!(
        by_subset.keys().collect::<Vec<_>>(),
        ["adversarial", "popular", "random"]
    );
    for (subset, (yes, no)) in by_subset {
        assert_eq!(yes, no, "{subset}");
    }
    // MME: exactly two questions per image, one yes and one no.
    let (_, mme) = benchmark("synth_mme");
    let mut groups: HashMap<String, Vec<&BenchRecord>> = HashMap::new();
    for r in &mme {
        groups.entry(r.group.clone().unwrap()).or_default().push(r);
    }
    let categories: HashSet<&str> = mme.iter().map(|r| r.category.as_deref().unwrap()).collect();
    for c in [
        "existence",
        "count",
        "position",
        "color",
        "OCR",
        "numerical_calculation",
        "commonsense_reasoning",
    ] {
        assert!(categories.contains(c), "MME lacks category {c}");
    }
    for (g, rs) in groups {
        assert_eq!(rs.len(), 2, "{g}");
        assert_eq!(rs[0].images, rs[1].images);
        let mut answers: Vec<&str> = rs.iter().map(|r| r.answer.as_str()).collect();
        answers.sort();
        assert_eq!(answers, ["no", "yes"], "{g}");
    }
}

#[test]
fn multiple_choice_answers_are_spread_over_letters_and_circular_rows_agree() {
    let (_, mmb) = benchmark("synth_mmbench");
    let mut letters: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups: HashMap<String, Vec<&BenchRecord>> = HashMap::new();
    for r in &mmb {
        *letters.entry(r.answer.clone()).or_default() += 1;
        groups.entry(r.group.clone().unwrap()).or_default().push(r);
    }
    assert_eq!(letters.len(), 4);
    assert!(letters.values().all(|&n| n == mmb.len() / 4), "{letters:?}");
    for (g, rows) in groups {
        assert_eq!(rows.len(), 4, "group {g}");
        assert_eq!(rows.iter().filter(|r| r.meta["main"] == true).count(), 1);
        let main = rows.iter().find(|r| r.meta["main"] == true).unwrap();
        assert_eq!(main.id, g);
        let answer_text = |r: &BenchRecord| {
            let i = (r.answer.as_bytes()[0] - b'A') as usize;
            r.options.as_ref().unwrap()[i].clone()
        };
        for r in &rows {
            let index: u64 = r.id.parse().unwrap();
            assert_eq!(index % 1_000_000, g.parse::<u64>().unwrap());
            assert_eq!(answer_text(r), answer_text(main), "group {g}");
        }
    }
    for task in ["synth_cvbench_2d", "synth_cvbench_3d"] {
        let (_, rs) = benchmark(task);
        let mut per_category: BTreeMap<(String, String), usize> = BTreeMap::new();
        for r in &rs {
            let opts = r.options.as_ref().unwrap();
            let i = (r.answer.as_bytes()[0] - b'A') as usize;
            assert!(i < opts.len(), "{task} {}", r.id);
            *per_category
                .entry((r.category.clone().unwrap(), r.answer.clone()))
                .or_default() += 1;
        }
        // Within a category every offered letter is right about equally often.
        let mut counts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for ((cat, _), n) in per_category {
            counts.entry(cat).or_default().push(n);
        }
        for (cat, ns) in counts {
            assert!(ns.len() >= 2, "{task}/{cat}: {ns:?}");
            let (lo, hi) = (ns.iter().min().unwrap(), ns.iter().max().unwrap());
            assert!(hi - lo <= 1, "{task}/{cat}: {ns:?}");
        }
    }
}

#[test]
fn no_image_is_shared_between_splits_or_benchmarks() {
    let root = world();
    let summary = WorldSummary::load(root).unwrap();
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut dirs: Vec<(String, std::path::PathBuf)> = vec![
        ("pretrain".into(), root.join(&summary.pretrain.images)),
        ("finetune".into(), root.join(&summary.finetune.images)),
    ];
    for b in &summary.benchmarks {
        dirs.push((b.task.clone(), root.join(&b.dir).join("images")));
    }
    for (split, dir) in dirs {
        for entry in std::fs::read_dir(dir).unwrap() {
            let hash = sha256_hex(&std::fs::read(entry.unwrap().path()).unwrap());
            if let Some(prev) = owner.insert(hash.clone(), split.clone()) {
                assert_eq!(prev, split, "image {hash} in both {prev} and {split}");
            }
        }
    }
}

#[test]
fn answers_agree_with_the_pixels() {
    let palette: HashMap<&str, [u8; 3]> = mlvf::synth::world::Color::ALL
        .iter()
        .map(|c| (c.name(), c.rgb()))
        .collect();
    let root = world();
    // POPE "yes": the object's exact palette colour is drawn somewhere in the image.
    for r in benchmark("synth_pope")
        .1
        .iter()
        .filter(|r| r.answer == "yes")
    {
        let object = r.meta["object"].as_str().unwrap();
        let color = palette[object.split(' ').next().unwrap()];
        let img = image::open(root.join("benchmarks/synth_pope").join(&r.images[0]))
            .unwrap()
            .to_rgb8();
        assert!(
            img.pixels().any(|p| p.0 == color),
            "{}: no {object} pixels",
            r.id
        );
    }
    // Text questions: the image holds a sign (its colour) with near-black glyphs on it.
    for r in benchmark("synth_textvqa").1 {
        let img = image::open(root.join("benchmarks/synth_textvqa").join(&r.images[0]))
            .unwrap()
            .to_rgb8();
        let ink = img.pixels().filter(|p| p.0 == [15, 15, 15]).count();
        assert!(
            ink >= 8 * r.answer.len(),
            "{}: only {ink} glyph pixels",
            r.id
        );
    }
}
