//! Greedy decoding with the KV cache: prefill the prompt (with any fusion hooks), then one token
//! at a time until an end-of-sequence id or the token budget.

use super::model::{ForwardOptions, Llama};
use anyhow::{bail, Result};
use candle_core::{IndexOp, Tensor, D};

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
    let logits = model.forward_embeds(prompt_embeds, opts, Some(&mut cache))?;
    let mut next = argmax_last(&logits)?;
    // Decode steps: no injections (they act on the visual positions, which are in the cache).
    let step_opts = ForwardOptions {
        injections: None,
        attention_mask: None,
        cross_attn: opts.cross_attn,
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
        let logits = model.forward_embeds(&model.embed(&ids)?, &step_opts, Some(&mut cache))?;
        next = argmax_last(&logits)?;
    }
    Ok(out)
}

/// Greedy completion of token ids (no visual input).
pub fn generate_from_ids(model: &Llama, prompt: &[u32], cfg: &GenerateConfig) -> Result<Vec<u32>> {
    let ids = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
    generate_greedy(model, &model.embed(&ids)?, &ForwardOptions::default(), cfg)
}

fn argmax_last(logits: &Tensor) -> Result<u32> {
    let t = logits.dim(1)?;
    Ok(logits
        .i((0, t - 1))?
        .argmax(D::Minus1)?
        .to_scalar::<u32>()?)
}
