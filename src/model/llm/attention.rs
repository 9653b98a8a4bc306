//! Grouped-query self-attention with RoPE, causal + padding masks and an optional KV cache.
//!
//! Scores, mask and softmax are computed in f32 whatever the weight dtype (as transformers
//! does), and softmax is `crate::model::ops::softmax_last_dim`: candle's fused kernel with a
//! backward of ours.

use super::config::LlamaConfig;
use super::rope;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{linear_no_bias, Linear, VarBuilder};

/// A large negative score for masked keys. Finite (unlike -inf) so a fully masked query row, e.g.
/// a left-padding position, gives a uniform distribution instead of NaN.
pub(crate) const MASKED: f32 = -1e9;

/// `self_attn.{q,k,v,o}_proj` of a decoder layer.
#[derive(Clone, Debug)]
pub struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    /// Builds from `vb` rooted at `model.layers.{i}.self_attn`.
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        Ok(SelfAttention {
            q: linear_no_bias(h, cfg.num_attention_heads * hd, vb.pp("q_proj"))?,
            k: linear_no_bias(h, cfg.num_key_value_heads * hd, vb.pp("k_proj"))?,
            v: linear_no_bias(h, cfg.num_key_value_heads * hd, vb.pp("v_proj"))?,
            o: linear_no_bias(cfg.num_attention_heads * hd, h, vb.pp("o_proj"))?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
        })
    }

    /// Appends the weights under their HF names below `prefix`.
    pub fn named_tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        for (n, l) in [
            ("q_proj", &self.q),
            ("k_proj", &self.k),
            ("v_proj", &self.v),
            ("o_proj", &self.o),
        ] {
            out.push((format!("{prefix}.{n}.weight"), l.weight().clone()));
        }
    }

    /// `x` `[B, T, H]` (already normed); `mask` additive f32 `[B|1, 1, T, past+T]` or `None` when
    /// every cached and new key is visible; `cache` holds this layer's past keys/values.
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let split = |y: Tensor, n: usize| -> Result<Tensor> {
            y.reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = rope::apply(&split(self.q.forward(x)?, self.heads)?, cos, sin)?;
        let mut k = rope::apply(&split(self.k.forward(x)?, self.kv_heads)?, cos, sin)?;
        let mut v = split(self.v.forward(x)?, self.kv_heads)?;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            // Detached: the cache serves inference, and a tracked copy would chain every step's
            // keys to the previous step's, keeping the whole history alive when weights are Vars.
            *slot = Some((k.detach(), v.detach()));
        }
        let groups = self.heads / self.kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, groups)?;
        let v = candle_transformers::utils::repeat_kv(v, groups)?;
        let out = attend(&q, &k, &v, mask, self.head_dim)?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.head_dim))?;
        self.o.forward(&out)
    }
}

/// softmax(q kᵀ / √d + mask) v, for `[B, heads, T, d]` queries and `[B, heads, S, d]` keys/values.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    head_dim: usize,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? / (head_dim as f64).sqrt())?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    let probs = crate::model::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(&v.contiguous()?)
}
