//! The key/value cache of incremental decoding.

use candle_core::Tensor;

/// Per-layer keys and values of every position seen so far (before GQA expansion, after RoPE),
/// plus the projected image keys/values of I_M cross-attention, which do not change between
/// decode steps. One cache serves one batch of sequences; [`KvCache::reset`] starts over.
/// Cached tensors are detached: gradients flow within a forward call, never into earlier calls.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) self_attn: Vec<Option<(Tensor, Tensor)>>,
    pub(crate) cross_attn: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` decoder layers.
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            self_attn: vec![None; num_layers],
            cross_attn: vec![None; num_layers],
            len: 0,
        }
    }

    /// Number of positions already cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward call (or after a reset).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.self_attn.iter_mut().for_each(|s| *s = None);
        self.cross_attn.iter_mut().for_each(|s| *s = None);
        self.len = 0;
    }

    /// Keeps only the batch rows `rows` (u32 indices into the current batch, in the new order):
    /// a batched decode drops the sequences that have finished.
    pub(crate) fn select_rows(&mut self, rows: &Tensor) -> candle_core::Result<()> {
        for slot in self.self_attn.iter_mut().chain(self.cross_attn.iter_mut()) {
            if let Some((k, v)) = slot {
                *slot = Some((k.index_select(rows, 0)?, v.index_select(rows, 0)?));
            }
        }
        Ok(())
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
