//! Batched generation: several (image?, prompt) pairs answered in one left-padded greedy decode.
//!
//! With small models, one prompt at a time is dominated by per-op overhead (every layer runs a
//! handful of tiny matmuls per token); a batch shares each op between its rows. Batching must
//! not change answers, so every row is built exactly as [`Mllm::generate_ids`] builds it alone:
//!
//! 1. Tower: one call on the stacked pixels of the rows that have an image; text-only rows get
//!    zero features (as alone: the tower is not run for them).
//! 2. Fusion ([`Mllm::fuse`]) on the batch: row-independent; I_M features are zeroed on
//!    text-only rows, as for a text-only row alone.
//! 3. [`splice`] the visual tokens into each row (right-padded), cut each row back to its real
//!    length and [`left_pad`] the rows, so every row's last prompt token sits at the end.
//! 4. Shift each row's visual span by its padding: I_D injections land on the same tokens as
//!    alone. I_M inputs are per row and position-free (their causal visibility mask reads the
//!    per-row positions that [`generate_greedy_batch`] derives from the attention mask).
//! 5. [`generate_greedy_batch`]: positions count real tokens only, padding is never attended.

use super::{image_position, splice, Mllm};
use crate::model::llm::{
    first_logits_batch, generate_greedy_batch, left_pad, CrossAttn, CrossAttnInputs,
    ForwardOptions, GenerateConfig, Injections,
};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;

/// One prompt of a batch, as [`Mllm::generate_ids`] takes it: token ids with at most one
/// `IMAGE_TOKEN_INDEX`, and the pixels `[1, 3, H, W]` that fill it.
#[derive(Clone, Copy, Debug)]
pub struct PromptIds<'a> {
    pub pixels: Option<&'a Tensor>,
    pub ids: &'a [i64],
}

/// A left-padded batch ready for the LLM: embeddings `[B, T, H]`, attention mask `[B, T]` and
/// the fusion hooks in padded coordinates.
struct Padded {
    embeds: Tensor,
    mask: Tensor,
    injections: Option<Injections>,
    xattn: Option<CrossAttnInputs>,
}

impl Mllm {
    /// Greedy decoding of several prompts in one batch; row `i` of the result is what
    /// [`Mllm::generate_ids`] returns for `prompts[i]` alone.
    pub fn generate_ids_batch(
        &self,
        prompts: &[PromptIds<'_>],
        max_new_tokens: usize,
    ) -> Result<Vec<Vec<u32>>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let padded = self.pad_prompts(prompts)?;
        generate_greedy_batch(
            &self.llm,
            &padded.embeds,
            &padded.mask,
            &self.options(&padded),
            &GenerateConfig::for_model(&self.llm, max_new_tokens),
        )
    }

    /// The `[B, vocab]` f32 logits of each prompt's first generated token, computed by the same
    /// padded prefill as [`Mllm::generate_ids_batch`] (for checking it against the unpadded
    /// forward pass).
    pub fn first_logits_batch(&self, prompts: &[PromptIds<'_>]) -> Result<Tensor> {
        let padded = self.pad_prompts(prompts)?;
        first_logits_batch(
            &self.llm,
            &padded.embeds,
            &padded.mask,
            &self.options(&padded),
        )
    }

    /// Greedy completions of several `(image, prompt)` pairs (prompts in the conversation
    /// template, `<image>` where the image goes), decoded without special tokens; element `i`
    /// equals [`Mllm::generate`] on pair `i` alone.
    pub fn generate_batch(
        &self,
        items: &[(Option<&image::RgbImage>, &str)],
        max_new_tokens: usize,
    ) -> Result<Vec<String>> {
        let ids = items
            .iter()
            .map(|(_, p)| self.tokenizer.encode_prompt(p))
            .collect::<Result<Vec<_>, _>>()?;
        let pixels = items
            .iter()
            .map(|(img, _)| img.map(|i| self.pixels(i)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let prompts: Vec<PromptIds> = ids
            .iter()
            .zip(&pixels)
            .map(|(ids, px)| PromptIds {
                pixels: px.as_ref(),
                ids,
            })
            .collect();
        self.generate_ids_batch(&prompts, max_new_tokens)?
            .into_iter()
            .map(|out| {
                let out: Vec<i64> = out.into_iter().map(i64::from).collect();
                Ok(self.tokenizer.decode(&out)?)
            })
            .collect()
    }

    fn options<'a>(&'a self, padded: &'a Padded) -> ForwardOptions<'a> {
        ForwardOptions {
            injections: padded.injections.as_ref(),
            cross_attn: match (&self.xattn, &padded.xattn) {
                (Some(blocks), Some(inputs)) => Some(CrossAttn { blocks, inputs }),
                _ => None,
            },
            ..Default::default()
        }
    }

    /// The tower's selected hidden states for the batch (`[B, n, dv]` per index, zeros on
    /// text-only rows) from one tower call on the rows that have an image, and the image flags.
    fn batch_features(&self, prompts: &[PromptIds<'_>]) -> Result<(Vec<Tensor>, Vec<bool>)> {
        let mut has_image = Vec::with_capacity(prompts.len());
        let mut pixels = Vec::new();
        for (r, p) in prompts.iter().enumerate() {
            let has = image_position(p.ids).with_context(|| format!("prompt {r} of the batch"))?;
            match (p.pixels, has.is_some()) {
                (Some(px), true) => pixels.push(px.clone()),
                (None, false) => {}
                (Some(_), false) => {
                    bail!("prompt {r} of the batch: an image was given but it holds no <image>")
                }
                (None, true) => {
                    bail!("prompt {r} of the batch holds <image> but no image was given")
                }
            }
            has_image.push(has.is_some());
        }
        if pixels.is_empty() {
            return Ok((self.zero_features(prompts.len())?, has_image));
        }
        let feats = self.image_features(&Tensor::cat(&pixels, 0)?)?;
        if pixels.len() == prompts.len() {
            return Ok((feats, has_image));
        }
        let zeros = self.zero_features(1)?;
        let features = feats
            .iter()
            .zip(&zeros)
            .map(|(f, z)| {
                let mut next_image = 0;
                let rows = has_image
                    .iter()
                    .map(|&has| {
                        if has {
                            next_image += 1;
                            f.narrow(0, next_image - 1, 1)
                        } else {
                            Ok(z.clone())
                        }
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Ok(Tensor::cat(&rows, 0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((features, has_image))
    }

    /// Steps 1–4 of the module doc: features, fusion, splice, left padding, shifted hooks.
    fn pad_prompts(&self, prompts: &[PromptIds<'_>]) -> Result<Padded> {
        let (features, has_image) = self.batch_features(prompts)?;
        let (tokens, injections) = self.fuse(&features, &has_image)?;
        let ids: Vec<&[i64]> = prompts.iter().map(|p| p.ids).collect();
        let spliced = splice(&self.llm, &ids, None, &tokens)?;
        let rows = spliced
            .lengths
            .iter()
            .enumerate()
            .map(|(r, &len)| spliced.embeds.get(r)?.narrow(0, 0, len))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let (embeds, mask, pads) = left_pad(&rows)?;
        let mut spans = spliced.spans;
        for (start, pad) in spans.starts.iter_mut().zip(&pads) {
            *start += pad;
        }
        let (injections, xattn) = self.hooks(&spans, &injections)?;
        Ok(Padded {
            embeds,
            mask,
            injections,
            xattn,
        })
    }
}
