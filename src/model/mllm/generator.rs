//! The evaluation engine's [`Generator`] for a trained [`Mllm`]: one image (or none) per
//! prompt, greedy decoding with the KV cache.

use super::Mllm;
use crate::eval::{ConversationTemplate, Generator};
use anyhow::{bail, Result};
use image::DynamicImage;

impl Generator for Mllm {
    fn generate(
        &mut self,
        images: &[DynamicImage],
        prompt: &str,
        max_new_tokens: usize,
    ) -> Result<String> {
        if images.len() > 1 {
            bail!(
                "the model takes one image per prompt (LLaVA-1.5), the sample has {}",
                images.len()
            );
        }
        let rgb = images.first().map(DynamicImage::to_rgb8);
        Mllm::generate(self, rgb.as_ref(), prompt, max_new_tokens)
    }

    /// `plain` for a model straight out of pretraining (it never saw a chat template),
    /// `vicuna_v1` after finetuning.
    fn template(&self) -> ConversationTemplate {
        if self.config().stage == "pretrain" {
            ConversationTemplate::Plain
        } else {
            ConversationTemplate::VicunaV1
        }
    }
}
