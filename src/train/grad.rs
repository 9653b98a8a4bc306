//! Gradient utilities candle lacks: global-norm clipping, accumulation over micro-batches, and
//! a check that gradients actually reached the trainable parameters (candle's fused ops return
//! no gradient silently; candle.md §3).

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Var};

/// Global L2 norm of the gradients of `vars` (vars without a gradient count as zero).
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// Scales the gradients of `vars` so their global L2 norm is at most `max_norm` and returns the
/// norm *before* clipping (PyTorch's `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)`,
/// applied only when it is below 1). A non-finite norm is returned as is and nothing is scaled,
/// so the caller can skip the step and report it.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads, vars)?;
    if !norm.is_finite() {
        return Ok(norm);
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * coef)?);
            }
        }
    }
    Ok(norm)
}

/// Sums the gradients of a fixed set of variables over micro-batches.
///
/// Only the tracked variables' gradients are kept (a backward pass's `GradStore` also holds the
/// gradient of every intermediate tensor, which would waste memory across micro-batches).
pub struct GradAccumulator {
    vars: Vec<Var>,
    sum: GradStore,
    micro_batches: usize,
}

impl GradAccumulator {
    pub fn new(vars: Vec<Var>) -> Self {
        Self {
            vars,
            sum: GradStore::default(),
            micro_batches: 0,
        }
    }

    /// Adds one micro-batch's gradients.
    pub fn add(&mut self, mut grads: GradStore) -> Result<()> {
        for v in &self.vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                let g = g.detach();
                let total = match self.sum.remove(v.as_tensor()) {
                    Some(s) => (s + g)?,
                    None => g,
                };
                self.sum.insert(v.as_tensor(), total);
            }
        }
        self.micro_batches += 1;
        Ok(())
    }

    /// Micro-batches added so far.
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// The accumulated gradients times `scale` (e.g. `1 / micro_batches` when every
    /// micro-batch loss is a mean, as HF's Trainer does). Resets the accumulator.
    pub fn take(&mut self, scale: f64) -> Result<GradStore> {
        let mut out = GradStore::default();
        for v in &self.vars {
            if let Some(g) = self.sum.remove(v.as_tensor()) {
                out.insert(v.as_tensor(), (g * scale)?);
            }
        }
        self.micro_batches = 0;
        Ok(out)
    }
}

/// Names of the variables that received no gradient: a non-empty answer after the first
/// backward pass means the graph is cut somewhere (a fused op without backward, a detach).
pub fn missing_grads(grads: &GradStore, named: &[(String, Var)]) -> Vec<String> {
    named
        .iter()
        .filter(|(_, v)| grads.get(v.as_tensor()).is_none())
        .map(|(n, _)| n.clone())
        .collect()
}

/// Multiplies every tracked gradient by `scale` in place.
pub fn scale_grads(grads: &mut GradStore, vars: &[Var], scale: f64) -> Result<()> {
    for v in vars {
        if let Some(g) = grads.remove(v.as_tensor()) {
            grads.insert(v.as_tensor(), (g * scale)?);
        }
    }
    Ok(())
}
