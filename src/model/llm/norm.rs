//! LLaMA's RMSNorm with a backward everywhere: the fused kernel's value plus our gradient on the
//! CPU, the composition elsewhere (`crate::model::ops::rms_norm`). candle_nn's `RmsNorm::forward`
//! is fused but cuts the autograd graph, and its `forward_diff` is a slow five-pass composition.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `weight` `[H]` and `eps`; loads as `<prefix>.weight` (initialised to ones when created).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            eps,
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Normalises the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::model::ops::rms_norm(x, &self.weight, self.eps)
    }
}
