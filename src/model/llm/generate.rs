//! Greedy decoding with the KV cache: prefill the prompt (with any fusion hooks), then one token
//! at a time until an end-of-sequence id or the token budget.

use super::model::{ForwardOptions, Llama};
use anyhow::{bail, Result};
use candle_core::{DType, IndexOp, Tensor, D};

/// When to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    /// Generation stops after emitting one of these (the id is not included in the output).
    pub eos_token_ids: Vec<u32>,
}

impl GenerateConfig {
    /// Stops at the model's own EOS ids.
    pub fn for_model(model: &Llama, max_new_tokens: usize) -> Self {
        GenerateConfig {
            max_new_tokens,
            eos_token_ids: model.config().eos_token_ids.clone(),
        }
    }
}

/// Greedy completion of one prompt given as embeddings `[1, T, H]` (visual tokens may be spliced
/// in). `opts` applies to the prefill: I_D injections act there only; I_M sub-blocks act at every
/// step (their image keys/values are cached). Returns the new token ids, without the EOS.
pub fn generate_greedy(
    model: &Llama,
    prompt_embeds: &Tensor,
    opts: &ForwardOptions<'_>,
    cfg: &GenerateConfig,
) -> Result<Vec<u32>> {
    let (b, t, _) = prompt_embeds.dims3()?;
    if b != 1 {
        bail!("generate_greedy decodes one prompt at a time (got a batch of {b})");
    }
    if t == 0 {
        bail!("generate_greedy needs a non-empty prompt");
    }
    if opts.attention_mask.is_some() {
        bail!("generate_greedy: a single unpadded prompt takes no attention_mask");
    }
    let mut cache = model.new_cache();
    let mut out = Vec::new();
    if cfg.max_new_tokens == 0 {
        return Ok(out);
    }
    let prefill = ForwardOptions {
        output_hidden_states: false,
        ..*opts
    };
    let hidden = model.forward_hidden(prompt_embeds, &prefill, Some(&mut cache))?;
    let mut next = argmax(&model.lm_logits(&hidden.i((0, t - 1..t))?)?.squeeze(0)?)?;
    // Decode steps: no injections (they act on the visual positions, which are in the cache).
    let step_opts = ForwardOptions {
        injections: None,
        attention_mask: None,
        cross_attn: opts.cross_attn,
        position_ids: None,
        output_hidden_states: false,
    };
    loop {
        if cfg.eos_token_ids.contains(&next) {
            break;
        }
        out.push(next);
        if out.len() >= cfg.max_new_tokens {
            break;
        }
        let ids = Tensor::new(&[[next]], model.device())?;
        let hidden = model.forward_hidden(&model.embed(&ids)?, &step_opts, Some(&mut cache))?;
        next = argmax(&model.lm_logits(&hidden.i((0, 0..1))?)?.squeeze(0)?)?;
    }
    Ok(out)
}

/// Left-pads prompts (each `[T_b, H]` embeddings) into one batch: `[B, T_max, H]` embeddings
/// (zeros at padding), the `[B, T_max]` u32 attention mask, and each row's number of padding
/// positions (shift that row's visual spans by it).
pub fn left_pad(prompts: &[Tensor]) -> Result<(Tensor, Tensor, Vec<usize>)> {
    let Some(first) = prompts.first() else {
        bail!("left_pad: no prompts");
    };
    let h = first.dim(1)?;
    let t_max = prompts
        .iter()
        .map(|p| p.dim(0))
        .collect::<candle_core::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    let (mut rows, mut mask, mut pads) = (Vec::new(), Vec::new(), Vec::new());
    for p in prompts {
        let (t, w) = p.dims2()?;
        if w != h {
            bail!("left_pad: prompts differ in width ({w} vs {h})");
        }
        let pad = t_max - t;
        rows.push(if pad > 0 {
            Tensor::cat(&[&Tensor::zeros((pad, h), p.dtype(), p.device())?, p], 0)?
        } else {
            p.clone()
        });
        mask.extend((0..t_max).map(|i| u32::from(i >= pad)));
        pads.push(pad);
    }
    let mask = Tensor::from_vec(mask, (prompts.len(), t_max), first.device())?;
    Ok((Tensor::stack(&rows, 0)?, mask, pads))
}

/// A padded batch's attention mask, read back: per row, the mask values, the number of real
/// tokens, and the last real position (where the next token's logits are read).
struct PaddedRows {
    mask: Vec<Vec<u32>>,
    lens: Vec<u32>,
    last: Vec<usize>,
}

impl PaddedRows {
    fn read(attention_mask: &Tensor, b: usize, t: usize) -> Result<Self> {
        let mask: Vec<Vec<u32>> = attention_mask
            .ne(0u32 as f64)?
            .to_dtype(DType::U32)?
            .to_vec2()?;
        if mask.len() != b || mask.iter().any(|r| r.len() != t) {
            bail!(
                "attention_mask has shape {:?}; expected [{b}, {t}]",
                attention_mask.dims()
            );
        }
        let lens: Vec<u32> = mask.iter().map(|r| r.iter().sum()).collect();
        if let Some(i) = lens.iter().position(|&n| n == 0) {
            bail!("prompt {i} of the batch is empty");
        }
        let last = mask
            .iter()
            .map(|r| r.iter().rposition(|&m| m != 0).unwrap_or(0))
            .collect();
        Ok(PaddedRows { mask, lens, last })
    }

    /// Position of each real token = number of real tokens before it (padding gets the next
    /// real token's position; it is never attended to).
    fn positions(&self, dev: &candle_core::Device) -> Result<Tensor> {
        let t = self.mask.first().map_or(0, Vec::len);
        let mut positions = Vec::with_capacity(self.mask.len() * t);
        for row in &self.mask {
            let mut before = 0u32;
            for &m in row {
                positions.push(before);
                before += m;
            }
        }
        Ok(Tensor::from_vec(positions, (self.mask.len(), t), dev)?)
    }
}

/// The prefill of [`generate_greedy_batch`]: runs the padded prompts (filling `cache`) and
/// returns the `[B, vocab]` f32 logits at each row's last real position.
fn prefill_batch(
    model: &Llama,
    embeds: &Tensor,
    rows: &PaddedRows,
    opts: &ForwardOptions<'_>,
    cache: Option<&mut crate::model::llm::KvCache>,
) -> Result<Tensor> {
    let dev = model.device();
    let (b, t, _) = embeds.dims3()?;
    let mask = Tensor::from_vec(rows.mask.concat(), (b, t), dev)?;
    let positions = rows.positions(dev)?;
    let prefill = ForwardOptions {
        attention_mask: Some(&mask),
        position_ids: Some(&positions),
        output_hidden_states: false,
        ..*opts
    };
    let hidden = model.forward_hidden(embeds, &prefill, cache)?;
    // Only each row's last real position needs logits.
    let last_hidden = (0..b)
        .map(|i| hidden.i((i, rows.last[i])))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(model.lm_logits(&Tensor::stack(&last_hidden, 0)?)?)
}

/// The `[B, vocab]` f32 logits of the first generated token of each row of a padded batch,
/// computed exactly as [`generate_greedy_batch`]'s prefill computes them (tests compare them
/// with the unpadded forward pass; a scorer could read them).
pub fn first_logits_batch(
    model: &Llama,
    embeds: &Tensor,
    attention_mask: &Tensor,
    opts: &ForwardOptions<'_>,
) -> Result<Tensor> {
    let (b, t, _) = embeds.dims3()?;
    let rows = PaddedRows::read(attention_mask, b, t)?;
    prefill_batch(model, embeds, &rows, opts, None)
}

/// Greedy completion of a padded batch of prompts `[B, T, H]` with its attention mask `[B, T]`
/// (left padding from [`left_pad`]; right padding works too). Positions count real tokens only,
/// so every row decodes exactly as it would alone. `opts` hooks act as in [`generate_greedy`]
/// (visual spans in padded coordinates). Returns each row's new tokens, without the EOS.
pub fn generate_greedy_batch(
    model: &Llama,
    embeds: &Tensor,
    attention_mask: &Tensor,
    opts: &ForwardOptions<'_>,
    cfg: &GenerateConfig,
) -> Result<Vec<Vec<u32>>> {
    let (b, t, _) = embeds.dims3()?;
    let rows = PaddedRows::read(attention_mask, b, t)?;
    let mut out = vec![Vec::new(); b];
    if cfg.max_new_tokens == 0 {
        return Ok(out);
    }
    let dev = model.device();
    let mut cache = model.new_cache();
    let logits = prefill_batch(model, embeds, &rows, opts, Some(&mut cache))?;
    let mut next: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let mut mask = Tensor::from_vec(rows.mask.concat(), (b, t), dev)?;
    // The rows still decoding (indices into the batch); finished rows leave the batch (and the
    // KV cache), so a long answer does not make the short ones pay for its steps.
    let mut active: Vec<usize> = (0..b).collect();
    for step in 0..cfg.max_new_tokens {
        let mut keep = Vec::with_capacity(active.len());
        for (j, &i) in active.iter().enumerate() {
            if !cfg.eos_token_ids.contains(&next[j]) {
                out[i].push(next[j]);
                keep.push(j);
            }
        }
        if keep.is_empty() || step + 1 == cfg.max_new_tokens {
            break;
        }
        if keep.len() < active.len() {
            let idx = Tensor::from_vec(
                keep.iter().map(|&j| j as u32).collect::<Vec<_>>(),
                keep.len(),
                dev,
            )?;
            cache.select_rows(&idx)?;
            mask = mask.index_select(&idx, 0)?;
            next = keep.iter().map(|&j| next[j]).collect();
            active = keep.iter().map(|&j| active[j]).collect();
        }
        let n = active.len();
        mask = Tensor::cat(&[&mask, &Tensor::ones((n, 1), DType::U32, dev)?], 1)?;
        let pos: Vec<u32> = active.iter().map(|&i| rows.lens[i] + step as u32).collect();
        let pos = Tensor::from_vec(pos, (n, 1), dev)?;
        let ids = Tensor::from_vec(next.clone(), (n, 1), dev)?;
        let step_opts = ForwardOptions {
            attention_mask: Some(&mask),
            position_ids: Some(&pos),
            injections: None,
            cross_attn: opts.cross_attn,
            output_hidden_states: false,
        };
        let hidden = model.forward_hidden(&model.embed(&ids)?, &step_opts, Some(&mut cache))?;
        next = model
            .lm_logits(&hidden.i((.., 0))?)?
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?;
    }
    Ok(out)
}

/// Greedy completion of token ids (no visual input).
pub fn generate_from_ids(model: &Llama, prompt: &[u32], cfg: &GenerateConfig) -> Result<Vec<u32>> {
    let ids = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
    generate_greedy(model, &model.embed(&ids)?, &ForwardOptions::default(), cfg)
}

/// The argmax of a `[vocab]` logits vector.
fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
