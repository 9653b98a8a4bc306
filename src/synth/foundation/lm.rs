//! A tiny LLaMA trained as a causal LM on a synthetic world's `corpus.txt`.
//!
//! Defaults: 4 decoder layers (the entry's `layers`), hidden 128, 4 query heads sharing 2
//! key/value heads (GQA), SwiGLU MLP 352, RoPE θ = 10 000, untied head, byte-level BPE vocabulary
//! of 1024 ([`super::tokenizer`]). Every `holdout_every`-th corpus line is held out; the
//! tokenizer and the model see only the rest. Lines become `<s> … </s>` and are packed into one
//! stream cut into `seq_len` windows. Reported: held-out perplexity, and the perplexity of the
//! add-one unigram model of the training tokens on the same held-out tokens (the baseline a
//! useful LM must beat by far).

use super::tokenizer::{save_tokenizer, train_tokenizer, BOS_ID, EOS_ID};
use super::{params_from, seeded_init, train_loop, DataOrder, Finished, Optim, TrainHooks};
use crate::model::llm::config::RopeScaling;
use crate::model::llm::{Llama, LlamaConfig};
use crate::synth::WorldSummary;
use crate::train::loss::{causal_lm_loss, masked_nll_sum};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
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
            seed: 0,
        }
    }
}

impl LmParams {
    /// Reads the entry's `params` (the planner's `world` key is ignored).
    pub fn from_params(params: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        params_from(params, "synth llama")
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
    pub train_seconds: f64,
}

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
    use crate::train::data::template::{LLAVA_V1_SYSTEM, VICUNA_V1_SYSTEM};
    [VICUNA_V1_SYSTEM, LLAVA_V1_SYSTEM, "USER: ASSISTANT:"]
        .into_iter()
        .cycle()
        .take(6)
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
        let t = train_tokenizer(
            train.iter().copied().chain(chat_template_lines()),
            p.vocab_size,
        )?;
        save_tokenizer(&t, &tok_path)?;
        t
    };
    let vocab = tok.get_vocab_size(true);
    let train_w = windows(&tok, &train, p.seq_len)?;
    let held_w = windows(&tok, &held, p.seq_len)?;
    if train_w.len() < p.batch || held_w.is_empty() {
        bail!(
            "{}: {} training and {} held-out windows of {} tokens; raise the world's n_pretrain/n_finetune or lower seq_len",
            corpus_path.display(),
            train_w.len(),
            held_w.len(),
            p.seq_len
        );
    }

    let cfg = lm_config(layers, p, vocab);
    let mut map = VarMap::new();
    let model = Llama::new(
        &cfg,
        VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
    )?;
    seeded_init(&map, p.seed, 0.02)?;
    let opt = Optim {
        steps: p.steps,
        lr: p.lr,
        weight_decay: p.weight_decay,
        warmup_steps: p.warmup_steps,
        max_grad_norm: 1.0,
        checkpoint_every: p.checkpoint_every,
        seed: p.seed,
    };
    let mut order = DataOrder::new(train_w.len(), p.seed);
    let mut losses = Vec::new();
    let start = std::time::Instant::now();
    let finished = train_loop(&mut map, &opt, hooks, |step| {
        let rows: Vec<&Vec<u32>> = order
            .batch(step, p.batch)
            .into_iter()
            .map(|i| &train_w[i])
            .collect();
        let ids = batch_tensor(&rows)?;
        let logits = model.forward_ids(&ids, None)?;
        let loss = causal_lm_loss(&logits, &ids.to_dtype(DType::I64)?)?;
        losses.push(loss.to_scalar::<f32>()? as f64);
        Ok(loss)
    })?;
    let train_seconds = start.elapsed().as_secs_f64();
    if finished == Finished::Stopped {
        return Ok(None);
    }

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
        train_seconds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::template::VICUNA_V1_SYSTEM;

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
