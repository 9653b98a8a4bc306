//! The parts of internal fusion (I_D, I_M) that live outside the LLM (paper.md §1.3–1.4).
//!
//! The base layer goes through the input projector `P_f` (`mm_projector.{0,2}`) into the
//! `<image>` slots; injection j (vision layer k_j → LLM layer l_j) goes through its own fresh
//! projector `P_j` (`mm_projectors.{j}.{0,2}`). The LLM adds `P_j(V_{k_j})` at the visual
//! positions before layer l_j (I_D) or uses it as the keys/values of layer l_j's gated
//! cross-attention sub-block (I_M); those sub-blocks belong to the LLM, not to this module.

use super::projector::Projector;
use super::FusionOutput;
use anyhow::{ensure, Result};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

/// The input projector and one projector per injection.
#[derive(Clone, Debug)]
pub struct InternalFusion {
    input: Projector,
    per_injection: Vec<Projector>,
}

impl InternalFusion {
    pub fn new(dv: usize, d: usize, injections: usize, vb: VarBuilder) -> Result<Self> {
        let input = Projector::new(dv, d, vb.pp("mm_projector"))?;
        let bank = vb.pp("mm_projectors");
        let per_injection = (0..injections)
            .map(|j| Projector::new(dv, d, bank.pp(j)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            input,
            per_injection,
        })
    }

    /// `base` `[B, n, dv]`; `sources[j] = (llm_layer, V_{k_j})`.
    pub fn forward(&self, base: &Tensor, sources: &[(usize, &Tensor)]) -> Result<FusionOutput> {
        ensure!(
            sources.len() == self.per_injection.len(),
            "internal fusion built for {} injections got {}",
            self.per_injection.len(),
            sources.len()
        );
        let injections = sources
            .iter()
            .zip(&self.per_injection)
            .map(|((l, v), p)| Ok((*l, p.forward(v)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(FusionOutput {
            input_tokens: self.input.forward(base)?,
            injections,
        })
    }
}
