//! Batched answering changes no answer: for every paradigm, on a tiny model whose fusion weights
//! are perturbed away from their (often zero) initialisation so every hook acts, a left-padded
//! batch of prompts of different lengths, with and without images, decodes to exactly the token
//! ids of one prompt at a time, and its first-step logits match the unpadded forward pass. The
//! eval runner's predictions do not depend on its batch size.

#[path = "mllm_support.rs"]
mod support;

use candle_core::{DType, IndexOp, Tensor};
use candle_nn::VarMap;
use mlvf::eval::{run_benchmark, Benchmark, RunOptions};
use mlvf::layers::Fusion;
use mlvf::model::fusion::init::sample_init;
use mlvf::model::llm::{CrossAttnConfig, XAttnPlacement, XAttnVisibility};
use mlvf::model::mllm::{Mllm, MllmBatch, MllmSpec, ModelPointer, PromptIds};
use rand::SeedableRng;
use support::*;

/// Gates and layer scales (zero at initialisation: the hook would do nothing) get 0.5; every
/// other fusion weight gets a little noise, so offsets and zeroed projectors act too.
fn perturb(map: &VarMap, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = map.data().lock().unwrap();
    // Sorted names: the noise each weight gets does not depend on the map's hash order.
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let t = var.as_tensor();
        let new = if name.contains("gate") || name.contains("gamma") {
            (t.ones_like().unwrap() * 0.5).unwrap()
        } else {
            let init = candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.05,
            };
            let noise = sample_init(init, t.shape(), &mut rng);
            let noise = Tensor::from_vec(noise, t.shape(), t.device()).unwrap();
            (t + noise.to_dtype(t.dtype()).unwrap()).unwrap()
        };
        var.set(&new).unwrap();
    }
}

fn model(spec: &MllmSpec) -> Mllm {
    let (m, map) = Mllm::pretrain(spec, 3, &cpu()).unwrap();
    perturb(&map, 11);
    m
}

/// Every paradigm, plus I_M with the other placement and the causal visibility mask (which
/// reads each row's positions).
fn specs() -> Vec<(String, MllmSpec)> {
    let mut out: Vec<(String, MllmSpec)> = paradigms()
        .into_iter()
        .map(|(f, set)| (f.to_string(), spec(f, set)))
        .collect();
    let mut causal = spec(Fusion::InternalModular, "idx:1-2-3");
    causal.xattn = CrossAttnConfig {
        placement: XAttnPlacement::Post,
        visibility: XAttnVisibility::Causal,
        ..Default::default()
    };
    out.push(("I_M post causal".into(), causal));
    out
}

/// Prompts of different lengths; the image anywhere in the text or absent.
const PROMPTS: [(Option<&str>, &str); 5] = [
    (Some("000000001.png"), "<image>\nWhat is in the picture?"),
    (
        None,
        "Tell me a long story about a cat and a dog who share one small house by the sea.",
    ),
    (None, "Hi"),
    (
        Some("000000002.png"),
        "Look closely at this one, please: <image>\nWhich color?",
    ),
    (Some("000000003.png"), "<image>"),
];

struct Inputs {
    ids: Vec<Vec<i64>>,
    pixels: Vec<Option<Tensor>>,
}

impl Inputs {
    fn new(m: &Mllm) -> Self {
        let ids = PROMPTS
            .iter()
            .map(|(_, p)| m.tokenizer().encode_prompt(p).unwrap())
            .collect();
        let pixels = PROMPTS
            .iter()
            .map(|(img, _)| img.map(|i| m.pixels(&image(i)).unwrap()))
            .collect();
        Inputs { ids, pixels }
    }

    fn prompts(&self, rows: &[usize]) -> Vec<PromptIds<'_>> {
        rows.iter()
            .map(|&r| PromptIds {
                pixels: self.pixels[r].as_ref(),
                ids: &self.ids[r],
            })
            .collect()
    }
}

/// The last position's logits of the (unpadded, single-row) training forward pass.
fn forward_last_logits(m: &Mllm, inputs: &Inputs, r: usize) -> Tensor {
    // One extra supervised token after the prompt so the loss is defined even when the prompt
    // ends with its image; causal attention keeps it from changing the prompt's logits.
    let mut ids = inputs.ids[r].clone();
    let mut labels = vec![-100; ids.len()];
    ids.push(5);
    labels.push(5);
    let features = match &inputs.pixels[r] {
        Some(p) => m.image_features(p).unwrap(),
        None => m.zero_features(1).unwrap(),
    };
    let batch = MllmBatch {
        ids: vec![ids],
        labels: vec![labels],
        features,
        has_image: vec![inputs.pixels[r].is_some()],
    };
    let logits = m.forward(&batch).unwrap().logits;
    let t = logits.dim(1).unwrap();
    logits.i((0, t - 2)).unwrap().to_dtype(DType::F32).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn batched_greedy_decoding_equals_one_prompt_at_a_time_for_every_paradigm() {
    const NEW: usize = 8;
    for (name, spec) in specs() {
        let m = model(&spec);
        let inputs = Inputs::new(&m);
        let alone: Vec<Vec<u32>> = (0..PROMPTS.len())
            .map(|r| {
                m.generate_ids(inputs.pixels[r].as_ref(), &inputs.ids[r], NEW)
                    .unwrap()
            })
            .collect();
        // Mixed, images only (one tower call for all rows), text only, and a single row.
        for rows in [vec![0, 1, 2, 3, 4], vec![4, 0, 3], vec![1, 2], vec![3]] {
            let got = m.generate_ids_batch(&inputs.prompts(&rows), NEW).unwrap();
            let want: Vec<Vec<u32>> = rows.iter().map(|&r| alone[r].clone()).collect();
            assert_eq!(got, want, "{name}: rows {rows:?}");
        }
        let all: Vec<usize> = (0..PROMPTS.len()).collect();
        let first = m.first_logits_batch(&inputs.prompts(&all)).unwrap();
        for r in all {
            let d = max_diff(&first.get(r).unwrap(), &forward_last_logits(&m, &inputs, r));
            assert!(
                d <= 1e-4,
                "{name}: row {r}'s first-step logits differ by {d}"
            );
            // The first token is the argmax of these logits (or the row stopped at once).
            let arg: u32 = first
                .get(r)
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            match alone[r].first() {
                Some(&tok) => assert_eq!(tok, arg, "{name}: row {r}"),
                None => assert!(m.llm().config().eos_token_ids.contains(&arg)),
            }
        }
    }
}

#[test]
fn a_batch_names_the_row_whose_image_is_missing() {
    let m = model(&spec(Fusion::Baseline, ""));
    let inputs = Inputs::new(&m);
    let mut prompts = inputs.prompts(&[1, 0]);
    prompts[1].pixels = None;
    let err = format!("{:#}", m.generate_ids_batch(&prompts, 4).unwrap_err());
    assert!(err.contains("prompt 1 of the batch"), "{err}");
    assert!(m.generate_ids_batch(&[], 4).unwrap().is_empty());
}

#[test]
fn batched_text_generation_equals_one_at_a_time() {
    let m = model(&spec(Fusion::InternalDirect, "idx:1-2-3"));
    let images: Vec<Option<image::RgbImage>> = PROMPTS.iter().map(|(i, _)| i.map(image)).collect();
    let items: Vec<(Option<&image::RgbImage>, &str)> = images
        .iter()
        .zip(PROMPTS)
        .map(|(i, (_, p))| (i.as_ref(), p))
        .collect();
    let got = m.generate_batch(&items, 6).unwrap();
    for ((img, p), g) in items.iter().zip(&got) {
        assert_eq!(g, &m.generate(*img, p, 6).unwrap());
    }
}

/// Copies a benchmark fixture directory into a scratch directory.
fn scratch_bench(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let target = dst.join(entry.path().strip_prefix(&src).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    (tmp, dst)
}

#[test]
fn the_runners_predictions_do_not_depend_on_the_batch_size() {
    let (_t, dir) = scratch_bench("gqa_mini");
    let bench = Benchmark::load(&dir).unwrap();
    let mut m = model(&spec(Fusion::InternalModular, "idx:1-2-3"));
    let lines = |batch: usize, m: &mut Mllm| {
        let path = dir.join(format!("preds_{batch}.jsonl"));
        let opts = RunOptions {
            batch,
            max_new_tokens: Some(6),
            ..Default::default()
        };
        let s = run_benchmark(m, &bench, &path, &opts).unwrap();
        assert_eq!((s.generated, s.cached), (bench.samples.len(), 0));
        std::fs::read_to_string(path).unwrap()
    };
    let one = lines(1, &mut m);
    assert_eq!(
        one.lines().count(),
        bench.samples.len() + 1,
        "header + answers"
    );
    for batch in [3, 16] {
        assert_eq!(lines(batch, &mut m), one, "batch {batch}");
    }
}

/// The speed-up, measured (not asserted): N quickstart-like samples (one 64-px image, a
/// vicuna_v1 prompt, 16 new tokens) answered one at a time vs in batches, on random models of
/// the quickstart's shapes (12-layer width-64 CLIP tower with 8-px patches; 4-layer LLaMA,
/// hidden 128, GQA 4/2, MLP 352, vocab 1024), every paradigm with layer set 3-18-23. Random
/// weights rarely emit EOS, so every answer runs its 16 tokens (trained models stop earlier,
/// and batched decoding drops finished rows). Figures in BENCHMARKS.md. Run:
///   cargo test --test mllm_batch -- --ignored --nocapture batched_eval_speedup
#[test]
#[ignore]
fn batched_eval_speedup() {
    use mlvf::eval::{prompt::build_prompt, TemplateKind};
    use mlvf::layers::{resolve, EncoderDepth, LayerSet};
    use mlvf::model::llm::Llama;
    use mlvf::model::vision::VisionTower;
    use mlvf::synth::foundation::{lm, vision};
    use std::time::Instant;
    const N: usize = 32;
    const NEW: usize = 16;
    let tmp = tempfile::tempdir().unwrap();
    let (vdir, ldir) = (tmp.path().join("vision"), tmp.path().join("llm"));
    let vcfg = vision::tower_config(
        mlvf::model::vision::VisionArch::Clip,
        12,
        &vision::VisionParams::default(),
        64,
    );
    VisionTower::new_trainable(&vcfg, &VarMap::new(), DType::F32, &cpu())
        .unwrap()
        .save(&vdir)
        .unwrap();
    let lcfg = lm::lm_config(4, &lm::LmParams::default(), 1024);
    let map = VarMap::new();
    Llama::new(
        &lcfg,
        candle_nn::VarBuilder::from_varmap(&map, DType::F32, &cpu()),
    )
    .unwrap()
    .save(&ldir, Some(&llm_dir().join("tokenizer.json")))
    .unwrap();
    let depth = EncoderDepth {
        layers: 12,
        drop_last: false,
    };
    let questions = [
        "What color is the square?",
        "Is there a circle in the image?",
        "How many shapes are there?",
        "Which shape is left of the red triangle? Answer with one word.",
    ];
    println!("N = {N} samples, {NEW} new tokens, nproc = {}", num_cpus());
    for (fusion, set) in [
        (Fusion::Baseline, None),
        (Fusion::ExternalDirect, Some("3-18-23")),
        (Fusion::ExternalModular, Some("3-18-23")),
        (Fusion::InternalDirect, Some("3-18-23")),
        (Fusion::InternalModular, Some("3-18-23")),
    ] {
        let set = set.map(|s| LayerSet::parse(s).unwrap());
        let mut spec = spec(Fusion::Baseline, "");
        spec.fusion = fusion;
        spec.layers = resolve(fusion, set.as_ref(), depth, 4).unwrap();
        spec.vision = ModelPointer {
            source: vdir.display().to_string(),
            dir: vdir.clone(),
        };
        spec.llm = ModelPointer {
            source: ldir.display().to_string(),
            dir: ldir.clone(),
        };
        (spec.vision_depth, spec.llm_layers) = (Some(12), Some(4));
        spec.mmfuser = Default::default();
        let m = model(&spec);
        let ids: Vec<Vec<i64>> = (0..N)
            .map(|i| {
                let p = build_prompt(TemplateKind::VicunaV1, questions[i % 4], 1);
                m.tokenizer().encode_prompt(&p).unwrap()
            })
            .collect();
        let pixels: Vec<Tensor> = (0..N as u32)
            .map(|i| {
                let img = image::RgbImage::from_fn(64, 64, |x, y| {
                    image::Rgb([(x * 4 + i) as u8, (y * 4) as u8, (i * 7) as u8])
                });
                m.pixels(&img).unwrap()
            })
            .collect();
        let prompts: Vec<PromptIds> = ids
            .iter()
            .zip(&pixels)
            .map(|(ids, px)| PromptIds {
                pixels: Some(px),
                ids,
            })
            .collect();
        // Best of two alternating runs: the machine is shared, so single timings are noisy.
        let time = |batch: usize, new: usize| {
            let t = Instant::now();
            let mut out = Vec::new();
            for chunk in prompts.chunks(batch) {
                out.extend(m.generate_ids_batch(chunk, new).unwrap());
            }
            (t.elapsed().as_secs_f64(), out)
        };
        let (mut best, mut first) = ([f64::MAX; 2], [f64::MAX; 2]);
        let mut answers: Vec<Vec<Vec<u32>>> = Vec::new();
        for _ in 0..2 {
            for (j, batch) in [1, 16].into_iter().enumerate() {
                let (t, out) = time(batch, NEW);
                best[j] = best[j].min(t);
                answers.push(out);
                first[j] = first[j].min(time(batch, 1).0);
            }
        }
        assert!(
            answers.iter().all(|a| a == &answers[0]),
            "batching changed an answer"
        );
        let tokens: usize = answers[0].iter().map(Vec::len).sum();
        println!(
            "{fusion:>8}: batch 1 {:.2} s, batch 16 {:.2} s: {:.2}x (first token only: {:.2} s vs \
             {:.2} s); {tokens} tokens, prompt {} ids + image",
            best[0],
            best[1],
            best[0] / best[1],
            first[0],
            first[1],
            ids[0].len()
        );
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
