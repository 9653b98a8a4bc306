//! E_D, external direct fusion (paper.md §1.1, Dense-Connector style).
//!
//! Every group becomes one `[B, n, dv]` map (a single layer as is, several layers averaged:
//! Dense Connector's DCI for `former`/`latter`/`all`; SCI for sparse sets), the maps and then
//! the base layer are concatenated on the channel axis, and the projector
//! `P_{(g+1)·dv→d}` (names `mm_projector.{0,2}`) maps the result to the LLM width. The token
//! count is unchanged. Channel order: groups in `ResolvedLayers` order, base last, as the
//! official code (`[V3; V18; V23]`).

use super::projector::Projector;
use anyhow::Result;
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

/// Channel concatenation (or group means then concatenation) before a wider projector.
#[derive(Clone, Debug)]
pub struct ExternalDirect {
    projector: Projector,
    groups: usize,
}

impl ExternalDirect {
    /// Builds the projector `P_{(groups+1)·dv → d}`.
    pub fn new(dv: usize, d: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            projector: Projector::new((groups + 1) * dv, d, vb.pp("mm_projector"))?,
            groups,
        })
    }

    /// The channel-concatenated input of the projector, `[B, n, (g+1)·dv]`.
    pub fn concat(base: &Tensor, groups: &[Vec<&Tensor>]) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(groups.len() + 1);
        for g in groups {
            parts.push(if g.len() == 1 {
                g[0].clone()
            } else {
                (Tensor::stack(g, 0)?.sum(0)? / g.len() as f64)?
            });
        }
        parts.push(base.clone());
        Ok(Tensor::cat(&parts, 2)?)
    }

    /// `[B, n, d]` tokens for the `<image>` slots.
    pub fn forward(&self, base: &Tensor, groups: &[Vec<&Tensor>]) -> Result<Tensor> {
        anyhow::ensure!(
            groups.len() == self.groups,
            "E_D built for {} groups got {}",
            self.groups,
            groups.len()
        );
        Ok(self.projector.forward(&Self::concat(base, groups)?)?)
    }
}
