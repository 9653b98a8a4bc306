//! The evaluation engine's [`Generator`] for a trained [`Mllm`]: one image (or none) per
//! prompt, greedy decoding with the KV cache; batches go through [`Mllm::generate_batch`]
//! (one left-padded decode, same answers as one at a time).

use super::Mllm;
use crate::eval::{Generator, Request, TemplateKind};
use anyhow::{bail, Result};
use image::DynamicImage;

/// The RGB image of a sample, refusing more than one (LLaVA-1.5 takes one image per prompt).
fn single_image(images: &[DynamicImage]) -> Result<Option<image::RgbImage>> {
    if images.len() > 1 {
        bail!(
            "the model takes one image per prompt (LLaVA-1.5), the sample has {}",
            images.len()
        );
    }
    Ok(images.first().map(DynamicImage::to_rgb8))
}

impl Generator for Mllm {
    fn generate(
        &mut self,
        images: &[DynamicImage],
        prompt: &str,
        max_new_tokens: usize,
    ) -> Result<String> {
        let rgb = single_image(images)?;
        Mllm::generate(self, rgb.as_ref(), prompt, max_new_tokens)
    }

    fn generate_batch(
        &mut self,
        requests: &[Request<'_>],
        max_new_tokens: usize,
    ) -> Result<Vec<String>> {
        let images = requests
            .iter()
            .map(|r| single_image(r.images))
            .collect::<Result<Vec<_>>>()?;
        let items: Vec<(Option<&image::RgbImage>, &str)> = images
            .iter()
            .zip(requests)
            .map(|(img, r)| (img.as_ref(), r.prompt))
            .collect();
        Mllm::generate_batch(self, &items, max_new_tokens)
    }

    /// LLaVA's pad colour, the processor's mean: it normalises to ≈ 0 and is what the model saw
    /// around every padded training image, so a blank image of it carries no content.
    fn blank_fill(&self) -> [u8; 3] {
        self.processor.pad_background()
    }

    /// The template the model was trained with (recorded in `mllm.json`); for outputs that
    /// predate the record, `plain` straight out of pretraining and `vicuna_v1` after finetuning.
    fn template(&self) -> TemplateKind {
        match self.config().template {
            Some(t) => t,
            None if self.config().stage == "pretrain" => TemplateKind::Plain,
            None => TemplateKind::VicunaV1,
        }
    }
}
