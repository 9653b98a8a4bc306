//! Rotary position embeddings (HF's "rotate half" layout), with linear and Llama-3 scaling.
//!
//! cos/sin are computed for exactly the positions a forward call needs, so memory does not grow
//! with `max_position_embeddings` (128k for Llama 3.1). The rotation itself goes through
//! `rope_slow`: candle's fused `rope` has no backward and would silently stop gradients.

use super::config::{LlamaConfig, RopeScaling};
use candle_core::{DType, Device, Result, Tensor, D};

/// Inverse frequencies, already rescaled.
#[derive(Clone, Debug)]
pub struct Rotary {
    inv_freq: Vec<f32>,
}

impl Rotary {
    /// The frequencies for `cfg`'s head size, theta and scaling.
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

    /// cos and sin in `dtype`: `[T, head_dim/2]` for a shared range of positions, or
    /// `[B, 1, T, head_dim/2]` for per-row positions.
    pub fn cos_sin(
        &self,
        positions: &Positions,
        dtype: DType,
        dev: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        // f32 like transformers (which computes position × inv_freq in float32).
        let angles = |ps: &mut dyn Iterator<Item = usize>| -> Vec<f32> {
            ps.flat_map(|p| self.inv_freq.iter().map(move |f| p as f32 * f))
                .collect()
        };
        let a = match positions {
            Positions::Range { start, len } => {
                Tensor::from_vec(angles(&mut (*start..start + len)), (*len, half), dev)?
            }
            Positions::Rows(rows) => {
                let (b, t) = (rows.len(), rows.first().map_or(0, |r| r.len()));
                let v = angles(&mut rows.iter().flat_map(|r| r.iter().map(|&p| p as usize)));
                Tensor::from_vec(v, (b, 1, t, half), dev)?
            }
        };
        Ok((a.cos()?.to_dtype(dtype)?, a.sin()?.to_dtype(dtype)?))
    }
}

/// Where the new tokens of a forward call sit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Positions {
    /// `start..start+len` for every row (the KV cache length onwards).
    Range { start: usize, len: usize },
    /// Per row, e.g. a left-padded batch whose real tokens start at position 0.
    Rows(Vec<Vec<u32>>),
}

/// Rotates `x` `[B, heads, T, head_dim]` by `cos`/`sin` from [`Rotary::cos_sin`] (differentiable:
/// candle's fused `rope` has no backward).
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    if cos.rank() == 2 {
        return candle_nn::rotary_emb::rope_slow(&x, cos, sin);
    }
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?;
    let d = x.dim(D::Minus1)?;
    let rotated = Tensor::cat(
        &[
            &x.narrow(D::Minus1, d / 2, d - d / 2)?.neg()?,
            &x.narrow(D::Minus1, 0, d / 2)?,
        ],
        D::Minus1,
    )?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}
