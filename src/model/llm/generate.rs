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
    let mask_rows: Vec<Vec<u32>> = attention_mask
        .ne(0u32 as f64)?
        .to_dtype(DType::U32)?
        .to_vec2()?;
    if mask_rows.len() != b || mask_rows.iter().any(|r| r.len() != t) {
        bail!(
            "attention_mask has shape {:?}; expected [{b}, {t}]",
            attention_mask.dims()
        );
    }
    let lens: Vec<u32> = mask_rows.iter().map(|r| r.iter().sum()).collect();
    if let Some(i) = lens.iter().position(|&n| n == 0) {
        bail!("prompt {i} of the batch is empty");
    }
    let mut out = vec![Vec::new(); b];
    if cfg.max_new_tokens == 0 {
        return Ok(out);
    }
    let dev = model.device();
    // Position of each real token = number of real tokens before it.
    let mut positions = Vec::with_capacity(b * t);
    for row in &mask_rows {
        let mut before = 0u32;
        for &m in row {
            positions.push(before);
            before += m;
        }
    }
    let positions = Tensor::from_vec(positions, (b, t), dev)?;
    let mut mask = Tensor::from_vec(mask_rows.concat(), (b, t), dev)?;
    let mut cache = model.new_cache();
    let prefill = ForwardOptions {
        attention_mask: Some(&mask),
        position_ids: Some(&positions),
        output_hidden_states: false,
        ..*opts
    };
    let hidden = model.forward_hidden(embeds, &prefill, Some(&mut cache))?;
    let last: Vec<usize> = mask_rows
        .iter()
        .map(|r| r.iter().rposition(|&m| m != 0).unwrap_or(0))
        .collect();
    // Only each row's last real position needs logits.
    let last_hidden = (0..b)
        .map(|i| hidden.i((i, last[i])))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let logits = model.lm_logits(&Tensor::stack(&last_hidden, 0)?)?;
    let mut next: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let mut done = vec![false; b];
    for step in 0..cfg.max_new_tokens {
        for i in 0..b {
            if !done[i] {
                if cfg.eos_token_ids.contains(&next[i]) {
                    done[i] = true;
                } else {
                    out[i].push(next[i]);
                }
            }
        }
        if done.iter().all(|&d| d) || step + 1 == cfg.max_new_tokens {
            break;
        }
        mask = Tensor::cat(&[&mask, &Tensor::ones((b, 1), DType::U32, dev)?], 1)?;
        let pos: Vec<u32> = lens.iter().map(|&n| n + step as u32).collect();
        let pos = Tensor::from_vec(pos, (b, 1), dev)?;
        let ids = Tensor::from_vec(next.clone(), (b, 1), dev)?;
        let step_opts = ForwardOptions {
            attention_mask: Some(&mask),
            position_ids: Some(&pos),
            injections: None,
            cross_attn: opts.cross_attn,
            output_hidden_states: false,
        };
        let logits = model.forward_embeds(&model.embed(&ids)?, &step_opts, Some(&mut cache))?;
        next = logits.i((.., 0))?.argmax(D::Minus1)?.to_vec1::<u32>()?;
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
