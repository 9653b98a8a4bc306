//! The pre-norm transformer layer shared by CLIP and SigLIP (HF `CLIPEncoderLayer` /
//! `SiglipEncoderLayer`): `x + attn(ln1(x))`, then `h + mlp(ln2(h))`.
//!
//! Every op here has a backward unless [`Kernels::Fused`] is chosen: candle's fused layer-norm
//! and `softmax_last_dim` kernels silently cut the autograd graph (candle.md §3), so they are
//! only for frozen inference. The default kernels are our own single-pass ops with a backward
//! (`super::ops`).

use super::config::{VisionActivation, VisionConfig};
use candle_core::{Module, Result, Tensor};
use candle_nn::{init, Init, Linear, VarBuilder};

/// Which kernels the tower uses for layer norm and softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Single-pass ops with a backward (`super::ops`): gradients reach every weight and the pixels.
    #[default]
    Differentiable,
    /// candle's fused CPU/GPU kernels; no backward, for frozen towers only.
    Fused,
}

/// LayerNorm with weight and bias, as HF stores it.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", Init::Const(0.0))?;
        Ok(LayerNorm { weight, bias, eps })
    }

    pub fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        match kernels {
            Kernels::Differentiable => {
                crate::model::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
            }
            Kernels::Fused => candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            ),
        }
    }

    pub(crate) fn dtype(&self) -> candle_core::DType {
        self.weight.dtype()
    }

    pub(crate) fn device(&self) -> &candle_core::Device {
        self.weight.device()
    }

    pub(crate) fn collect(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((format!("{prefix}.weight"), self.weight.clone()));
        out.push((format!("{prefix}.bias"), self.bias.clone()));
    }
}

fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    // HF initialises these with N(0, 0.02); candle's default (Kaiming) is fine for training from
    // scratch too, but the smaller scale keeps a deep random tower's activations tame.
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        init::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

fn collect_linear(l: &Linear, prefix: &str, out: &mut Vec<(String, Tensor)>) {
    out.push((format!("{prefix}.weight"), l.weight().clone()));
    if let Some(b) = l.bias() {
        out.push((format!("{prefix}.bias"), b.clone()));
    }
}

/// Multi-head self-attention over all tokens (vision towers use no mask).
#[derive(Clone, Debug)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(SelfAttention {
            q_proj: linear(d, d, vb.pp("q_proj"))?,
            k_proj: linear(d, d, vb.pp("k_proj"))?,
            v_proj: linear(d, d, vb.pp("v_proj"))?,
            out_proj: linear(d, d, vb.pp("out_proj"))?,
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let heads = |p: &Linear| -> Result<Tensor> {
            p.forward(x)?
                .reshape((b, t, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = (heads(&self.q_proj)? * scale)?;
        let k = heads(&self.k_proj)?;
        let v = heads(&self.v_proj)?;
        let scores = q.matmul(&k.t()?)?;
        let probs = match kernels {
            Kernels::Differentiable => crate::model::ops::softmax_last_dim(&scores)?,
            Kernels::Fused => candle_nn::ops::softmax_last_dim(&scores)?,
        };
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out_proj.forward(&ctx)
    }

    fn collect(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        collect_linear(&self.q_proj, &format!("{prefix}.q_proj"), out);
        collect_linear(&self.k_proj, &format!("{prefix}.k_proj"), out);
        collect_linear(&self.v_proj, &format!("{prefix}.v_proj"), out);
        collect_linear(&self.out_proj, &format!("{prefix}.out_proj"), out);
    }
}

fn activate(act: VisionActivation, x: &Tensor) -> Result<Tensor> {
    match act {
        VisionActivation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
        VisionActivation::GeluTanh => x.gelu(),
        VisionActivation::Gelu => x.gelu_erf(),
    }
}

/// One encoder layer.
#[derive(Clone, Debug)]
pub struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: SelfAttention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: VisionActivation,
}

impl EncoderLayer {
    /// Builds layer `encoder.layers.{i}` from `vb` (already pointing at that prefix).
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<EncoderLayer> {
        Ok(EncoderLayer {
            layer_norm1: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            self_attn: SelfAttention::new(cfg, vb.pp("self_attn"))?,
            layer_norm2: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: linear(cfg.hidden_size, cfg.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: linear(cfg.intermediate_size, cfg.hidden_size, vb.pp("mlp.fc2"))?,
            act: cfg.hidden_act,
        })
    }

    /// `[batch, tokens, dim]` → same shape.
    pub fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        let h = (x + self
            .self_attn
            .forward(&self.layer_norm1.forward(x, kernels)?, kernels)?)?;
        let m = self.fc1.forward(&self.layer_norm2.forward(&h, kernels)?)?;
        let m = self.fc2.forward(&activate(self.act, &m)?)?;
        h + m
    }

    pub(crate) fn collect(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        self.layer_norm1
            .collect(&format!("{prefix}.layer_norm1"), out);
        self.self_attn.collect(&format!("{prefix}.self_attn"), out);
        self.layer_norm2
            .collect(&format!("{prefix}.layer_norm2"), out);
        collect_linear(&self.fc1, &format!("{prefix}.mlp.fc1"), out);
        collect_linear(&self.fc2, &format!("{prefix}.mlp.fc2"), out);
    }
}
