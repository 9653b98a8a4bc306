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

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
