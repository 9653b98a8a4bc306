//! I_M hooks: gated cross-attention + gated MLP sub-blocks inside chosen decoder layers
//! (Flamingo's "gated xattn-dense", paper.md §1.4), with keys/values = a per-layer `[B, n_vis, H]`
//! tensor (the I_M projector's output for that layer).
//!
//! # Placement (`XAttnPlacement`), with `ga = tanh(attn_gate)`, `gm = tanh(mlp_gate)`
//! * `pre` (the paper's): `u = in_norm(h); u += ga·XAttn(u); u += gm·XMlp(u); h1 = h + SelfAttn(u);
//!   out = h1 + Mlp(post_norm(h1))`.
//! * `post`: `h1 = h + SelfAttn(in_norm(h)); h1 += ga·XAttn(attn_norm(h1)); h1 += gm·XMlp(mlp_norm(h1));
//!   out = h1 + Mlp(post_norm(h1))` (Flamingo's order, with the sub-block's own RMSNorms).
//! * `parallel`: `u = in_norm(h); h1 = h + SelfAttn(u) + ga·XAttn(u); v = post_norm(h1);
//!   out = h1 + Mlp(v) + gm·XMlp(v)`.
//!
//! The standard LLaMA residual stream is kept in every placement, so with both gates at zero (their
//! initial value) the layer computes exactly what the pretrained layer did. The official code
//! differs (paper.md §1.4): (i) its pre-cross layer takes the MLP residual from the post-norm
//! activations (`h2 = norm(h1); out = h2 + MLP(h2)`), so even zero gates change the LLM; (ii) its
//! cross-attention mask is the first `n_vis` columns of the causal mask, so text position t sees
//! image key j only if j ≤ t (available here as [`XAttnVisibility::Causal`]); (iii) every position,
//! text and image alike, queries the image (kept here too).
//!
//! Cross-attention is plain multi-head attention (q, k, v, o: H×H, no RoPE); the MLP is a SwiGLU of
//! the LLM's width. Weights are initialised N(0, 0.02) as in the official code, gates at 0. Note
//! that with zero gates the sub-block weights receive zero gradient; the gates do not, so they move
//! first and the rest follows.

use super::attention::{attend, MASKED};
use super::config::LlamaConfig;
use super::mlp::SwiGlu;
use super::norm::RmsNorm;
use super::rope::Positions;
use anyhow::{bail, Context};
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the sub-block sits relative to self-attention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XAttnPlacement {
    /// Before self-attention, on the normed input (the paper's released variant).
    #[default]
    Pre,
    /// After self-attention's residual (Flamingo).
    Post,
    /// Alongside self-attention and the MLP.
    Parallel,
}

/// Which image keys a query position may attend to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XAttnVisibility {
    /// Every position sees the whole image (Flamingo; the default: the image is not a sequence
    /// the text should read causally).
    #[default]
    Full,
    /// The official code's mask: absolute position t sees image key j only if j ≤ t.
    Causal,
}

/// Options shared by all I_M sub-blocks of a model (the manifest's `[i_m]` section; unknown
/// fields are errors, so a typo there is not silently the default).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossAttnConfig {
    #[serde(default)]
    pub placement: XAttnPlacement,
    #[serde(default)]
    pub visibility: XAttnVisibility,
    /// Standard deviation of the weights' normal initialisation.
    #[serde(default = "default_std")]
    pub init_std: f64,
}

fn default_std() -> f64 {
    0.02
}

impl Default for CrossAttnConfig {
    fn default() -> Self {
        CrossAttnConfig {
            placement: XAttnPlacement::Pre,
            visibility: XAttnVisibility::Full,
            init_std: 0.02,
        }
    }
}

/// One gated cross-attention + MLP sub-block (`model.layers.{i}.xattn.*`).
#[derive(Clone, Debug)]
pub struct CrossAttnBlock {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    mlp: SwiGlu,
    attn_gate: Tensor,
    mlp_gate: Tensor,
    /// `post` placement only: norms of the residual stream before each gated branch.
    norms: Option<(RmsNorm, RmsNorm)>,
    heads: usize,
    head_dim: usize,
}

fn linear(inp: usize, out: usize, std: f64, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints(
        (out, inp),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    Ok(Linear::new(w, None))
}

impl CrossAttnBlock {
    /// Creates (or loads, depending on `vb`) the sub-block; `vb` points at `model.layers.{i}.xattn`.
    pub fn new(cfg: &LlamaConfig, opts: &CrossAttnConfig, vb: VarBuilder) -> Result<Self> {
        let (h, f, s) = (cfg.hidden_size, cfg.intermediate_size, opts.init_std);
        let heads = cfg.num_attention_heads;
        if h % heads != 0 {
            candle_core::bail!(
                "I_M cross-attention: hidden size {h} not divisible by {heads} heads"
            );
        }
        let m = vb.pp("mlp");
        let mlp = SwiGlu::from_parts(
            linear(h, f, s, m.pp("gate_proj"))?,
            linear(h, f, s, m.pp("up_proj"))?,
            linear(f, h, s, m.pp("down_proj"))?,
        );
        let norms = if opts.placement == XAttnPlacement::Post {
            Some((
                RmsNorm::new(h, cfg.rms_norm_eps, vb.pp("attn_norm"))?,
                RmsNorm::new(h, cfg.rms_norm_eps, vb.pp("mlp_norm"))?,
            ))
        } else {
            None
        };
        Ok(CrossAttnBlock {
            q: linear(h, h, s, vb.pp("q_proj"))?,
            k: linear(h, h, s, vb.pp("k_proj"))?,
            v: linear(h, h, s, vb.pp("v_proj"))?,
            o: linear(h, h, s, vb.pp("o_proj"))?,
            mlp,
            attn_gate: vb.get_with_hints(1, "attn_gate", Init::Const(0.0))?,
            mlp_gate: vb.get_with_hints(1, "mlp_gate", Init::Const(0.0))?,
            norms,
            heads,
            head_dim: h / heads,
        })
    }

    /// Keys and values `[B, heads, n_vis, head_dim]` of the image features `[B, n_vis, H]`.
    pub(crate) fn project_kv(&self, feats: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, n, _) = feats.dims3()?;
        let feats = feats.to_dtype(self.q.weight().dtype())?;
        let split = |y: Tensor| {
            y.reshape((b, n, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        Ok((
            split(self.k.forward(&feats)?)?,
            split(self.v.forward(&feats)?)?,
        ))
    }

    /// `tanh(attn_gate) · XAttn(x)`, returned in `x`'s dtype whatever dtype the sub-block's
    /// weights have (a trainable f32 sub-block inside a bf16 LLM works).
    pub(crate) fn gated_attn(
        &self,
        x: &Tensor,
        kv: &(Tensor, Tensor),
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let q = self
            .q
            .forward(&x.to_dtype(self.weight_dtype())?)?
            .reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let out = attend(&q, &kv.0, &kv.1, mask, self.head_dim)?;
        let out = self.o.forward(&out.transpose(1, 2)?.reshape((
            b,
            t,
            self.heads * self.head_dim,
        ))?)?;
        out.broadcast_mul(&self.attn_gate.tanh()?)?
            .to_dtype(x.dtype())
    }

    /// `tanh(mlp_gate) · XMlp(x)`, in `x`'s dtype.
    pub(crate) fn gated_mlp(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.mlp.forward(&x.to_dtype(self.weight_dtype())?)?;
        out.broadcast_mul(&self.mlp_gate.tanh()?)?
            .to_dtype(x.dtype())
    }

    fn weight_dtype(&self) -> candle_core::DType {
        self.q.weight().dtype()
    }

    pub(crate) fn attn_norm(&self, x: &Tensor) -> Result<Tensor> {
        match &self.norms {
            Some((n, _)) => n
                .forward(&x.to_dtype(self.weight_dtype())?)?
                .to_dtype(x.dtype()),
            None => Ok(x.clone()),
        }
    }

    pub(crate) fn mlp_norm(&self, x: &Tensor) -> Result<Tensor> {
        match &self.norms {
            Some((_, n)) => n
                .forward(&x.to_dtype(self.weight_dtype())?)?
                .to_dtype(x.dtype()),
            None => Ok(x.clone()),
        }
    }
}

/// The I_M sub-blocks of a model, keyed by decoder layer; owned by the fusion module, whose
/// trainable `VarMap` holds the weights as `model.layers.{i}.xattn.*`.
#[derive(Clone, Debug)]
pub struct CrossAttnBlocks {
    opts: CrossAttnConfig,
    blocks: BTreeMap<usize, CrossAttnBlock>,
}

impl CrossAttnBlocks {
    /// One sub-block per layer in `layers` (0-based decoder indices); `vb` is the root of the
    /// trainable VarMap (names get the `model.layers.{i}.xattn.` prefix here).
    pub fn new(
        cfg: &LlamaConfig,
        layers: &[usize],
        opts: CrossAttnConfig,
        vb: VarBuilder,
    ) -> anyhow::Result<Self> {
        let mut blocks = BTreeMap::new();
        for &l in layers {
            if l >= cfg.num_hidden_layers {
                bail!(
                    "I_M sub-block for layer {l}, but the LLM has only {} layers",
                    cfg.num_hidden_layers
                );
            }
            let block = CrossAttnBlock::new(cfg, &opts, vb.pp(format!("model.layers.{l}.xattn")))
                .with_context(|| format!("creating the I_M sub-block of layer {l}"))?;
            blocks.insert(l, block);
        }
        Ok(CrossAttnBlocks { opts, blocks })
    }

    /// Placement, visibility and initialisation shared by every sub-block.
    pub fn config(&self) -> &CrossAttnConfig {
        &self.opts
    }

    /// Layers that have a sub-block, ascending.
    pub fn layers(&self) -> impl Iterator<Item = usize> + '_ {
        self.blocks.keys().copied()
    }

    pub(crate) fn get(&self, layer: usize) -> Option<&CrossAttnBlock> {
        self.blocks.get(&layer)
    }

    /// The visibility mask (`[1|B, 1, T, n_vis]`) for queries at `positions`, or `None` when every
    /// image key is visible to every query.
    pub(crate) fn mask(
        &self,
        positions: &Positions,
        n_vis: usize,
        dev: &Device,
    ) -> Result<Option<Tensor>> {
        if self.opts.visibility == XAttnVisibility::Full {
            return Ok(None);
        }
        let row = |ps: &mut dyn Iterator<Item = usize>| -> Vec<f32> {
            ps.flat_map(|p| (0..n_vis).map(move |j| if j <= p { 0.0 } else { MASKED }))
                .collect()
        };
        Ok(Some(match positions {
            Positions::Range { start, .. } if start + 1 >= n_vis => return Ok(None),
            Positions::Range { start, len } => {
                Tensor::from_vec(row(&mut (*start..start + len)), (1, 1, *len, n_vis), dev)?
            }
            Positions::Rows(rows) => {
                let t = rows.first().map_or(0, |r| r.len());
                let v = row(&mut rows.iter().flat_map(|r| r.iter().map(|&p| p as usize)));
                Tensor::from_vec(v, (rows.len(), 1, t, n_vis), dev)?
            }
        }))
    }
}

/// The I_M keys/values of one forward pass: per layer with a sub-block, a `[B, n_vis, H]` tensor.
#[derive(Clone, Debug, Default)]
pub struct CrossAttnInputs {
    pub by_layer: BTreeMap<usize, Tensor>,
}

impl CrossAttnInputs {
    /// No features yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the image features the sub-block of `layer` attends to.
    pub fn insert(&mut self, layer: usize, features: Tensor) -> &mut Self {
        self.by_layer.insert(layer, features);
        self
    }
}

/// The sub-blocks together with this pass's inputs, as `forward` takes them.
#[derive(Clone, Copy, Debug)]
pub struct CrossAttn<'a> {
    pub blocks: &'a CrossAttnBlocks,
    pub inputs: &'a CrossAttnInputs,
}

impl CrossAttn<'_> {
    /// Every sub-block has an input and every input a sub-block.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        for l in self.blocks.layers() {
            if !self.inputs.by_layer.contains_key(&l) {
                bail!("I_M: the sub-block of layer {l} has no image features in CrossAttnInputs");
            }
        }
        for l in self.inputs.by_layer.keys() {
            if self.blocks.get(*l).is_none() {
                bail!("I_M: CrossAttnInputs has features for layer {l}, which has no sub-block");
            }
        }
        Ok(())
    }
}
