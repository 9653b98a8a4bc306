//! I_D hooks: features added to the hidden states at the visual-token positions, just before
//! chosen decoder layers run (paper.md §1.3: `h[b, s0:s0+n] += P_j(V_kj)[b]`).
//!
//! Injections apply only when the forward pass starts from an empty KV cache (training, or the
//! prefill of generation), exactly like the official code's `past_key_value is None` test: on
//! decode steps the visual positions are already in the cache.

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, D};
use std::collections::BTreeMap;

/// Where the visual tokens sit in each sequence of a batch: element `b` has `lens[b]` visual
/// tokens starting at position `starts[b]`. A text-only sample has length 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisualSpans {
    pub starts: Vec<usize>,
    pub lens: Vec<usize>,
}

impl VisualSpans {
    /// The same span for every element of a batch of `batch` sequences.
    pub fn uniform(batch: usize, start: usize, len: usize) -> Self {
        VisualSpans {
            starts: vec![start; batch],
            lens: vec![len; batch],
        }
    }

    /// Spans from an image-token mask `[B, T]` (non-zero = visual token), as the official code
    /// derives them: the first visual position and the number of visual positions per row. The
    /// visual tokens of a row must be contiguous.
    pub fn from_mask(mask: &Tensor) -> Result<Self> {
        let rows: Vec<Vec<u32>> = mask
            .ne(0u32 as f64)?
            .to_dtype(candle_core::DType::U32)?
            .to_vec2()
            .context("image-token mask must be [batch, seq]")?;
        let (mut starts, mut lens) = (Vec::new(), Vec::new());
        for (b, row) in rows.iter().enumerate() {
            let first = row.iter().position(|&m| m != 0).unwrap_or(0);
            let n = row.iter().filter(|&&m| m != 0).count();
            if row[first..first + n].contains(&0) {
                bail!("batch element {b}: the visual tokens are not contiguous");
            }
            starts.push(first);
            lens.push(n);
        }
        Ok(VisualSpans { starts, lens })
    }

    /// Number of sequences described.
    pub fn batch(&self) -> usize {
        self.starts.len()
    }

    /// Checks the spans fit a `[batch, seq_len]` sequence and `n_vis`-row features.
    pub fn check(&self, batch: usize, seq_len: usize, n_vis: usize) -> Result<()> {
        if self.starts.len() != batch || self.lens.len() != batch {
            bail!(
                "visual spans describe {} / {} sequences but the batch has {batch}",
                self.starts.len(),
                self.lens.len()
            );
        }
        for (b, (&s, &n)) in self.starts.iter().zip(&self.lens).enumerate() {
            if n > n_vis {
                bail!("batch element {b}: span of {n} visual tokens but the features have only {n_vis} rows");
            }
            if s + n > seq_len {
                bail!("batch element {b}: visual span {s}..{} runs past the sequence length {seq_len}", s + n);
            }
        }
        Ok(())
    }

    /// Scatters `features` `[B, n_vis, H]` into a zero `[B, seq_len, H]` tensor at the spans
    /// (differentiable: built from `narrow` and `cat`).
    pub fn scatter(&self, features: &Tensor, seq_len: usize) -> Result<Tensor> {
        let (b, n_vis, h) = features.dims3()?;
        self.check(b, seq_len, n_vis)?;
        let (dtype, dev) = (features.dtype(), features.device());
        let mut rows = Vec::with_capacity(b);
        for i in 0..b {
            let (s, n) = (self.starts[i], self.lens[i]);
            let mut parts = Vec::with_capacity(3);
            if s > 0 {
                parts.push(Tensor::zeros((s, h), dtype, dev)?);
            }
            if n > 0 {
                parts.push(features.get(i)?.narrow(0, 0, n)?);
            }
            if seq_len > s + n {
                parts.push(Tensor::zeros((seq_len - s - n, h), dtype, dev)?);
            }
            rows.push(Tensor::cat(&parts, 0)?);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// The I_D inputs of one forward pass: per target decoder layer, one or more `[B, n_vis, H]`
/// tensors (several injections into the same layer add up).
#[derive(Clone, Debug)]
pub struct Injections {
    spans: VisualSpans,
    by_layer: BTreeMap<usize, Vec<Tensor>>,
}

impl Injections {
    /// No injections yet; every later one uses these visual positions.
    pub fn new(spans: VisualSpans) -> Self {
        Injections {
            spans,
            by_layer: BTreeMap::new(),
        }
    }

    /// Adds `features` `[B, n_vis, H]` to the hidden states before decoder layer `layer` (0-based).
    pub fn add(&mut self, layer: usize, features: Tensor) -> Result<&mut Self> {
        let (b, _, _) = features.dims3().with_context(|| {
            format!("I_D injection into layer {layer} must be [batch, n_visual, hidden]")
        })?;
        if b != self.spans.batch() {
            bail!(
                "I_D injection into layer {layer} has batch {b}, the visual spans have {}",
                self.spans.batch()
            );
        }
        self.by_layer.entry(layer).or_default().push(features);
        Ok(self)
    }

    /// Where the injections land.
    pub fn spans(&self) -> &VisualSpans {
        &self.spans
    }

    /// The target layers, ascending.
    pub fn layers(&self) -> impl Iterator<Item = usize> + '_ {
        self.by_layer.keys().copied()
    }

    /// `hidden` `[B, T, H]` plus every injection targeting `layer` (unchanged if none).
    pub(crate) fn apply(&self, layer: usize, hidden: &Tensor) -> Result<Tensor> {
        let Some(feats) = self.by_layer.get(&layer) else {
            return Ok(hidden.clone());
        };
        let (_, t, h) = hidden.dims3()?;
        let mut sum = feats[0].clone();
        for f in &feats[1..] {
            sum = (sum + f)
                .with_context(|| format!("I_D injections into layer {layer} differ in shape"))?;
        }
        if sum.dim(D::Minus1)? != h {
            bail!(
                "I_D injection into layer {layer} has width {} but the LLM's hidden size is {h}",
                sum.dim(D::Minus1)?
            );
        }
        let delta = self
            .spans
            .scatter(&sum.to_dtype(hidden.dtype())?, t)
            .with_context(|| format!("I_D injection into layer {layer}"))?;
        Ok((hidden + delta)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn spans_from_an_image_token_mask() {
        let m = Tensor::new(&[[0u8, 1, 1, 1, 0], [0, 0, 0, 0, 0]], &Device::Cpu).unwrap();
        let s = VisualSpans::from_mask(&m).unwrap();
        assert_eq!(
            s,
            VisualSpans {
                starts: vec![1, 0],
                lens: vec![3, 0]
            }
        );
        let gap = Tensor::new(&[[1u8, 0, 1]], &Device::Cpu).unwrap();
        assert!(VisualSpans::from_mask(&gap)
            .unwrap_err()
            .to_string()
            .contains("contiguous"));
    }

    #[test]
    fn scatter_places_rows_and_pads_with_zeros() {
        let f = Tensor::new(&[[[1f32, 1.], [2., 2.]]], &Device::Cpu).unwrap();
        let s = VisualSpans {
            starts: vec![1],
            lens: vec![1],
        };
        let out: Vec<Vec<Vec<f32>>> = s.scatter(&f, 3).unwrap().to_vec3().unwrap();
        assert_eq!(out, vec![vec![vec![0., 0.], vec![1., 1.], vec![0., 0.]]]);
    }
}
