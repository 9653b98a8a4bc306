//! LLaMA's SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear_no_bias, Linear, VarBuilder};

/// The gated MLP of a decoder layer (`mlp.{gate,up,down}_proj`), also reused by I_M sub-blocks.
#[derive(Clone, Debug)]
pub struct SwiGlu {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl SwiGlu {
    /// Builds from `vb` rooted at the MLP (`…mlp`), with candle's default initialisation.
    pub fn new(hidden: usize, intermediate: usize, vb: VarBuilder) -> Result<Self> {
        Ok(SwiGlu {
            gate: linear_no_bias(hidden, intermediate, vb.pp("gate_proj"))?,
            up: linear_no_bias(hidden, intermediate, vb.pp("up_proj"))?,
            down: linear_no_bias(intermediate, hidden, vb.pp("down_proj"))?,
        })
    }

    /// Builds from explicit projections (I_M sub-blocks use their own initialisation).
    pub fn from_parts(gate: Linear, up: Linear, down: Linear) -> Self {
        SwiGlu { gate, up, down }
    }

    /// The weights under their HF names relative to this module.
    pub fn named_tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((
            format!("{prefix}.gate_proj.weight"),
            self.gate.weight().clone(),
        ));
        out.push((format!("{prefix}.up_proj.weight"), self.up.weight().clone()));
        out.push((
            format!("{prefix}.down_proj.weight"),
            self.down.weight().clone(),
        ));
    }
}

impl Module for SwiGlu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.gate.forward(x)?.silu()?;
        self.down.forward(&(g * self.up.forward(x)?)?)
    }
}
