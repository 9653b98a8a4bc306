//! Does mlvf's LLaMA learn in-context lookup, and what decides when? The text task of research
//! feasibility.md's T⁺ run, rebuilt here on the engine's own model, loss and trainer: a scene
//! written as one token per object followed by its position in words (`red_star top left .`),
//! then one question — the colour of the unique star, the shape of the unique red object, "is
//! there a red star?" (negatives share a colour or a shape with a present object), how many
//! objects, where the star is. Fresh samples every step, batch 64, AdamW lr 1e-3, 2 layers,
//! hidden 128: the recipe under which the research model (PyTorch, default init) jumped from
//! the bag-of-attributes plateau to ~100 % colour and shape within a few hundred steps.
//!
//! On this engine the jump depends on the linear layers' initial scale (2026-12-04, 1 thread,
//! `RAYON_NUM_THREADS=1 cargo test --release --test lookup_phase -- --ignored --nocapture`):
//! at HF's `initializer_range` 0.02 colour was 53 % at step 900 (61 % at 1000); at 0.05 (about
//! PyTorch's default for a 128-wide layer, 1/√(3·128)) it was 88 % at step 500 and 100 % at 600,
//! shape 99 % at 600, and yes/no existence 88 % at 900. Slow, so ignored by default.

use mlvf::model::llm::Llama;
use mlvf::synth::foundation::text_qa::{self, QaSample};
use mlvf::synth::foundation::{lm, seeded_init, train_loop, Optim, TrainHooks};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};

const COLORS: [&str; 8] = [
    "red", "green", "blue", "yellow", "purple", "orange", "pink", "brown",
];
const SHAPES: [&str; 6] = ["circle", "square", "triangle", "star", "cross", "diamond"];
const ROWS: [&str; 3] = ["top", "middle", "bottom"];
const COLS: [&str; 3] = ["left", "center", "right"];
const COUNTS: [&str; 6] = ["one", "two", "three", "four", "five", "six"];
const PAD: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;

/// A word-level vocabulary: every word the task writes is one token.
struct Vocab(HashMap<String, u32>);

impl Vocab {
    fn new() -> Vocab {
        let fixed = "<pad> <s> </s> . ? what color is the shape object there a in image how many objects are where yes no";
        let mut words: Vec<String> = fixed.split(' ').map(String::from).collect();
        for list in [&COLORS[..], &SHAPES, &ROWS, &COLS, &COUNTS] {
            words.extend(list.iter().map(|w| w.to_string()));
        }
        for c in COLORS {
            words.extend(SHAPES.iter().map(|s| format!("{c}_{s}")));
        }
        Vocab(
            words
                .into_iter()
                .enumerate()
                .map(|(i, w)| (w, i as u32))
                .collect(),
        )
    }

    fn ids(&self, text: &str) -> Vec<u32> {
        text.split_whitespace().map(|w| self.0[w]).collect()
    }
}

/// An object: colour, shape and cell (0–8, raster order).
type Object = (usize, usize, usize);

fn scene(rng: &mut impl Rng) -> Vec<Object> {
    let n = rng.random_range(1..=6);
    let mut cells: Vec<usize> = (0..9).collect();
    cells.shuffle(rng);
    let mut objects: Vec<Object> = cells[..n]
        .iter()
        .map(|&c| (rng.random_range(0..8), rng.random_range(0..6), c))
        .collect();
    objects.sort_by_key(|o| o.2);
    objects
}

fn position(cell: usize) -> String {
    format!("{} {}", ROWS[cell / 3], COLS[cell % 3])
}

fn block(objects: &[Object]) -> String {
    let words: Vec<String> = objects
        .iter()
        .map(|o| format!("{}_{} {} .", COLORS[o.0], SHAPES[o.1], position(o.2)))
        .collect();
    words.join(" ")
}

/// One question about the scene: (question, answer, score group), or None when the scene
/// cannot carry the family drawn (no unique shape, say).
fn question(objects: &[Object], rng: &mut impl Rng) -> Option<(String, String, &'static str)> {
    let unique = |key: fn(&Object) -> usize| -> Vec<Object> {
        let objects = objects.to_vec();
        objects
            .iter()
            .filter(|o| objects.iter().filter(|p| key(p) == key(o)).count() == 1)
            .copied()
            .collect()
    };
    match rng.random_range(0..5) {
        0 => unique(|o| o.1).choose(rng).map(|o| {
            let q = format!("what color is the {} ?", SHAPES[o.1]);
            (q, COLORS[o.0].to_string(), "color")
        }),
        1 => unique(|o| o.0).choose(rng).map(|o| {
            let q = format!("what shape is the {} object ?", COLORS[o.0]);
            (q, SHAPES[o.1].to_string(), "shape")
        }),
        2 => {
            let o = *objects.choose(rng)?;
            let (c, s, answer) = if rng.random_bool(0.5) {
                (o.0, o.1, "yes")
            } else {
                // A near miss: the colour or the shape of a present object, never both.
                let (c, s) = if rng.random_bool(0.5) {
                    (o.0, rng.random_range(0..6))
                } else {
                    (rng.random_range(0..8), o.1)
                };
                if objects.iter().any(|p| p.0 == c && p.1 == s) {
                    return None;
                }
                (c, s, "no")
            };
            let q = format!("is there a {} {} in the image ?", COLORS[c], SHAPES[s]);
            Some((q, answer.to_string(), "existence"))
        }
        3 => Some((
            "how many objects are there ?".into(),
            COUNTS[objects.len() - 1].into(),
            "count",
        )),
        _ => unique(|o| o.1).choose(rng).map(|o| {
            let q = format!("where is the {} ?", SHAPES[o.1]);
            (q, position(o.2), "position")
        }),
    }
}

/// `<s> block question answer </s>`, the answer and `</s>` supervised.
fn sample(v: &Vocab, rng: &mut impl Rng) -> (QaSample, String) {
    loop {
        let objects = scene(rng);
        let Some((q, a, group)) = question(&objects, rng) else {
            continue;
        };
        let mut ids = vec![BOS];
        ids.extend(v.ids(&block(&objects)));
        ids.extend(v.ids(&q));
        let context = ids.len();
        ids.extend(v.ids(&a));
        ids.push(EOS);
        let labels = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| if i >= context { id as i64 } else { -100 })
            .collect();
        let group = match a.as_str() {
            "yes" | "no" => format!("{group}/{a}"),
            _ => group.to_string(),
        };
        return (QaSample { ids, labels }, group);
    }
}

/// Held-out exact match per family after `steps` steps with the linear layers drawn at
/// `linear_std`, printed every 100 steps.
fn train(linear_std: f32, steps: u64) -> BTreeMap<String, f64> {
    let v = Vocab::new();
    let p = lm::LmParams::default();
    let cfg = lm::lm_config(2, &p, v.0.len());
    let mut map = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(
        &map,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    );
    let model = Llama::new(&cfg, vb).unwrap();
    seeded_init(&map, 0, linear_std).unwrap();
    // The input embeddings at 0.02 whatever the linear layers' scale (as the world's LM).
    for (name, var) in mlvf::train::optim::named_vars(&map) {
        if name == "model.embed_tokens.weight" {
            let t = (var.as_tensor() * (0.02 / linear_std as f64)).unwrap();
            var.set(&t).unwrap();
        }
    }
    let mut held_rng = ChaCha8Rng::seed_from_u64(99);
    let held: Vec<(QaSample, String)> = (0..1000).map(|_| sample(&v, &mut held_rng)).collect();
    let opt = Optim {
        steps,
        lr: 1e-3,
        weight_decay: 0.01,
        warmup_steps: 100,
        max_grad_norm: 1.0,
        checkpoint_every: steps,
        seed: 0,
        cosine: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut metric = |_: &str, _: Option<u64>, _: f64| Ok(());
    let mut hooks = TrainHooks {
        checkpoint_dir: dir.path(),
        metric: &mut metric,
        stop_after: None,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let t0 = std::time::Instant::now();
    train_loop(&mut map, &opt, &mut hooks, |step, _| {
        if step % 100 == 0 && step > 0 {
            let s = text_qa::score(&model, &held, PAD, 100)?;
            eprintln!(
                "std {linear_std} step {step} ({:.0} s): {:.1} {:?}",
                t0.elapsed().as_secs_f64(),
                s.overall,
                s.by_family
            );
        }
        let batch: Vec<QaSample> = (0..64).map(|_| sample(&v, &mut rng).0).collect();
        let refs: Vec<&QaSample> = batch.iter().collect();
        text_qa::answer_loss(&model, &refs, PAD)
    })
    .unwrap();
    let s = text_qa::score(&model, &held, PAD, 100).unwrap();
    eprintln!("std {linear_std} final: {:.1} {:?}", s.overall, s.by_family);
    s.by_family
}

#[test]
#[ignore = "minutes: trains a 2-layer LM 700 steps, twice"]
fn lookup_appears_within_a_few_hundred_steps_at_pytorch_scale_init_not_at_hfs() {
    let pytorch = train(0.05, 700);
    assert!(
        pytorch["color"] >= 90.0 && pytorch["shape"] >= 90.0,
        "{pytorch:?}"
    );
    let hf = train(0.02, 700);
    assert!(hf["color"] + 20.0 <= pytorch["color"], "{hf:?}");
}
