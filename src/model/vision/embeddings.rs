//! Patch embeddings (HF `CLIPVisionEmbeddings` / `SiglipVisionEmbeddings`).
//!
//! The patch "conv" has stride = kernel, so it is computed as patchify + one matmul against the
//! conv weight flattened over (channel, row, col). That is the same arithmetic as the conv, is
//! differentiable, and avoids im2col copies. A remainder of `image_size % patch_size` pixels on
//! the right and bottom is ignored, exactly as the strided conv ignores it.

use super::config::{VisionArch, VisionConfig};
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

#[derive(Clone, Debug)]
pub struct PatchEmbeddings {
    /// `[dim, channels, patch, patch]`, HF's conv layout.
    patch_weight: Tensor,
    /// SigLIP only.
    patch_bias: Option<Tensor>,
    /// CLIP only: `[dim]`.
    class_embedding: Option<Tensor>,
    /// `[tokens, dim]`.
    position_embedding: Tensor,
    patch: usize,
    grid: usize,
    channels: usize,
}

impl PatchEmbeddings {
    /// Builds from `vb` pointing at `…embeddings`.
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<PatchEmbeddings> {
        let (d, c, p) = (cfg.hidden_size, cfg.num_channels, cfg.patch_size);
        let fan_in = (c * p * p) as f64;
        let patch_weight = vb.get_with_hints(
            (d, c, p, p),
            "patch_embedding.weight",
            Init::Randn {
                mean: 0.0,
                stdev: fan_in.powf(-0.5),
            },
        )?;
        let (patch_bias, class_embedding) = match cfg.arch {
            VisionArch::Clip => {
                let cls = vb.get_with_hints(
                    d,
                    "class_embedding",
                    Init::Randn {
                        mean: 0.0,
                        stdev: (d as f64).powf(-0.5),
                    },
                )?;
                (None, Some(cls))
            }
            VisionArch::Siglip => (
                Some(vb.get_with_hints(d, "patch_embedding.bias", Init::Const(0.0))?),
                None,
            ),
        };
        let position_embedding = vb.get_with_hints(
            (cfg.num_tokens(), d),
            "position_embedding.weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        Ok(PatchEmbeddings {
            patch_weight,
            patch_bias,
            class_embedding,
            position_embedding,
            patch: p,
            grid: cfg.grid_size(),
            channels: c,
        })
    }

    /// `[batch, channels, image, image]` → `[batch, tokens, dim]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = pixels.dims4()?;
        let (g, p) = (self.grid, self.patch);
        let d = self.patch_weight.dim(0)?;
        let used = g * p;
        let patches = pixels
            .narrow(2, 0, used)?
            .narrow(3, 0, used)?
            .reshape(vec![b, c, g, p, g, p])?
            .permute(vec![0, 2, 4, 1, 3, 5])?
            .reshape((b, g * g, c * p * p))?;
        let w = self.patch_weight.reshape((d, self.channels * p * p))?;
        let mut x = patches.broadcast_matmul(&w.t()?)?;
        if let Some(bias) = &self.patch_bias {
            x = x.broadcast_add(bias)?;
        }
        if let Some(cls) = &self.class_embedding {
            let cls = cls.reshape((1, 1, d))?.broadcast_as((b, 1, d))?;
            x = Tensor::cat(&[&cls, &x], 1)?;
        }
        x.broadcast_add(&self.position_embedding)
    }

    pub(crate) fn collect(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((
            format!("{prefix}.patch_embedding.weight"),
            self.patch_weight.clone(),
        ));
        if let Some(b) = &self.patch_bias {
            out.push((format!("{prefix}.patch_embedding.bias"), b.clone()));
        }
        if let Some(c) = &self.class_embedding {
            out.push((format!("{prefix}.class_embedding"), c.clone()));
        }
        out.push((
            format!("{prefix}.position_embedding.weight"),
            self.position_embedding.clone(),
        ));
    }
}
