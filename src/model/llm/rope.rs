//! Rotary position embeddings (HF's "rotate half" layout), with linear and Llama-3 scaling.
//!
//! cos/sin are computed for exactly the positions a forward call needs, so memory does not grow
//! with `max_position_embeddings` (128k for Llama 3.1). The rotation itself goes through
//! `rope_slow`: candle's fused `rope` has no backward and would silently stop gradients.

use super::config::{LlamaConfig, RopeScaling};
use candle_core::{DType, Device, Result, Tensor};

/// Inverse frequencies, already rescaled.
#[derive(Clone, Debug)]
pub struct Rotary {
    inv_freq: Vec<f32>,
}

impl Rotary {
    pub fn new(cfg: &LlamaConfig) -> Self {
        let d = cfg.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        let inv_freq = match &cfg.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Rotary {
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
        }
    }

    /// cos and sin, each `[len, head_dim/2]`, for positions `start..start+len`, in `dtype`.
    pub fn cos_sin(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut angles = Vec::with_capacity(len * half);
        for p in start..start + len {
            // f32 like transformers (which computes position × inv_freq in float32).
            angles.extend(self.inv_freq.iter().map(|f| p as f32 * f));
        }
        let a = Tensor::from_vec(angles, (len, half), dev)?;
        Ok((a.cos()?.to_dtype(dtype)?, a.sin()?.to_dtype(dtype)?))
    }
}

/// Rotates `x` `[B, heads, T, head_dim]` by `cos`/`sin` `[T, head_dim/2]` (differentiable).
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    candle_nn::rotary_emb::rope_slow(&x.contiguous()?, cos, sin)
}
