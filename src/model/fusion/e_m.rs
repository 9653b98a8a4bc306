//! E_M, external modular fusion: the MMFuser block (Cao et al. 2024) before the projector.
//!
//! paper.md §1.2, with V_b the base layer and K the other selected layers (the "levels"):
//!
//! ```text
//! A   = DeformCrossAttn(q = LN_q(V_b), refs = patch centres, levels = LN_f(K_1), …, LN_f(K_L))
//! A'  = A + γ2 ⊙ DeformSelfAttn(LN_1(A))        (one level: LN_1(A) on the same grid)
//! out = V_b + γ1 ⊙ A'
//! X   = P_{dv→d}(out)
//! ```
//!
//! γ1, γ2 are per-channel and start at zero, so a fresh E_M is exactly the baseline projector
//! on V_b. No positional embeddings (the official code passes `pos=None`).
//!
//! Differences from the official code (EIT-NLP/Layer_Select_Fuse_for_MLLM, `ms_cross_attn.py`):
//! * SigLIP: the official tower drops the first patch token (728 of 729) and the block then
//!   reshapes the keys to a 26×28 grid while building 26×26 reference points for the queries
//!   (a shape mismatch). mlvf keeps all 729 tokens and uses the true 27×27 grid for queries and
//!   keys alike.
//! * The deformable sampling is bilinear interpolation in candle (see `deform.rs`), not the
//!   compiled CUDA op; results agree with `grid_sample(align_corners=False, padding="zeros")`.
//!
//! Parameter count: two deformable attentions (cross with L levels, self with 1), three
//! LayerNorms and two gates, no FFN: for CLIP-L × MobileLLaMA-1.4B this reproduces paper.md
//! §1.5 exactly (E_M 18 / 3-18-23 / former / all = 10.90 / 11.09 / 13.06 / 15.42 M with the
//! projector), so the block's structure matches the official one.
//!
//! Memory: the sampler gathers `4·L·P` value vectors of width dv/heads per query and head and
//! keeps them for the backward pass: B·heads·tokens·4·L·P·(dv/heads) scalars, i.e. about 0.9 GB
//! per CLIP-L image in f32 for `all` (L = 24), 75 MB for `3-18-23`; use micro-batches.
//!
//! Parameter names under `mm_fuser.`: `query_norm`, `feat_norm`, `norm1` (LayerNorms, eps
//! 1e-6), `cross_attn.*`, `self_attn.*` (Deformable-DETR names), `gamma1`, `gamma2` `[dv]`.

use super::deform::{reference_points, DeformAttn, Grid};
use super::projector::{LayerNorm, Projector};
use anyhow::{bail, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

/// Shape hyper-parameters of the MMFuser block.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MmFuserConfig {
    /// Attention heads; must divide the vision width (paper: 16).
    pub heads: usize,
    /// Sampling points per head and level (paper: 4).
    pub points: usize,
    /// LayerNorm epsilon (paper: 1e-6).
    pub eps: f64,
}

impl Default for MmFuserConfig {
    fn default() -> Self {
        Self {
            heads: 16,
            points: 4,
            eps: 1e-6,
        }
    }
}

/// The MMFuser block: deformable cross-attention from the base layer to the other layers, a
/// single-level deformable self-attention, and zero-initialised per-channel gates.
#[derive(Clone, Debug)]
pub struct MmFuser {
    query_norm: LayerNorm,
    feat_norm: LayerNorm,
    norm1: LayerNorm,
    cross_attn: DeformAttn,
    self_attn: DeformAttn,
    gamma1: Tensor,
    gamma2: Tensor,
    levels: usize,
}

impl MmFuser {
    /// Builds (or loads) the block for `levels` key layers of width `dim`.
    pub fn new(dim: usize, levels: usize, cfg: MmFuserConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.heads == 0 || dim % cfg.heads != 0 {
            bail!(
                "E_M: {} heads do not divide the vision width {dim}; choose a divisor of {dim}",
                cfg.heads
            );
        }
        Ok(Self {
            query_norm: LayerNorm::new(dim, cfg.eps, vb.pp("query_norm"))?,
            feat_norm: LayerNorm::new(dim, cfg.eps, vb.pp("feat_norm"))?,
            cross_attn: DeformAttn::new(dim, cfg.heads, levels, cfg.points, vb.pp("cross_attn"))?,
            norm1: LayerNorm::new(dim, cfg.eps, vb.pp("norm1"))?,
            self_attn: DeformAttn::new(dim, cfg.heads, 1, cfg.points, vb.pp("self_attn"))?,
            gamma1: vb.get_with_hints(dim, "gamma1", Init::Const(0.0))?,
            gamma2: vb.get_with_hints(dim, "gamma2", Init::Const(0.0))?,
            levels,
        })
    }

    /// Number of key levels.
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// The two deformable-attention modules (for fresh initialisation of their offset biases).
    pub fn attentions(&self) -> [(&'static str, &DeformAttn); 2] {
        [
            ("cross_attn", &self.cross_attn),
            ("self_attn", &self.self_attn),
        ]
    }

    /// Fuses `base` `[B, n, dv]` with `keys` (each `[B, n, dv]`, on the same square grid).
    pub fn forward(&self, base: &Tensor, keys: &[&Tensor]) -> Result<Tensor> {
        if keys.len() != self.levels {
            bail!(
                "E_M block built for {} levels got {}",
                self.levels,
                keys.len()
            );
        }
        let (_, n, _) = base.dims3()?;
        let grid = Grid::square(n)?;
        let refs = reference_points(grid, base.dtype(), base.device())?;
        let feats = Tensor::cat(keys, 1)?;
        let a = self.cross_attn.forward(
            &self.query_norm.forward(base)?,
            &refs,
            &self.feat_norm.forward(&feats)?,
            grid,
        )?;
        let a_norm = self.norm1.forward(&a)?;
        let s = self.self_attn.forward(&a_norm, &refs, &a_norm, grid)?;
        let a = (a + s.broadcast_mul(&self.gamma2)?)?;
        Ok((base + a.broadcast_mul(&self.gamma1)?)?)
    }
}

/// E_M: MMFuser block, then the projector `P_{dv→d}` (names `mm_fuser.*`, `mm_projector.*`).
#[derive(Clone, Debug)]
pub struct ExternalModular {
    pub(crate) fuser: MmFuser,
    pub(crate) projector: Projector,
}

impl ExternalModular {
    pub fn new(
        dv: usize,
        d: usize,
        levels: usize,
        cfg: MmFuserConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            fuser: MmFuser::new(dv, levels, cfg, vb.pp("mm_fuser"))?,
            projector: Projector::new(dv, d, vb.pp("mm_projector"))?,
        })
    }

    /// `[B, n, d]` tokens for the `<image>` slots.
    pub fn forward(&self, base: &Tensor, keys: &[&Tensor]) -> Result<Tensor> {
        Ok(self.projector.forward(&self.fuser.forward(base, keys)?)?)
    }
}
