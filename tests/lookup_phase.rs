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
//! shape 99 % at 600, and yes/no existence 88 % at 900.
//!
//! The world's own text scenes on the same trainer (word-level, no chat template) tell which
//! of their differences from T⁺ keep the lookup away: the cell-bound block tokens and the full
//! question mix do; one token per object (T⁺'s form, or nine content tokens in raster order)
//! with one-lookup questions does not (experiments/README.md has the table). Slow, so ignored
//! by default: `cargo test --release --test lookup_phase -- --ignored --nocapture`.

use mlvf::model::llm::Llama;
use mlvf::synth::foundation::text_qa::{self, QaSample};
use mlvf::synth::foundation::{lm, train_loop, TrainHooks};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use support::scene_questions::{
    init_at_scale, position, question, r4a_optim, Object, Words, COLS, ROWS, SHAPES,
};

mod support;

const COLORS: [&str; 8] = [
    "red", "green", "blue", "yellow", "purple", "orange", "pink", "brown",
];
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

fn block(objects: &[Object]) -> String {
    let words: Vec<String> = objects
        .iter()
        .map(|o| format!("{}_{} {} .", COLORS[o.0], SHAPES[o.1], position(o.2)))
        .collect();
    words.join(" ")
}

/// This harness's words: the palette and count wording its phase change was measured with.
const WORDS: Words = Words {
    colors: COLORS,
    counts: &COUNTS,
    first_count: 1,
    count_question: "how many objects are there ?",
};

/// `ids` (`<s>`, context, answer) with `</s>` appended, the answer and `</s>` supervised.
fn answer_supervised(mut ids: Vec<u32>, context: usize) -> QaSample {
    ids.push(EOS);
    let labels = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| if i >= context { id as i64 } else { -100 })
        .collect();
    QaSample { ids, labels }
}

/// The score group of a question: its family, and for a yes/no answer `family/answer`.
fn score_group(family: &str, answer: &str) -> String {
    match answer {
        "yes" | "no" => format!("{family}/{answer}"),
        _ => family.to_string(),
    }
}

/// `<s> block question answer </s>`, the answer and `</s>` supervised.
fn sample(v: &Vocab, rng: &mut impl Rng) -> (QaSample, String) {
    loop {
        let objects = scene(rng);
        let Some((q, a, group)) = question(&objects, &WORDS, rng) else {
            continue;
        };
        let mut ids = vec![BOS];
        ids.extend(v.ids(&block(&objects)));
        ids.extend(v.ids(&q));
        let context = ids.len();
        ids.extend(v.ids(&a));
        return (answer_supervised(ids, context), score_group(group, &a));
    }
}

/// Trains a 2-layer LM of `vocab` tokens `steps` steps on `next_batch` (64 samples a step)
/// with its linear layers drawn at `linear_std`; returns held-out exact match per family,
/// printed every 100 steps under `label`.
fn train(
    label: &str,
    vocab: usize,
    linear_std: f32,
    steps: u64,
    held: &[(QaSample, String)],
    mut next_batch: impl FnMut(&mut ChaCha8Rng) -> Vec<QaSample>,
) -> BTreeMap<String, f64> {
    let p = lm::LmParams::default();
    let cfg = lm::lm_config(2, &p, vocab);
    let mut map = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(
        &map,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    );
    let model = Llama::new(&cfg, vb).unwrap();
    init_at_scale(&map, linear_std);
    let opt = r4a_optim(steps);
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
            let s = text_qa::score(&model, held, PAD, 100)?;
            eprintln!(
                "{label} step {step} ({:.0} s): {:.1} {:?}",
                t0.elapsed().as_secs_f64(),
                s.overall,
                s.by_family
            );
        }
        let batch = next_batch(&mut rng);
        let refs: Vec<&QaSample> = batch.iter().collect();
        text_qa::answer_loss(&model, &refs, PAD)
    })
    .unwrap();
    let s = text_qa::score(&model, held, PAD, 100).unwrap();
    eprintln!("{label} final: {:.1} {:?}", s.overall, s.by_family);
    s.by_family
}

/// The T⁺ task at `linear_std`: fresh samples every step.
fn tplus(linear_std: f32, steps: u64) -> BTreeMap<String, f64> {
    let v = Vocab::new();
    let mut held_rng = ChaCha8Rng::seed_from_u64(99);
    let held: Vec<(QaSample, String)> = (0..1000).map(|_| sample(&v, &mut held_rng)).collect();
    let label = format!("T+ std {linear_std}");
    train(&label, v.0.len(), linear_std, steps, &held, |rng| {
        (0..64).map(|_| sample(&v, rng).0).collect()
    })
}

#[test]
#[ignore = "minutes: trains a 2-layer LM 700 steps, twice"]
fn lookup_appears_within_a_few_hundred_steps_at_pytorch_scale_init_not_at_hfs() {
    let pytorch = tplus(0.05, 700);
    assert!(
        pytorch["color"] >= 90.0 && pytorch["shape"] >= 90.0,
        "{pytorch:?}"
    );
    let hf = tplus(0.02, 700);
    assert!(hf["color"] + 20.0 <= pytorch["color"], "{hf:?}");
}

// The world's own text scenes, on the same model and trainer: which part of them keeps the
// lookup from appearing. Their questions are rewritten word by word (one token per word, cell
// token or punctuation mark; no BPE, no chat template), so only the block's form and the
// question mix differ from T⁺.

/// Words of a text-scene prompt or answer; the block's line break is a word of its own.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push("<nl>".to_string());
        }
        for w in line.split_whitespace() {
            match w.char_indices().last() {
                Some((at, c)) if "?.,".contains(c) && w.len() > 1 => {
                    out.push(w[..at].to_lowercase());
                    out.push(c.to_string());
                }
                _ => out.push(w.to_lowercase()),
            }
        }
    }
    out
}

/// A question with its colours, shapes and positions masked: its template.
fn template(question: &str) -> String {
    let colors = mlvf::synth::world::Color::ALL.map(|c| c.name());
    let shapes = mlvf::synth::world::Shape::ALL.map(|s| s.name());
    let position = ["top", "bottom", "left", "right", "center", "middle"];
    words(question)
        .into_iter()
        .map(|w| {
            let singular = w.strip_suffix("es").filter(|s| shapes.contains(s));
            let singular = singular.or_else(|| w.strip_suffix('s').filter(|s| shapes.contains(s)));
            if colors.contains(&w.as_str()) {
                "C".to_string()
            } else if shapes.contains(&w.as_str()) || singular.is_some() {
                "S".to_string()
            } else if position.contains(&w.as_str()) {
                "P".to_string()
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The world's questions that, like T⁺'s, name their referent by one attribute and ask one
/// lookup: colour of the unique shape, shape of the unique colour, a colour–shape pair's
/// existence, the number of objects, where the unique shape is.
const ONE_LOOKUP: [&str; 11] = [
    "what color is the S ?",
    "what is the color of the S ?",
    "what shape is the C object ?",
    "which shape is the C object ?",
    "is there a C S in the image ?",
    "is there an C S in the image ?",
    "how many shapes are there in the image ?",
    "how many objects are there in the image ?",
    "how many objects are there ?",
    "where is the S in the image ?",
    "in which part of the image is the S ?",
];

/// How the scene's block is written.
#[derive(Clone, Copy, Debug)]
enum Block {
    /// The world's nine cell tokens, `top_left/red_star top/empty …`.
    Cells,
    /// T⁺'s: `red_star top left .` per object, empty cells left out.
    Objects,
    /// Nine content tokens in raster order, `red_star empty …`: what a cell holds, shared by
    /// every cell; where it is only by its place in the block (as a visual token's position).
    Contents,
}

/// The world's block `top_left/red_star top/empty …` written as `form`.
fn rewrite(block: &str, form: Block) -> String {
    let cells = block.split(' ').filter_map(|t| t.split_once('/'));
    let empty = mlvf::synth::scene_text::EMPTY_CELL;
    let out: Vec<String> = match form {
        Block::Cells => return block.to_string(),
        Block::Objects => cells
            .filter(|(_, content)| *content != empty)
            .map(|(cell, object)| format!("{object} {} .", cell.replace('_', " ")))
            .collect(),
        Block::Contents => cells
            .map(|(_, content)| match content {
                c if c == empty => "empty_cell".to_string(),
                object => object.to_string(),
            })
            .collect(),
    };
    out.join(" ")
}

/// Trains on the world's text scenes (64 000, one question each; 1200 held out), with the
/// block written as `form`, on every question or only [`ONE_LOOKUP`]'s.
fn world(form: Block, one_lookup: bool, steps: u64) -> BTreeMap<String, f64> {
    let dir = tempfile::tempdir().unwrap();
    let cfg: mlvf::synth::SynthConfig = serde_json::from_value(serde_json::json!({
        "n_pretrain": 200, "n_finetune": 200, "n_per_benchmark": 24,
        "n_text": 64000, "text_turns": 1, "n_text_heldout": 1200
    }))
    .unwrap();
    mlvf::synth::generate(&cfg, &dir.path().join("w")).unwrap();
    let text = |f: &str| std::fs::read_to_string(dir.path().join("w/text").join(f)).unwrap();
    let mut vocab: HashMap<String, u32> = ["<pad>", "<s>", "</s>"]
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    // (sample, question template) of one prompt and answer.
    let mut encode = |prompt: &str, answer: &str| -> (QaSample, String) {
        let (block, question) = prompt.split_once('\n').unwrap();
        let block = rewrite(block, form);
        let mut ids = vec![BOS];
        let mut push = |w: String, ids: &mut Vec<u32>| {
            let next = vocab.len() as u32;
            ids.push(*vocab.entry(w).or_insert(next));
        };
        for w in words(&format!("{block}\n{question}")) {
            push(w, &mut ids);
        }
        let context = ids.len();
        for w in words(answer) {
            push(w, &mut ids);
        }
        (answer_supervised(ids, context), template(question))
    };
    let keep = |t: &str| !one_lookup || ONE_LOOKUP.contains(&t);
    let records: serde_json::Value = serde_json::from_str(&text("train.json")).unwrap();
    let mut pool = Vec::new();
    for r in records.as_array().unwrap() {
        let turns = r["conversations"].as_array().unwrap();
        let (s, t) = encode(
            turns[0]["value"].as_str().unwrap(),
            turns[1]["value"].as_str().unwrap(),
        );
        if keep(&t) {
            pool.push(s);
        }
    }
    let mut held = Vec::new();
    for line in text("heldout.jsonl").lines() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        let (prompt, answer) = (q["prompt"].as_str().unwrap(), q["answer"].as_str().unwrap());
        let (s, t) = encode(prompt, answer);
        if keep(&t) {
            held.push((s, score_group(q["family"].as_str().unwrap(), answer)));
        }
    }
    let label = format!(
        "world {form:?}, {} questions",
        if one_lookup { "one-lookup" } else { "all" }
    );
    eprintln!("{label}: {} training, {} held out", pool.len(), held.len());
    train(&label, vocab.len(), 0.05, steps, &held, |rng| {
        (0..64)
            .map(|_| pool[rng.random_range(0..pool.len())].clone())
            .collect()
    })
}

#[test]
#[ignore = "minutes: generates a world and trains a 2-layer LM 1000 steps, three times"]
fn the_worlds_questions_teach_the_lookup_as_objects_asked_one_lookup_at_a_time() {
    let objects = world(Block::Objects, true, 1000);
    assert!(
        objects["color"] >= 90.0 && objects["shape"] >= 90.0 && objects["existence"] >= 80.0,
        "{objects:?}"
    );
    // The same questions with the block as cell tokens, and the objects with every question
    // the world asks (counts by attribute, referents by position or by two attributes): the
    // phase change does not come in the same steps.
    let cells = world(Block::Cells, true, 1000);
    let all = world(Block::Objects, false, 1000);
    for other in [&cells, &all] {
        assert!(other["color"] + 10.0 <= objects["color"], "{other:?}");
    }
}

/// What a 3×3-patch image gives the LM is nine tokens in raster order, each what its cell
/// holds: the block as content tokens, on the one-lookup questions.
#[test]
#[ignore = "minutes: generates a world and trains a 2-layer LM 2000 steps"]
fn nine_content_tokens_on_one_lookup_questions() {
    let contents = world(Block::Contents, true, 2000);
    eprintln!("{contents:?}");
}
