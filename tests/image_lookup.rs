//! Does a tiny MLLM built from mlvf's parts read the image, under research feasibility.md's R4a
//! (a frozen per-patch-supervised tower; projector + a fresh LM trained together on questions,
//! batch 64, AdamW lr 1e-3 constant after 100 warm-up steps)? And which of the product's
//! differences take it away?
//!
//! Two harnesses share one model (LLaVA's `mlp2x_gelu` projector on the tower's patch tokens
//! at one hidden state, then mlvf's LLaMA, d 128, linear layers at std 0.05) and trainer:
//! * [`a_tiny_mllm_reads_the_image_under_r4a`]: the world's pretraining images with their
//!   per-cell labels (`pretrain/cells.json`), 64 fresh word-level one-lookup questions a step
//!   (`<s> [9 visual tokens] what color is the star ? red </s>`), the last 500 images held out;
//! * [`a_tiny_mllm_on_the_worlds_finetuning_data`]: the world's own finetuning records
//!   (`finetune/instructions.json`, BPE, the chat template), scored on syn-gqa and syn-pope.
//!
//! Both print held-out teacher-forced exact match per family, with the image and with a blank
//! image (the processor's mean colour), every `MLVF_EVAL_EVERY` (100) steps. Measured
//! 2026-12-06 on grounding.toml's world and tower (experiments/README.md has the table): the
//! first reads the image (colour 97, shape 72–89, count 100, position 72–77 at step 1000 in
//! 105 s on one thread; blank at chance), also with a 4-layer LM and with a fixed pool of 6 800
//! questions; the second does not (syn-gqa colour 13–56 at step 1000, whatever the template,
//! the turns per record or a one-lookup filter). The first with the world's phrasing through
//! its BPE tokenizer (`MLVF_TOKENIZER`, `MLVF_TEMPLATE=vicuna_v1_nosys`, `MLVF_SUFFIX=0`) still
//! reads colour at 96; with the world's short-answer suffix (the default) at 82.
//!
//! Needs a generated world and a trained tower (a `synth:world` and a `synth:clip` prepare
//! task's output), so ignored by default:
//! `MLVF_WORLD=<task>/world MLVF_TOWER=<task>/model RAYON_NUM_THREADS=1 \
//!  cargo test --release --test image_lookup -- --ignored --nocapture reads_the_image`;
//! the second also needs `MLVF_TOKENIZER` (a world LM's `tokenizer.json`). Knobs: `MLVF_LAYER`
//! (hidden state, default the penultimate), `MLVF_STEPS`, `MLVF_LM_LAYERS`, `MLVF_STD`,
//! `MLVF_POOL`, `MLVF_TOKENIZER`, `MLVF_SUFFIX` (first harness), `MLVF_TEMPLATE`,
//! `MLVF_TURNS`, `MLVF_ONE_LOOKUP=1` (second).

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Module, VarBuilder, VarMap};
use mlvf::data::json::{load_llava_json, LoadOptions, Role, Turn};
use mlvf::data::template::{Template, TemplateKind};
use mlvf::data::tokenize::{
    tokenize_conversation, TextTokenizer, TokenBudget, Tokenized, IGNORE_INDEX, IMAGE_TOKEN_INDEX,
};
use mlvf::data::ImageAspect;
use mlvf::model::llm::Llama;
use mlvf::model::preprocess::ImageProcessor;
use mlvf::model::vision::{VisionArch, VisionTower};
use mlvf::synth::foundation::{lm, train_loop, DataOrder, TrainHooks};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use support::scene_questions::{
    init_at_scale, question, r4a_optim, Object, COLORS, COLS, COUNTS, ROWS, SHAPES, WORLD,
};

mod support;

const PAD: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;
const HELD_OUT_IMAGES: usize = 500;

/// A word-level vocabulary: every word the questions and answers use is one token.
struct Vocab(HashMap<&'static str, u32>);

impl Vocab {
    fn new() -> Vocab {
        let fixed = "<pad> <s> </s> ? what color is the shape object there a in image how many \
                     shapes are where yes no";
        let mut words: Vec<&'static str> = fixed.split_whitespace().collect();
        for list in [&COLORS[..], &SHAPES, &ROWS, &COLS, &COUNTS] {
            words.extend(list.iter().copied());
        }
        Vocab(words.into_iter().zip(0..).collect())
    }

    fn ids(&self, text: &str) -> Vec<u32> {
        text.split_whitespace().map(|w| self.0[w]).collect()
    }
}

/// The objects of one pretraining image (signs, empty cells left out), or `None` for an
/// occlusion scene (no per-cell labels).
fn objects(cells: &serde_json::Value) -> Option<Vec<Object>> {
    let cells = cells.as_array()?;
    Some(
        cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let (color, shape) = (c["color"].as_u64()? as usize, c["shape"].as_u64()? as usize);
                (color < COLORS.len() && shape < SHAPES.len()).then_some((color, shape, i))
            })
            .collect(),
    )
}

/// One sequence: `before` (BOS, a chat prompt's system and `USER:`), the image's visual
/// tokens, then `after` with its labels (`IGNORE_INDEX` where not trained); `group` names
/// what it is scored under.
#[derive(Clone)]
struct Row {
    image: usize,
    before: Vec<u32>,
    after: Vec<u32>,
    labels: Vec<i64>,
    group: String,
}

/// How a question is written: word by word, or as the product writes it (`MLVF_TOKENIZER`):
/// capitalised, through a chat template and a BPE tokenizer, with the world's short-answer
/// suffix unless `MLVF_SUFFIX=0`.
enum Encoder {
    Words(Vocab),
    Bpe(Box<TextTokenizer>, Template, bool),
}

impl Encoder {
    fn vocab_and_pad(&self) -> (usize, u32) {
        match self {
            Encoder::Words(v) => (v.0.len(), PAD),
            Encoder::Bpe(tok, _, _) => (tok.inner().get_vocab_size(true), tok.pad_id()),
        }
    }
}

/// A one-lookup question on a random scene of `scenes`, e.g.
/// `<s> [image] what color is the star ? red </s>`.
fn word_row(enc: &Encoder, scenes: &[(usize, Vec<Object>)], rng: &mut impl Rng) -> Row {
    loop {
        let (image, objects) = scenes.choose(rng).unwrap();
        let Some((q, a, family)) = question(objects, &WORLD, rng) else {
            continue;
        };
        let group = match a.as_str() {
            "yes" | "no" => format!("{family}/{a}"),
            _ => family.to_string(),
        };
        let v = match enc {
            Encoder::Words(v) => v,
            Encoder::Bpe(tok, template, suffix) => {
                let mut q = q.replace(" ?", "?");
                q[..1].make_ascii_uppercase();
                if *suffix {
                    q.push_str("\nAnswer the question using a single word or phrase.");
                }
                let turns = [
                    Turn::new(Role::Human, format!("<image>\n{q}")),
                    Turn::new(Role::Gpt, a),
                ];
                let budget = TokenBudget {
                    max_len: 384,
                    image_tokens: 9,
                };
                let t = tokenize_conversation(tok, template, &turns, true, &budget).unwrap();
                return split_at_image(&t, *image, group);
            }
        };
        let question = v.ids(&q);
        let mut answer = v.ids(&a);
        answer.push(EOS);
        let labels = std::iter::repeat_n(IGNORE_INDEX, question.len())
            .chain(answer.iter().map(|&a| a as i64))
            .collect();
        return Row {
            image: *image,
            before: vec![BOS],
            after: question.into_iter().chain(answer).collect(),
            labels,
            group,
        };
    }
}

/// A tokenised conversation split at its image sentinel (LLaVA places it first).
fn split_at_image(t: &Tokenized, image: usize, group: String) -> Row {
    let at = t
        .input_ids
        .iter()
        .position(|&id| id == IMAGE_TOKEN_INDEX)
        .expect("an image sentinel");
    let ids = |r: &[i64]| r.iter().map(|&id| id as u32).collect::<Vec<u32>>();
    Row {
        image,
        before: ids(&t.input_ids[..at]),
        after: ids(&t.input_ids[at + 1..]),
        labels: t.labels[at + 1..].to_vec(),
        group,
    }
}

/// The tower's patch tokens at hidden state `layer`.
struct Features {
    tower: VisionTower,
    processor: ImageProcessor,
    has_cls: bool,
    layer: usize,
}

impl Features {
    fn new(tower_dir: &Path, layer: usize) -> Result<Features> {
        let tower = VisionTower::from_dir(tower_dir, &Device::Cpu, DType::F32)?;
        let cfg = tower.config().clone();
        Ok(Features {
            processor: ImageProcessor::for_model_dir(tower_dir, &cfg)?,
            has_cls: cfg.arch == VisionArch::Clip,
            tower,
            layer,
        })
    }

    /// `[n, tokens, dv]` for `images`.
    fn of(&self, images: &[image::RgbImage]) -> Result<Tensor> {
        let pixels = self
            .processor
            .preprocess_batch(images, ImageAspect::Square, &Device::Cpu)?;
        let h = self
            .tower
            .forward_selected(&pixels, &[self.layer])?
            .remove(0);
        let n = h.dim(1)?;
        Ok(if self.has_cls {
            h.narrow(1, 1, n - 1)?
        } else {
            h
        })
    }

    /// `[n, tokens, dv]` for the image files, read 250 at a time.
    fn of_files(&self, paths: &[PathBuf]) -> Result<Tensor> {
        let mut out = Vec::new();
        for chunk in paths.chunks(250) {
            let images: Vec<image::RgbImage> = chunk
                .iter()
                .map(|p| {
                    Ok(image::open(p)
                        .with_context(|| p.display().to_string())?
                        .to_rgb8())
                })
                .collect::<Result<_>>()?;
            out.push(self.of(&images)?);
        }
        Ok(Tensor::cat(&out, 0)?.contiguous()?)
    }

    /// `[1, tokens, dv]` for a uniform image in the processor's mean colour.
    fn blank(&self) -> Result<Tensor> {
        let size = self.tower.config().image_size as u32;
        let rgb = image::Rgb(self.processor.pad_background());
        self.of(&[image::RgbImage::from_pixel(size, size, rgb)])
    }
}

/// The projector (dv → d → d, GELU, as LLaVA's `mlp2x_gelu`) and the LM.
struct Model {
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
    llm: Llama,
    pad: u32,
}

impl Model {
    /// Logits at the supervised positions and their targets; row r's visual tokens are
    /// `feats[rows[r].image]`, or `blank` for every row.
    fn answer_logits(
        &self,
        rows: &[&Row],
        feats: &Tensor,
        blank: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let dev = feats.device();
        let b = rows.len();
        let vis = match blank {
            Some(bl) => bl.repeat((b, 1, 1))?,
            None => {
                let idx: Vec<u32> = rows.iter().map(|s| s.image as u32).collect();
                feats.index_select(&Tensor::from_vec(idx, b, dev)?, 0)?
            }
        };
        let vis = self.fc2.forward(&self.fc1.forward(&vis)?.gelu_erf()?)?;
        let n_vis = vis.dim(1)?;
        let lens: Vec<usize> = rows
            .iter()
            .map(|r| r.before.len() + r.after.len())
            .collect();
        let t = n_vis + lens.iter().max().unwrap();
        let (mut at, mut target) = (Vec::new(), Vec::new());
        let mut embeds = Vec::with_capacity(b);
        for (r, row) in rows.iter().enumerate() {
            let mut ids = row.before.clone();
            ids.extend(&row.after);
            ids.extend(std::iter::repeat_n(self.pad, t - n_vis - ids.len()));
            let text = self
                .llm
                .embed(&Tensor::from_vec(ids, (1, t - n_vis), dev)?)?;
            let k = row.before.len();
            embeds.push(Tensor::cat(
                &[
                    text.narrow(1, 0, k)?,
                    vis.narrow(0, r, 1)?,
                    text.narrow(1, k, t - n_vis - k)?,
                ],
                1,
            )?);
            // after[j] sits at sequence position k + n_vis + j, predicted from the one before.
            for (j, &l) in row.labels.iter().enumerate() {
                if l != IGNORE_INDEX {
                    at.push((r * t + k + n_vis + j - 1) as u32);
                    target.push(l as u32);
                }
            }
        }
        let embeds = Tensor::cat(&embeds, 0)?;
        let hidden = self
            .llm
            .forward_hidden(&embeds, &Default::default(), None)?;
        let h = hidden.reshape((b * t, hidden.dim(D::Minus1)?))?;
        let n = at.len();
        let picked = h.index_select(&Tensor::from_vec(at, n, dev)?, 0)?;
        Ok((
            self.llm.lm_logits(&picked)?,
            Tensor::from_vec(target, n, dev)?,
        ))
    }

    /// Teacher-forced exact match per group (and per family before a `/`), on 0–100: every
    /// answer token, `</s>` included, is the argmax — what greedy decoding would produce.
    fn score(
        &self,
        held: &[Row],
        feats: &Tensor,
        blank: Option<&Tensor>,
    ) -> Result<BTreeMap<String, f64>> {
        let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for chunk in held.chunks(100) {
            let refs: Vec<&Row> = chunk.iter().collect();
            let (logits, target) = self.answer_logits(&refs, feats, blank)?;
            let hit: Vec<u8> = logits
                .argmax(D::Minus1)?
                .eq(&target)?
                .to_dtype(DType::U8)?
                .to_vec1()?;
            let mut k = 0;
            for s in chunk {
                let n = s.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
                let all = hit[k..k + n].iter().all(|&h| h == 1);
                k += n;
                let mut count = |g: &str| {
                    let e = per.entry(g.to_string()).or_default();
                    e.0 += usize::from(all);
                    e.1 += 1;
                };
                count(&s.group);
                if let Some((family, _)) = s.group.split_once('/') {
                    count(family);
                }
            }
        }
        Ok(per
            .into_iter()
            .map(|(g, (h, n))| (g, (100.0 * h as f64 / n as f64).round()))
            .collect())
    }
}

/// A question with its colours and shapes masked (`C`, `S`), its short-answer suffix dropped.
fn question_template(value: &str) -> String {
    let q = value.trim_start_matches("<image>\n");
    let q = q.split('\n').next().unwrap_or("");
    q.split_whitespace()
        .map(|w| {
            let (word, tail) = match w.strip_suffix(['?', '.', ',']) {
                Some(word) => (word, &w[word.len()..]),
                None => (w, ""),
            };
            let lower = word.to_lowercase();
            let singular = lower.strip_suffix("es").filter(|s| SHAPES.contains(s));
            let singular =
                singular.or_else(|| lower.strip_suffix('s').filter(|s| SHAPES.contains(s)));
            let masked = if COLORS.contains(&lower.as_str()) {
                "C"
            } else if SHAPES.contains(&lower.as_str()) || singular.is_some() {
                "S"
            } else {
                return w.to_string();
            };
            format!("{masked}{tail}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The world's question forms that ask one lookup, as research feasibility.md's five families.
const ONE_LOOKUP: [&str; 10] = [
    "What color is the S?",
    "What is the color of the S?",
    "What shape is the C object?",
    "Which shape is the C object?",
    "Is there a C S in the image?",
    "Is there an C S in the image?",
    "How many shapes are there in the image?",
    "How many objects are there in the image?",
    "Where is the S in the image?",
    "In which part of the image is the S?",
];

/// The question–answer pairs of `turns` whose question is one of [`ONE_LOOKUP`], the image
/// placeholder moved to the first one kept.
fn one_lookup_turns(turns: &[Turn]) -> Vec<Turn> {
    let mut out = Vec::new();
    for pair in turns.chunks(2) {
        if ONE_LOOKUP.contains(&question_template(&pair[0].value).as_str()) {
            let q = pair[0].value.trim_start_matches("<image>\n");
            let q = if out.is_empty() {
                format!("<image>\n{q}")
            } else {
                q.to_string()
            };
            out.push(Turn::new(Role::Human, q));
            out.push(pair[1].clone());
        }
    }
    out
}

/// `MLVF_TEMPLATE`, default vicuna_v1.
fn template_kind() -> TemplateKind {
    TemplateKind::parse(&std::env::var("MLVF_TEMPLATE").unwrap_or("vicuna_v1".into())).unwrap()
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn required(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
        panic!("set {name} (see the module docs)");
    }))
}

/// Trains projector + a fresh LM of `vocab` tokens on `next_batch`; prints held-out scores
/// with the image and with the blank image every 100 steps; returns the last with-image ones.
#[allow(clippy::too_many_arguments)]
fn train(
    vocab: usize,
    pad: u32,
    dv: usize,
    steps: u64,
    feats: &Tensor,
    held: &[Row],
    held_feats: &Tensor,
    blank: &Tensor,
    mut next_batch: impl FnMut(&mut ChaCha8Rng) -> Vec<Row>,
) -> BTreeMap<String, f64> {
    let lm_layers = env("MLVF_LM_LAYERS", 2usize);
    let std_ = env("MLVF_STD", 0.05f32);
    let p = lm::LmParams::default();
    let cfg = lm::lm_config(lm_layers, &p, vocab);
    let mut map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let d = cfg.hidden_size;
    let model = Model {
        fc1: candle_nn::linear(dv, d, vb.pp("projector.0")).unwrap(),
        fc2: candle_nn::linear(d, d, vb.pp("projector.2")).unwrap(),
        llm: Llama::new(&cfg, vb).unwrap(),
        pad,
    };
    init_at_scale(&map, std_);
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
    let report = |step: u64, model: &Model| -> Result<BTreeMap<String, f64>> {
        let with = model.score(held, held_feats, None)?;
        let without = model.score(held, held_feats, Some(blank))?;
        eprintln!(
            "step {step} ({:.0} s): image {with:?}\n    blank {without:?}",
            t0.elapsed().as_secs_f64()
        );
        Ok(with)
    };
    let every = env("MLVF_EVAL_EVERY", 100u64);
    train_loop(&mut map, &opt, &mut hooks, |step, _| {
        if step % every == 0 && step > 0 {
            report(step, &model)?;
        }
        let batch = next_batch(&mut rng);
        let refs: Vec<&Row> = batch.iter().collect();
        let (logits, target) = model.answer_logits(&refs, feats, None)?;
        Ok(candle_nn::loss::cross_entropy(&logits, &target)?)
    })
    .unwrap();
    report(steps, &model).unwrap()
}

/// The hidden state the harness reads (`MLVF_LAYER`, default the penultimate, LLaVA's).
fn layer_of(tower: &Path) -> usize {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tower.join("config.json")).unwrap()).unwrap();
    env(
        "MLVF_LAYER",
        cfg["num_hidden_layers"].as_u64().unwrap() as usize - 1,
    )
}

#[test]
#[ignore = "minutes, and needs MLVF_WORLD and MLVF_TOWER: trains a projector + 2-layer LM"]
fn a_tiny_mllm_reads_the_image_under_r4a() {
    assert_eq!(COLORS, mlvf::synth::world::Color::ALL.map(|c| c.name()));
    assert_eq!(SHAPES, mlvf::synth::world::Shape::ALL.map(|s| s.name()));
    let (world, tower) = (required("MLVF_WORLD"), required("MLVF_TOWER"));
    let features = Features::new(&tower, layer_of(&tower)).unwrap();
    let cells: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(world.join("pretrain/cells.json")).unwrap())
            .unwrap();
    let paths: Vec<PathBuf> = cells
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap();
            world.join("pretrain/images").join(format!("{id}.png"))
        })
        .collect();
    let feats = features.of_files(&paths).unwrap();
    let indexed: Vec<(usize, Vec<Object>)> = cells
        .iter()
        .map(|c| objects(&c["cells"]).unwrap_or_default())
        .enumerate()
        .filter(|(_, o)| !o.is_empty())
        .collect();
    let split = indexed.len() - HELD_OUT_IMAGES;
    let (train_scenes, held_scenes) = indexed.split_at(split);
    let v = match std::env::var_os("MLVF_TOKENIZER") {
        None => Encoder::Words(Vocab::new()),
        Some(path) => Encoder::Bpe(
            Box::new(TextTokenizer::from_file(Path::new(&path)).unwrap()),
            Template::new(template_kind()),
            env("MLVF_SUFFIX", 1u8) == 1,
        ),
    };
    let mut held_rng = ChaCha8Rng::seed_from_u64(99);
    let held: Vec<Row> = (0..1000)
        .map(|_| word_row(&v, held_scenes, &mut held_rng))
        .collect();
    let blank = features.blank().unwrap();
    let steps = env("MLVF_STEPS", 1000u64);
    let dv = feats.dim(2).unwrap();
    // `MLVF_POOL`: draw from a fixed pool of this many questions instead of fresh ones.
    let pool_size = env("MLVF_POOL", 0usize);
    let mut pool_rng = ChaCha8Rng::seed_from_u64(7);
    let pool: Vec<Row> = (0..pool_size)
        .map(|_| word_row(&v, train_scenes, &mut pool_rng))
        .collect();
    let (vocab, pad) = v.vocab_and_pad();
    train(
        vocab,
        pad,
        dv,
        steps,
        &feats,
        &held,
        &feats,
        &blank,
        |rng| {
            (0..64)
                .map(|_| match pool.is_empty() {
                    true => word_row(&v, train_scenes, rng),
                    false => pool[rng.random_range(0..pool.len())].clone(),
                })
                .collect()
        },
    );
}

/// The same model and trainer on the product's own finetuning data: the world's instructions
/// (every family, multi-turn, BPE, the chat template `MLVF_TEMPLATE`, default vicuna_v1),
/// scored on the world's syn-gqa and syn-pope questions teacher-forced.
#[test]
#[ignore = "minutes, and needs MLVF_WORLD, MLVF_TOWER and MLVF_TOKENIZER"]
fn a_tiny_mllm_on_the_worlds_finetuning_data() {
    let (world, tower) = (required("MLVF_WORLD"), required("MLVF_TOWER"));
    let tok = TextTokenizer::from_file(&required("MLVF_TOKENIZER")).unwrap();
    let template = Template::new(template_kind());
    let features = Features::new(&tower, layer_of(&tower)).unwrap();
    let n_vis = features.blank().unwrap().dim(1).unwrap();
    let budget = TokenBudget {
        max_len: 384,
        image_tokens: n_vis,
    };
    let data = load_llava_json(
        &world.join("finetune/instructions.json"),
        &world.join("finetune/images"),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut paths = Vec::new();
    let mut pool = Vec::new();
    // `MLVF_TURNS`: keep only the first n question–answer turns of each record.
    let turns = env("MLVF_TURNS", usize::MAX);
    let mut lens = Vec::new();
    let one_lookup = env("MLVF_ONE_LOOKUP", 0u8) == 1;
    for r in data.records.iter().filter(|r| r.has_image()) {
        let mut kept: Vec<Turn> = r.turns.to_vec();
        if one_lookup {
            kept = one_lookup_turns(&kept);
            if kept.is_empty() {
                continue;
            }
        }
        kept.truncate(2 * turns);
        let t = tokenize_conversation(&tok, &template, &kept, true, &budget).unwrap();
        lens.push(t.input_ids.len() + n_vis - 1);
        pool.push(split_at_image(&t, paths.len(), String::new()));
        paths.push(data.image_path(r).unwrap());
    }
    let feats = features.of_files(&paths).unwrap();
    // Held out: the benchmarks' questions, one turn each, grouped by benchmark and family.
    let (mut held, mut held_paths) = (Vec::new(), Vec::new());
    for bench in ["synth_gqa", "synth_pope"] {
        let dir = world.join("benchmarks").join(bench);
        for line in std::fs::read_to_string(dir.join("data.jsonl"))
            .unwrap()
            .lines()
        {
            let q: serde_json::Value = serde_json::from_str(line).unwrap();
            let turns = [
                Turn::new(
                    Role::Human,
                    format!("<image>\n{}", q["prompt"].as_str().unwrap()),
                ),
                Turn::new(Role::Gpt, q["answer"].as_str().unwrap()),
            ];
            let t = tokenize_conversation(&tok, &template, &turns, true, &budget).unwrap();
            let family = q["meta"]["family"].as_str().unwrap_or("?");
            let short = bench.trim_start_matches("synth_");
            held.push(split_at_image(
                &t,
                held_paths.len(),
                format!("{short}/{family}"),
            ));
            held_paths.push(dir.join(q["images"][0].as_str().unwrap()));
        }
    }
    let held_feats = features.of_files(&held_paths).unwrap();
    let blank = features.blank().unwrap();
    lens.sort_unstable();
    eprintln!(
        "{} training records (tokens: median {}, max {}), {} held out",
        pool.len(),
        lens[lens.len() / 2],
        lens[lens.len() - 1],
        held.len()
    );
    let steps = env("MLVF_STEPS", 1000u64);
    let vocab = tok.inner().get_vocab_size(true);
    let dv = feats.dim(2).unwrap();
    let mut order = DataOrder::new(pool.len(), 0);
    let mut step = 0;
    train(
        vocab,
        tok.pad_id(),
        dv,
        steps,
        &feats,
        &held,
        &held_feats,
        &blank,
        |_| {
            step += 1;
            order
                .batch(step - 1, 64)
                .into_iter()
                .map(|i| pool[i].clone())
                .collect()
        },
    );
}
