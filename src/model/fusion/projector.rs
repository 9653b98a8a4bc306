//! LLaVA's `mlp2x_gelu` projector: `Linear(a, d) → GELU → Linear(d, d)`.
//!
//! Weight names follow `nn.Sequential` indices, as LLaVA checkpoints store them:
//! `{prefix}.0.weight [d, a]`, `{prefix}.0.bias [d]`, `{prefix}.2.weight [d, d]`, `{prefix}.2.bias [d]`
//! (index 1 is the parameter-free GELU). GELU is the exact (erf) form, PyTorch's `nn.GELU()` default.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

/// A `Linear` initialised like PyTorch's `nn.Linear` (weight and bias uniform in ±1/√fan_in).
pub fn torch_linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let b = 1.0 / (in_dim as f64).sqrt();
    let init = Init::Uniform { lo: -b, up: b };
    let w = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(w, Some(bias)))
}

/// The two-layer GELU MLP that maps vision features of width `a` to LLM width `d`.
#[derive(Clone, Debug)]
pub struct Projector {
    fc1: Linear,
    fc2: Linear,
    in_dim: usize,
    out_dim: usize,
}

impl Projector {
    /// Builds (or loads) a projector under `vb`'s current prefix.
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: torch_linear(in_dim, out_dim, vb.pp("0"))?,
            fc2: torch_linear(out_dim, out_dim, vb.pp("2"))?,
            in_dim,
            out_dim,
        })
    }

    /// Input width `a`.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output width `d`.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

impl Module for Projector {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(xs)?.gelu_erf()?)
    }
}

/// A LayerNorm over the last axis whose forward is differentiable.
///
/// `candle_nn::LayerNorm::forward` takes a fused kernel without backward when its input is
/// contiguous (candle.md §3), which would silently stop gradients to everything upstream; this
/// one uses `layer_norm_slow` (plain tensor ops). Names: `{prefix}.weight`, `{prefix}.bias`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Builds a LayerNorm of width `dim` (weight 1, bias 0 when fresh).
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm_slow(xs, &self.weight, &self.bias, self.eps as f32)
    }
}
