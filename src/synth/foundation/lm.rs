//! A tiny LLaMA trained as a causal LM on a synthetic world's `corpus.txt`.
//!
//! Defaults: 4 decoder layers (the entry's `layers`), hidden 128, 4 query heads sharing 2
//! key/value heads (GQA), SwiGLU MLP 352, RoPE θ = 10 000, untied head, byte-level BPE vocabulary
//! of 1024 ([`super::tokenizer`]). Every `holdout_every`-th corpus line is held out; the
//! tokenizer and the model see only the rest. Lines become `<s> … </s>` and are packed into one
//! stream cut into `seq_len` windows. Reported: held-out perplexity, and the perplexity of the
//! add-one unigram model of the training tokens on the same held-out tokens (the baseline a
//! useful LM must beat by far).

use super::text_qa::{self, QaSample};
use super::tokenizer::{add_words, save_tokenizer, train_tokenizer, BOS_ID, EOS_ID, PAD_ID};
use super::{params_from, seeded_init, train_loop, DataOrder, Finished, Optim, TrainHooks};
use crate::data::json::Record;
use crate::data::tokenize::TextTokenizer;
use crate::data::{load_llava_json, LoadOptions};
use crate::model::llm::config::RopeScaling;
use crate::model::llm::{Llama, LlamaConfig};
use crate::model::loss::{causal_lm_loss, masked_nll_sum};
use crate::synth::scene_text::{block_tokens, CellToken};
use crate::synth::{HeldoutQuestion, WorldSummary};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Settings of a `synth:llama` model entry (`params`); depth is the entry's `layers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmParams {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    pub max_position_embeddings: usize,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: u64,
    pub checkpoint_every: u64,
    /// Every n-th corpus line is held out for the perplexity check.
    pub holdout_every: usize,
    /// Text-scene conversations per step (`synth::scene_text`), trained on their answers beside
    /// the corpus windows; 0 trains on the corpus alone (or when the world has no text scenes).
    pub qa_batch: usize,
    /// Score the held-out text questions every this many steps (a learning curve in the
    /// metrics; 0 = only at the end).
    pub eval_every: u64,
    /// Start each cell token's factors (`top_left/red_star` = cell + colour + shape) from the
    /// embeddings of the words that name them (" top left", " red", " star"), as HF users
    /// initialise an added token from its sub-tokens; `false` draws each factor at random.
    /// With words, a question's " red star" and the block's token share their embedding parts
    /// from the first step, so matching the two is one generic head rather than 14 learned maps.
    /// Measured (world 5, 2026-12-04): with grounding.toml's LM settings, held-out text QA at
    /// step 200 was 46–50 % against 31 % with random factors in three paired runs, level again
    /// by step 600; with the quickstart's (250 steps) text QA was 33 % either way, and the
    /// finetuned models then answered "yes" to open questions (syn-gqa 15–20 against 27–31).
    /// Off by default.
    pub cell_init_from_words: bool,
    /// Decay the learning rate along a cosine after warm-up (`false`: hold it constant). Lookup
    /// appears as a late phase change (research: Olsson et al. 2022); a decayed rate can stall
    /// the run on the plateau before it.
    pub cosine: bool,
    /// Standard deviation of the normal initialisation of every linear layer's weights
    /// (attention, MLP, output head); the input embeddings start at 0.02 whatever it is.
    /// HF's `initializer_range` 0.02 is sized for 768-wide layers; at this LM's 128, lookup
    /// came far later (tests/lookup_phase.rs, experiments/README.md). Left out of the
    /// serialised settings at 0.02, so adding the option changed no existing key.
    #[serde(skip_serializing_if = "is_hf_init_std")]
    pub linear_init_std: f64,
    /// Render text-scene questions with the finetuning template's system prompt (`false`:
    /// `USER: … ASSISTANT: …` alone). The prompt is what the multimodal model meets later; its
    /// ≈ 30 constant tokens in every sample delayed the lookup by more than half on the T⁺ task
    /// (experiments/README.md). Left out of the serialised settings while true.
    #[serde(skip_serializing_if = "is_true")]
    pub text_system_prompt: bool,
    /// A curriculum: the first this many steps train the lookup alone — text-scene questions
    /// without the system prompt and no corpus rows — and from then on the questions carry the
    /// system prompt (where `text_system_prompt`) and `batch` corpus rows join each step. The
    /// lookup's phase change came without the prompt and not with it (experiments/README.md),
    /// while every multimodal sample later starts with it. 0 (the default, left out of the
    /// serialised settings) trains one stage.
    #[serde(skip_serializing_if = "is_zero")]
    pub lookup_stage_steps: u64,
    pub seed: u64,
}

impl Default for LmParams {
    fn default() -> Self {
        LmParams {
            hidden: 128,
            heads: 4,
            kv_heads: 2,
            intermediate: 352,
            vocab_size: 1024,
            seq_len: 128,
            max_position_embeddings: 2048,
            steps: 250,
            batch: 8,
            lr: 2e-3,
            weight_decay: 0.01,
            warmup_steps: 20,
            checkpoint_every: 50,
            holdout_every: 20,
            qa_batch: 16,
            eval_every: 100,
            cosine: true,
            cell_init_from_words: false,
            linear_init_std: 0.02,
            text_system_prompt: true,
            lookup_stage_steps: 0,
            seed: 0,
        }
    }
}

impl LmParams {
    /// Reads the entry's `params` (the planner's `world` key is ignored).
    pub fn from_params(params: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let p: LmParams = params_from(params, "synth llama")?;
        if !(p.linear_init_std.is_finite() && p.linear_init_std > 0.0) {
            bail!(
                "synth llama params: linear_init_std = {} must be positive (0.02 is HF's, 0.05 about PyTorch's default at width 128)",
                p.linear_init_std
            );
        }
        if p.lookup_stage_steps > 0 && p.qa_batch == 0 {
            bail!(
                "synth llama params: lookup_stage_steps = {} trains text-scene questions alone, so it needs qa_batch ≥ 1",
                p.lookup_stage_steps
            );
        }
        Ok(p)
    }
}

/// What a finished run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmReport {
    pub layers: usize,
    pub vocab_size: usize,
    pub steps: u64,
    /// Mean loss of the last 10% of the steps run in this attempt.
    pub final_loss: f64,
    pub perplexity: f64,
    pub unigram_perplexity: f64,
    pub heldout_tokens: usize,
    /// Exact match (0–100) on the world's held-out text scenes: the LM answering questions
    /// about a scene given as cell tokens (NaN for a world without text scenes).
    pub text_qa: f64,
    pub train_seconds: f64,
}

/// Caption records held out to score block copying (`text_qa/copy`).
const COPY_HELDOUT: usize = 200;

/// The model config for `layers`, the parameters and the trained vocabulary.
pub fn lm_config(layers: usize, p: &LmParams, vocab: usize) -> LlamaConfig {
    LlamaConfig {
        hidden_size: p.hidden,
        intermediate_size: p.intermediate,
        num_hidden_layers: layers,
        num_attention_heads: p.heads,
        num_key_value_heads: p.kv_heads,
        head_dim: p.hidden / p.heads.max(1),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: p.max_position_embeddings,
        tie_word_embeddings: false,
        vocab_size: vocab,
        bos_token_id: Some(BOS_ID),
        eos_token_ids: vec![EOS_ID],
    }
}

/// `<s> line </s>` for every line, concatenated, cut into whole `len`-token windows.
fn windows(tok: &tokenizers::Tokenizer, lines: &[&str], len: usize) -> Result<Vec<Vec<u32>>> {
    let enc = tok
        .encode_batch(lines.to_vec(), false)
        .map_err(|e| anyhow!("tokenizing the corpus: {e}"))?;
    let mut stream = Vec::new();
    for e in enc {
        stream.push(BOS_ID);
        stream.extend_from_slice(e.get_ids());
        stream.push(EOS_ID);
    }
    Ok(stream.chunks_exact(len).map(<[u32]>::to_vec).collect())
}

fn batch_tensor(rows: &[&Vec<u32>]) -> Result<Tensor> {
    let t = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu)?)
}

/// The fixed text of the chat templates, for the tokenizer only: the world's corpus never holds
/// LLaVA's system prompts, yet every finetuning and evaluation sample starts with one. Left out,
/// the vicuna_v1 prompt falls apart into 82 byte-level pieces (more than a quickstart image's
/// visual tokens); with it, into one token per word, as in a real LLM's vocabulary. Each line twice, to pass the
/// trainer's minimum frequency of 2. The LM itself never trains on these lines.
fn chat_template_lines<'a>() -> impl Iterator<Item = &'a str> {
    use crate::data::template::{LLAVA_V1_SYSTEM, VICUNA_V1_SYSTEM};
    [VICUNA_V1_SYSTEM, LLAVA_V1_SYSTEM, "USER: ASSISTANT:"]
        .into_iter()
        .cycle()
        .take(6)
}

/// Starts each block token's input embedding, and its row of the (untied) output head, as the
/// sum of shared factors — its cell (none for a content token), its colour, its shape (or one
/// `empty` factor) —
/// instead of unrelated random rows. The 441 cell tokens then share their parts from the first
/// step, as a patch token's position embedding and content features are added in a vision
/// tower: a query for "star" can match every token that holds a star, and a head that copies a
/// token's value into the residual stream already points at that token's output row (the
/// block copy alignment leans on; with random output rows a 400-step run copied no block
/// exactly, 2026-12-03). HF users initialise added tokens from their parts for the same reason.
/// With `from_words` each factor is the mean row of the words that name it (" top left",
/// " red", " star"; `empty` stays random), so the block and the questions share them too.
fn factor_cell_embeddings(
    map: &VarMap,
    tok: &tokenizers::Tokenizer,
    tokens: &[CellToken],
    seed: u64,
    from_words: bool,
) -> Result<()> {
    let named = crate::train::optim::named_vars(map);
    for (name, label) in [
        ("model.embed_tokens.weight", "in"),
        ("lm_head.weight", "out"),
    ] {
        let Some((_, var)) = named.iter().find(|(n, _)| n == name) else {
            bail!("internal: the LM has no {name}");
        };
        let (vocab, hidden) = var.as_tensor().dims2()?;
        let mut rows: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
        // Each factor once, read from the rows as initialised, before any cell row is written
        // (no cell token is a word's piece).
        let mut factors: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for part in factor_names() {
            let word = factor_word(&part).filter(|_| from_words);
            let value = match word {
                Some(word) => mean_row(&rows, hidden, tok, &format!(" {word}"))?,
                None => {
                    let mut rng = super::rng_for(seed, &format!("cell-factor/{label}/{part}"));
                    (0..hidden)
                        .map(|_| super::normal(&mut rng) * 0.02)
                        .collect()
                }
            };
            factors.insert(part, value);
        }
        for t in tokens {
            let id = tok.token_to_id(&t.text).with_context(|| {
                format!("internal: cell token {} is not in the vocabulary", t.text)
            })? as usize;
            anyhow::ensure!(id < vocab, "cell token id {id} is outside {name}");
            // A content token has no cell factor: its place in the block is its cell.
            let mut names: Vec<String> = t.cell.map(|k| format!("cell{k}")).into_iter().collect();
            match (t.color, t.shape) {
                (Some(c), Some(s)) => names.extend([format!("color{c}"), format!("shape{s}")]),
                _ => names.push("empty".to_string()),
            }
            let parts: Vec<&Vec<f32>> = names.iter().map(|n| &factors[n]).collect();
            let row = &mut rows[id * hidden..(id + 1) * hidden];
            for (j, x) in row.iter_mut().enumerate() {
                *x = parts.iter().map(|p| p[j]).sum();
            }
        }
        var.set(&Tensor::from_vec(
            rows,
            (vocab, hidden),
            var.as_tensor().device(),
        )?)?;
    }
    Ok(())
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Which text stage a step trains: with `lookup_steps` > 0, stage 0 (text-scene questions
/// without the system prompt, no corpus rows) before it and stage 1 (the full mix) from it on;
/// otherwise stage 0 throughout, the full mix.
struct Curriculum {
    lookup_steps: u64,
    corpus_batch: usize,
}

impl Curriculum {
    fn in_lookup_stage(&self, step: u64) -> bool {
        step < self.lookup_steps
    }

    /// Index into the per-stage sample lists (one list when there is one stage).
    fn stage(&self, step: u64) -> usize {
        usize::from(self.lookup_steps > 0 && !self.in_lookup_stage(step))
    }

    /// Corpus rows in the step's batch: none while the lookup trains alone.
    fn corpus_rows(&self, step: u64) -> usize {
        if self.in_lookup_stage(step) {
            0
        } else {
            self.corpus_batch
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_hf_init_std(std: &f64) -> bool {
    *std == EMBED_INIT_STD
}

/// The input embeddings' initial standard deviation (HF's `initializer_range`).
const EMBED_INIT_STD: f64 = 0.02;

/// Multiplies the input embedding matrix by `factor`: after [`seeded_init`] drew it at the
/// linear layers' std, this gives it [`EMBED_INIT_STD`] from the same seeded draw (a factor of
/// 1 leaves it untouched).
fn scale_embeddings_to(map: &VarMap, factor: f64) -> Result<()> {
    if factor == 1.0 {
        return Ok(());
    }
    let named = crate::train::optim::named_vars(map);
    let Some((_, var)) = named.iter().find(|(n, _)| n == "model.embed_tokens.weight") else {
        bail!("internal: the LM has no model.embed_tokens.weight");
    };
    var.set(&(var.as_tensor() * factor)?)?;
    Ok(())
}

/// Every factor a cell token is built from: `cell0`…`cell8`, `color<i>`, `shape<i>`, `empty`.
fn factor_names() -> Vec<String> {
    use crate::synth::world::{Cell, Color, Shape};
    let cells = (0..Cell::all().len()).map(|k| format!("cell{k}"));
    let colors = (0..Color::ALL.len()).map(|k| format!("color{k}"));
    let shapes = (0..Shape::ALL.len()).map(|k| format!("shape{k}"));
    cells
        .chain(colors)
        .chain(shapes)
        .chain(["empty".to_string()])
        .collect()
}

/// The words that name a cell-token factor (`cell0` → "top left", `color0` → "red",
/// `shape0` → "circle"); `None` for `empty`, which no question names.
fn factor_word(part: &str) -> Option<&'static str> {
    use crate::synth::world::{Cell, Color, Shape};
    let index = |prefix: &str| part.strip_prefix(prefix)?.parse::<usize>().ok();
    if let Some(k) = index("cell") {
        return Cell::all().get(k).map(|c| c.name());
    }
    if let Some(k) = index("color") {
        return Color::ALL.get(k).map(|c| c.name());
    }
    index("shape").and_then(|k| Shape::ALL.get(k).map(|s| s.name()))
}

/// The mean of the rows of `matrix` (`[vocab, hidden]`, flat) at the tokens of `text`.
fn mean_row(
    matrix: &[f32],
    hidden: usize,
    tok: &tokenizers::Tokenizer,
    text: &str,
) -> Result<Vec<f32>> {
    let enc = tok
        .encode(text, false)
        .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
    let ids = enc.get_ids();
    anyhow::ensure!(!ids.is_empty(), "internal: {text:?} has no tokens");
    let mut mean = vec![0f32; hidden];
    for &id in ids {
        let row = &matrix[id as usize * hidden..(id as usize + 1) * hidden];
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x / ids.len() as f32;
        }
    }
    Ok(mean)
}

/// A text split of the world (LLaVA JSON without images), read and validated by the datasets'
/// own loader, so a malformed record fails here with its index and id.
fn text_records(path: &Path) -> Result<Vec<Record>> {
    let opts = LoadOptions {
        check_images: false,
        ..LoadOptions::default()
    };
    let folder = path.parent().unwrap_or(path);
    Ok(load_llava_json(path, folder, &opts)?.records)
}

/// Trains the LM (and its tokenizer) on the world at `world`; saves config.json,
/// model.safetensors and tokenizer.json into `out`. `None` when `hooks.stop_after` stopped it.
pub fn train_lm(
    layers: usize,
    p: &LmParams,
    world: &Path,
    out: &Path,
    hooks: &mut TrainHooks<'_>,
) -> Result<Option<LmReport>> {
    if layers == 0 || p.heads == 0 || p.kv_heads == 0 || p.heads % p.kv_heads != 0 {
        bail!("llama params: need ≥ 1 layer and heads a multiple of kv_heads (got {layers} layers, {} heads, {} kv_heads)", p.heads, p.kv_heads);
    }
    if p.hidden % p.heads != 0 || (p.hidden / p.heads) % 2 != 0 {
        bail!(
            "llama params: hidden {} must split into an even head size over {} heads",
            p.hidden,
            p.heads
        );
    }
    let summary = WorldSummary::load(world)?;
    let corpus_path = world.join(&summary.corpus);
    let corpus = std::fs::read_to_string(&corpus_path)
        .with_context(|| format!("reading {}", corpus_path.display()))?;
    let every = p.holdout_every.max(2);
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (i, line) in corpus.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if i % every == every - 1 {
            held.push(line);
        } else {
            train.push(line);
        }
    }

    // The tokenizer is part of the resumable state: keep it next to the checkpoints.
    std::fs::create_dir_all(hooks.checkpoint_dir)?;
    let tok_path = hooks.checkpoint_dir.join("tokenizer.json");
    let tok = if tok_path.is_file() {
        crate::model::hub::load_tokenizer(&tok_path)?
    } else {
        let mut t = train_tokenizer(
            train.iter().copied().chain(chat_template_lines()),
            p.vocab_size,
        )?;
        let words: Vec<String> = block_tokens(summary.config.text_block)
            .into_iter()
            .map(|c| c.text)
            .collect();
        add_words(&mut t, &words)?;
        save_tokenizer(&t, &tok_path)?;
        t
    };
    let vocab = tok.get_vocab_size(true);
    let train_w = windows(&tok, &train, p.seq_len)?;
    let held_w = windows(&tok, &held, p.seq_len)?;
    if train_w.len() < p.batch.max(1) || held_w.is_empty() {
        bail!(
            "{}: {} training and {} held-out windows of {} tokens; raise the world's n_pretrain/n_finetune or lower seq_len",
            corpus_path.display(),
            train_w.len(),
            held_w.len(),
            p.seq_len
        );
    }

    // Text scenes: conversations to train on, held-out questions to score.
    let text_tok = TextTokenizer::new(tok.clone())?.with_pad_id(PAD_ID);
    // Each stage's rendering of the same samples (one list when there is one stage), so the
    // data order picks the same scenes whatever the stage.
    let lookup_steps = p.lookup_stage_steps.min(p.steps);
    let (qa_stages, held_stages) = match &summary.text {
        Some(text) if p.qa_batch > 0 => {
            let records = text_records(&world.join(&text.train))?;
            let captions = text_records(&world.join(&text.captions))?;
            let held = HeldoutQuestion::load_all(world, &summary)?;
            // The last captions are held out to score copying.
            let n_copy = (captions.len() / 10).min(COPY_HELDOUT);
            let (cap_train, cap_held) = captions.split_at(captions.len() - n_copy);
            let caption_train = text_qa::caption_samples(&text_tok, cap_train, false)?;
            let caption_held: Vec<(QaSample, String)> =
                text_qa::caption_samples(&text_tok, cap_held, true)?
                    .into_iter()
                    .map(|s| (s, text_qa::COPY_FAMILY.to_string()))
                    .collect();
            let mut prompts = vec![p.text_system_prompt];
            if lookup_steps > 0 {
                prompts.insert(0, false);
            }
            let (mut train, mut scored) = (Vec::new(), Vec::new());
            for prompt in prompts {
                let template = text_qa::text_template(prompt);
                let mut samples = text_qa::training_samples(&text_tok, &template, &records)?;
                samples.extend(caption_train.iter().cloned());
                let mut held = text_qa::heldout_samples(&text_tok, &template, &held)?;
                held.extend(caption_held.iter().cloned());
                train.push(samples);
                scored.push(held);
            }
            (train, scored)
        }
        _ => (vec![Vec::new()], vec![Vec::new()]),
    };
    let curriculum = Curriculum {
        lookup_steps,
        corpus_batch: p.batch,
    };
    let (qa_train, qa_held) = (qa_stages.last().unwrap(), held_stages.last().unwrap());

    let cfg = lm_config(layers, p, vocab);
    let mut map = VarMap::new();
    let model = Llama::new(
        &cfg,
        VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
    )?;
    seeded_init(&map, p.seed, p.linear_init_std as f32)?;
    scale_embeddings_to(&map, EMBED_INIT_STD / p.linear_init_std)?;
    let tokens = block_tokens(summary.config.text_block);
    factor_cell_embeddings(&map, &tok, &tokens, p.seed, p.cell_init_from_words)?;
    let opt = Optim {
        steps: p.steps,
        lr: p.lr,
        weight_decay: p.weight_decay,
        warmup_steps: p.warmup_steps,
        max_grad_norm: 1.0,
        checkpoint_every: p.checkpoint_every,
        seed: p.seed,
        cosine: p.cosine,
    };
    let mut order = DataOrder::new(train_w.len(), p.seed);
    let mut qa_order = DataOrder::new(qa_train.len().max(1), p.seed ^ 0x9a);
    let mut losses = Vec::new();
    let start = std::time::Instant::now();
    let finished = train_loop(&mut map, &opt, hooks, |step, metric| {
        // Scored as the step's stage renders the questions; the last score with the final stage.
        let stage = curriculum.stage(step);
        let (qa_train, qa_held) = (&qa_stages[stage], &held_stages[stage]);
        if !qa_held.is_empty() && p.eval_every > 0 && step % p.eval_every == 0 && step > 0 {
            let s = text_qa::score(&model, qa_held, PAD_ID, 64)?;
            metric("text_qa", Some(step), s.overall)?;
            for (family, v) in &s.by_family {
                metric(&format!("text_qa/{family}"), Some(step), *v)?;
            }
        }
        let rows: Vec<&Vec<u32>> = order
            .batch(step, curriculum.corpus_rows(step))
            .into_iter()
            .map(|i| &train_w[i])
            .collect();
        let mut loss = None;
        if !rows.is_empty() {
            let ids = batch_tensor(&rows)?;
            let logits = model.forward_ids(&ids, None)?;
            loss = Some(causal_lm_loss(&logits, &ids.to_dtype(DType::I64)?)?);
        }
        if !qa_train.is_empty() {
            let qa: Vec<&QaSample> = qa_order
                .batch(step, p.qa_batch)
                .into_iter()
                .map(|i| &qa_train[i])
                .collect();
            let l = text_qa::answer_loss(&model, &qa, PAD_ID)?;
            loss = Some(match loss {
                Some(c) => (c + l)?,
                None => l,
            });
        }
        let loss = loss.context(
            "llama params: nothing to train on at this step (batch and qa_batch are 0, or qa_batch is 0 during lookup_stage_steps)",
        )?;
        losses.push(loss.to_scalar::<f32>()? as f64);
        Ok(loss)
    })?;
    let train_seconds = start.elapsed().as_secs_f64();
    if finished == Finished::Stopped {
        return Ok(None);
    }
    let text_qa = if qa_held.is_empty() {
        f64::NAN
    } else {
        let s = text_qa::score(&model, qa_held, PAD_ID, 64)?;
        (hooks.metric)("text_qa", Some(p.steps), s.overall)?;
        for (family, v) in &s.by_family {
            (hooks.metric)(&format!("text_qa/{family}"), None, *v)?;
        }
        s.overall
    };

    // Held-out perplexity of the model and of the unigram baseline on the same tokens.
    let (mut nll, mut count) = (0f64, 0usize);
    for chunk in held_w.chunks(16) {
        let rows: Vec<&Vec<u32>> = chunk.iter().collect();
        let ids = batch_tensor(&rows)?;
        let logits = model.forward_ids(&ids, None)?;
        let t = p.seq_len;
        let (sum, n) = masked_nll_sum(
            &logits.narrow(1, 0, t - 1)?,
            &ids.narrow(1, 1, t - 1)?.to_dtype(DType::I64)?,
        )?;
        nll += sum.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        count += n;
    }
    let mut counts = vec![1f64; vocab];
    for w in &train_w {
        for &id in w {
            counts[id as usize] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let uni_nll: f64 = held_w
        .iter()
        .flat_map(|w| w[1..].iter())
        .map(|&id| -(counts[id as usize] / total).ln())
        .sum();
    let tail = losses.len().div_ceil(10);
    let final_loss = if losses.is_empty() {
        f64::NAN
    } else {
        losses[losses.len() - tail..].iter().sum::<f64>() / tail as f64
    };
    model.save(out, Some(&tok_path))?;
    Ok(Some(LmReport {
        layers,
        vocab_size: vocab,
        steps: p.steps,
        final_loss,
        perplexity: (nll / count as f64).exp(),
        unigram_perplexity: (uni_nll / count as f64).exp(),
        heldout_tokens: count,
        text_qa,
        train_seconds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::template::VICUNA_V1_SYSTEM;

    /// `linear_init_std` is checked when the plan reads the entry, and left out of the
    /// serialised settings (what keys hash) at its default, so existing LM keys stand.
    #[test]
    fn linear_init_std_is_checked_and_keyless_at_its_default() {
        let params = |v: serde_json::Value| v.as_object().unwrap().clone();
        let d = LmParams::from_params(&params(serde_json::json!({}))).unwrap();
        let json = serde_json::to_value(&d).unwrap();
        assert!(json.get("linear_init_std").is_none(), "{json}");
        let p =
            LmParams::from_params(&params(serde_json::json!({"linear_init_std": 0.05}))).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap()["linear_init_std"], 0.05);
        for bad in [0.0, -0.05] {
            let e = LmParams::from_params(&params(serde_json::json!({"linear_init_std": bad})))
                .unwrap_err();
            assert!(format!("{e:#}").contains("must be positive"), "{e:#}");
        }
    }

    /// `lookup_stage_steps` is keyless at 0 (existing LM keys stand), needs text-scene
    /// questions to train on, and splits the steps: the lookup alone (no corpus rows, stage 0)
    /// before it, the full mix (stage 1) from it on.
    #[test]
    fn the_lookup_stage_is_checked_keyless_at_zero_and_splits_the_steps() {
        let params = |v: serde_json::Value| v.as_object().unwrap().clone();
        let d = LmParams::from_params(&params(serde_json::json!({}))).unwrap();
        assert!(serde_json::to_value(&d)
            .unwrap()
            .get("lookup_stage_steps")
            .is_none());
        let e = LmParams::from_params(&params(
            serde_json::json!({"lookup_stage_steps": 100, "qa_batch": 0}),
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("needs qa_batch"), "{e:#}");
        let p = LmParams::from_params(&params(
            serde_json::json!({"lookup_stage_steps": 100, "qa_batch": 8}),
        ))
        .unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap()["lookup_stage_steps"], 100);

        let staged = Curriculum {
            lookup_steps: 100,
            corpus_batch: 4,
        };
        assert_eq!((staged.stage(0), staged.corpus_rows(0)), (0, 0));
        assert_eq!((staged.stage(99), staged.corpus_rows(99)), (0, 0));
        assert_eq!((staged.stage(100), staged.corpus_rows(100)), (1, 4));
        let single = Curriculum {
            lookup_steps: 0,
            corpus_batch: 4,
        };
        assert_eq!((single.stage(0), single.corpus_rows(0)), (0, 4));
        assert_eq!((single.stage(5000), single.corpus_rows(5000)), (0, 4));
    }

    /// The tokenizer learns the system prompt every sample starts with: one piece per word or
    /// punctuation mark, not the byte-level crumbs of words the world's text never uses.
    #[test]
    fn the_chat_system_prompt_tokenizes_word_by_word() {
        let corpus = [
            "A large red triangle at the top.",
            "Is there a red star? yes",
        ];
        let count =
            |tok: &tokenizers::Tokenizer| tok.encode(VICUNA_V1_SYSTEM, false).unwrap().len();
        let plain = train_tokenizer(corpus.iter().copied().cycle().take(20), 1024).unwrap();
        let with_chat = train_tokenizer(
            corpus
                .iter()
                .copied()
                .cycle()
                .take(20)
                .chain(chat_template_lines()),
            1024,
        )
        .unwrap();
        let words = VICUNA_V1_SYSTEM.split(' ').count();
        assert!(count(&plain) > 3 * words, "{} pieces", count(&plain));
        assert!(
            count(&with_chat) <= words + 8,
            "{} pieces",
            count(&with_chat)
        );
    }
}
