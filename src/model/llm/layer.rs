//! One LLaMA decoder layer, with an optional I_M sub-block in one of three placements.

use super::attention::SelfAttention;
use super::config::LlamaConfig;
use super::cross_attn::{CrossAttnBlock, XAttnPlacement};
use super::mlp::SwiGlu;
use super::norm::RmsNorm;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `model.layers.{i}`: pre-norm self-attention and SwiGLU MLP, each with a residual.
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: SelfAttention,
    post_attention_layernorm: RmsNorm,
    mlp: SwiGlu,
}

/// What an I_M sub-block needs inside a layer for one pass.
pub(crate) struct XAttnStep<'a> {
    pub block: &'a CrossAttnBlock,
    pub placement: XAttnPlacement,
    pub kv: &'a (Tensor, Tensor),
    pub mask: Option<&'a Tensor>,
}

impl DecoderLayer {
    /// Builds from `vb` rooted at `model.layers.{i}`.
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::new(h, eps, vb.pp("input_layernorm"))?,
            self_attn: SelfAttention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(h, eps, vb.pp("post_attention_layernorm"))?,
            mlp: SwiGlu::new(h, cfg.intermediate_size, vb.pp("mlp"))?,
        })
    }

    /// Appends the weights under their HF names below `prefix`.
    pub fn named_tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((
            format!("{prefix}.input_layernorm.weight"),
            self.input_layernorm.weight().clone(),
        ));
        self.self_attn
            .named_tensors(&format!("{prefix}.self_attn"), out);
        out.push((
            format!("{prefix}.post_attention_layernorm.weight"),
            self.post_attention_layernorm.weight().clone(),
        ));
        self.mlp.named_tensors(&format!("{prefix}.mlp"), out);
    }

    /// `h` `[B, T, H]` → `[B, T, H]`. Norms are `super::norm::RmsNorm` (fused value, our backward).
    pub(crate) fn forward(
        &self,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        xattn: Option<XAttnStep<'_>>,
    ) -> Result<Tensor> {
        let attn = |u: &Tensor, cache| self.self_attn.forward(u, cos, sin, mask, cache);
        let mlp_residual = |h1: Tensor| -> Result<Tensor> {
            let v = self.post_attention_layernorm.forward(&h1)?;
            h1 + self.mlp.forward(&v)?
        };
        let u = self.input_layernorm.forward(h)?;
        let Some(x) = xattn else {
            return mlp_residual((h + attn(&u, cache)?)?);
        };
        match x.placement {
            XAttnPlacement::Pre => {
                let u = (&u + x.block.gated_attn(&u, x.kv, x.mask)?)?;
                let u = (&u + x.block.gated_mlp(&u)?)?;
                mlp_residual((h + attn(&u, cache)?)?)
            }
            XAttnPlacement::Post => {
                let h1 = (h + attn(&u, cache)?)?;
                let h1 = (&h1 + x.block.gated_attn(&x.block.attn_norm(&h1)?, x.kv, x.mask)?)?;
                let h1 = (&h1 + x.block.gated_mlp(&x.block.mlp_norm(&h1)?)?)?;
                mlp_residual(h1)
            }
            XAttnPlacement::Parallel => {
                let h1 = ((h + attn(&u, cache)?)? + x.block.gated_attn(&u, x.kv, x.mask)?)?;
                let v = self.post_attention_layernorm.forward(&h1)?;
                (&h1 + self.mlp.forward(&v)?)? + x.block.gated_mlp(&v)?
            }
        }
    }
}
