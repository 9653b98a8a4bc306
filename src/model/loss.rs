//! Cross-entropy with ignored positions (candle's `cross_entropy` has no `ignore_index`).
//!
//! Labels follow HF/LLaVA: an integer tensor where [`IGNORE_INDEX`] (-100) marks positions that
//! do not count (prompt, image and padding tokens). The loss is the mean negative
//! log-likelihood over the non-ignored positions, computed in f32 (f64 for f64 logits) whatever
//! the logits' dtype.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

pub use crate::data::IGNORE_INDEX;

/// Sum of the negative log-likelihoods over non-ignored positions and how many there were.
///
/// `logits`: `[..., V]`; `labels`: the same leading shape, any integer dtype (or f32/f64 holding
/// integers). Labels other than [`IGNORE_INDEX`] must lie in `0..V`.
pub fn masked_nll_sum(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, usize)> {
    let v = logits.dim(D::Minus1)?;
    let lead = &logits.dims()[..logits.rank() - 1];
    if labels.dims() != lead {
        bail!(
            "labels {:?} do not match logits {:?} (expected labels of shape {lead:?})",
            labels.dims(),
            logits.dims()
        );
    }
    let n: usize = lead.iter().product();
    let labels = labels.to_dtype(DType::I64)?.reshape(n)?;
    let host = labels.to_vec1::<i64>()?;
    if let Some((i, bad)) = host
        .iter()
        .enumerate()
        .find(|(_, &l)| l != IGNORE_INDEX && (l < 0 || l as usize >= v))
    {
        bail!(
            "label {bad} at flat position {i} is outside the vocabulary 0..{v} (use {IGNORE_INDEX} to ignore a position)"
        );
    }
    let count = host.iter().filter(|&&l| l != IGNORE_INDEX).count();
    let keep = labels.ne(IGNORE_INDEX)?;
    let safe = keep
        .where_cond(&labels, &labels.zeros_like()?)?
        .to_dtype(DType::U32)?;
    let cdt = if logits.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let logp = candle_nn::ops::log_softmax(&logits.reshape((n, v))?.to_dtype(cdt)?, D::Minus1)?;
    let nll = logp.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let sum = (nll * keep.to_dtype(cdt)?)?.sum_all()?;
    Ok((sum, count))
}

/// Mean cross-entropy over the positions whose label is not [`IGNORE_INDEX`].
///
/// An all-ignored batch is an error (PyTorch would return NaN and poison the run).
pub fn masked_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (sum, count) = masked_nll_sum(logits, labels)?;
    if count == 0 {
        bail!(
            "every label is {IGNORE_INDEX} (ignored): the batch has no target token; check the \
             template masking or the truncation length"
        );
    }
    Ok((sum / count as f64)?)
}

/// Causal-LM loss as HF's `LlamaForCausalLM`: logits at position t predict label t+1.
///
/// `logits`: `[B, T, V]`; `labels`: `[B, T]` aligned with the input ids.
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (_, t, _) = logits.dims3()?;
    if t < 2 {
        bail!("causal LM loss needs sequences of at least 2 tokens, got {t}");
    }
    masked_cross_entropy(&logits.narrow(1, 0, t - 1)?, &labels.narrow(1, 1, t - 1)?)
}
