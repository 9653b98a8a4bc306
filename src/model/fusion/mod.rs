//! Fusion modules: what turns the vision tower's hidden states into the LLM's visual inputs.
//!
//! One type per paradigm of the paper (paper.md §1), all behind [`VisualFusion`]:
//!
//! | paradigm | module | `input_tokens` | `injections` |
//! |---|---|---|---|
//! | baseline | [`Projector`] on the base layer | `P(V_b)` | none |
//! | E_D | [`ExternalDirect`]: concat (or group means, then concat) → `P_{(g+1)·dv→d}` | fused | none |
//! | E_M | [`ExternalModular`]: MMFuser deformable attention → `P_{dv→d}` | fused | none |
//! | I_D / I_M | [`InternalFusion`]: `P_f(V_b)`; one projector `P_j` per injection | `P_f(V_b)` | `(l_j, P_j(V_{k_j}))` |
//!
//! # Inputs
//! `hidden_states` is indexed like transformers' `output_hidden_states` (0 = embeddings,
//! i = output of layer i) and holds **patch tokens only**, `[B, n, dv]`: CLIP's CLS token must be
//! dropped first ([`patch_tokens`]). SigLIP has no CLS token and all 729 = 27×27 tokens are kept:
//! the official code drops the first patch token (728 of 729), which we do not copy.
//!
//! # Parameters and weight names
//! `mm_projector.{0,2}.{weight,bias}`: the input projector (LLaVA's names, so a LLaVA
//! baseline projector loads as is); `mm_fuser.*`: the MMFuser block (see [`e_m`]);
//! `mm_projectors.{j}.{0,2}.*`: the projector of injection j (I_D/I_M, in `ResolvedLayers` order).
//!
//! Build a trainable module with [`FusionModel::init`] (seeded, into a `VarMap`), load a
//! trained one with [`FusionModel::load`] (frozen tensors) or resume training with
//! [`FusionModel::init`] followed by `VarMap::load`. Count parameters without allocating them
//! with [`parameter_count`].

pub mod deform;
pub mod e_d;
pub mod e_m;
pub mod init;
pub mod internal;
pub mod projector;

pub use deform::{reference_points, sample_bilinear, DeformAttn, Grid};
pub use e_d::ExternalDirect;
pub use e_m::{ExternalModular, MmFuser, MmFuserConfig};
pub use init::{seeded_var_builder, shape_only_var_builder, ShapeRecorder};
pub use internal::InternalFusion;
pub use projector::{LayerNorm, Projector};

use crate::layers::{Fusion, ResolvedLayers};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::path::Path;

/// What a fusion module hands to the LLM.
#[derive(Clone, Debug)]
pub struct FusionOutput {
    /// `[B, n, d]`: the tokens that fill the `<image>` slots of the input sequence.
    pub input_tokens: Tensor,
    /// `(llm_layer, [B, n, d])` per injection, in `ResolvedLayers` order (several may share a
    /// layer). I_D: added to the hidden states at the visual positions before that decoder
    /// layer runs. I_M: keys/values of that layer's gated cross-attention sub-block.
    pub injections: Vec<(usize, Tensor)>,
}

/// A fusion paradigm's module: vision hidden states in, LLM visual inputs out.
pub trait VisualFusion {
    /// Runs the module on `hidden_states` (transformers indexing, patch tokens only, `[B, n, dv]`).
    fn forward(&self, hidden_states: &[Tensor]) -> Result<FusionOutput>;
    /// The configuration the module was built from.
    fn config(&self) -> &FusionConfig;
}

/// Everything that fixes a fusion module's shapes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FusionConfig {
    pub fusion: Fusion,
    /// Resolved layer selection (`crate::layers::resolve`).
    pub layers: ResolvedLayers,
    /// Vision hidden width dv.
    pub vision_width: usize,
    /// LLM hidden width d.
    pub llm_width: usize,
    /// MMFuser shape (used by E_M only).
    #[serde(default)]
    pub mmfuser: MmFuserConfig,
}

impl FusionConfig {
    /// A configuration with the paper's MMFuser defaults (16 heads, 4 points, eps 1e-6).
    pub fn new(
        fusion: Fusion,
        layers: ResolvedLayers,
        vision_width: usize,
        llm_width: usize,
    ) -> Self {
        Self {
            fusion,
            layers,
            vision_width,
            llm_width,
            mmfuser: MmFuserConfig::default(),
        }
    }

    /// Checks that the paradigm and the resolved layers belong together and widths are non-zero.
    pub fn validate(&self) -> Result<()> {
        let ok = matches!(
            (self.fusion, &self.layers),
            (Fusion::Baseline, ResolvedLayers::Baseline { .. })
                | (
                    Fusion::ExternalDirect | Fusion::ExternalModular,
                    ResolvedLayers::External { .. }
                )
                | (
                    Fusion::InternalDirect | Fusion::InternalModular,
                    ResolvedLayers::Internal { .. }
                )
        );
        if !ok {
            bail!(
                "fusion `{}` cannot be built from {:?}; resolve the layer set with the same paradigm",
                self.fusion,
                self.layers
            );
        }
        if self.vision_width == 0 || self.llm_width == 0 {
            bail!(
                "fusion widths must be non-zero (vision {}, LLM {})",
                self.vision_width,
                self.llm_width
            );
        }
        if let ResolvedLayers::External { groups, .. } = &self.layers {
            if groups.iter().any(|g| g.is_empty()) {
                bail!("external fusion got an empty layer group: {groups:?}");
            }
        }
        Ok(())
    }
}

/// Drops the first token of every hidden state when the tower has a CLS token (CLIP).
pub fn patch_tokens(hidden_states: &[Tensor], has_cls: bool) -> Result<Vec<Tensor>> {
    if !has_cls {
        return Ok(hidden_states.to_vec());
    }
    hidden_states
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let n = h
                .dim(1)
                .with_context(|| format!("hidden state {i} has no token axis"))?;
            Ok(h.narrow(1, 1, n - 1)?)
        })
        .collect()
}

/// Checked access to hidden state `k`: it must exist and be `[B, n, dv]` like the base.
pub(crate) fn hidden<'a>(
    hs: &'a [Tensor],
    k: usize,
    dv: usize,
    like: Option<&Tensor>,
) -> Result<&'a Tensor> {
    let t = hs.get(k).with_context(|| {
        format!(
            "the fusion module reads vision hidden state {k}, but only {} were given (0 = embeddings, \
             i = layer i); pass every hidden state of the tower",
            hs.len()
        )
    })?;
    let (_, _, w) = t.dims3().with_context(|| {
        format!(
            "vision hidden state {k} must be [batch, tokens, width], got {:?}",
            t.dims()
        )
    })?;
    if w != dv {
        bail!("vision hidden state {k} has width {w}, the fusion module was built for {dv}");
    }
    if let Some(base) = like {
        if t.dims() != base.dims() {
            bail!(
                "vision hidden state {k} has shape {:?} but the base layer has {:?}",
                t.dims(),
                base.dims()
            );
        }
    }
    Ok(t)
}

/// Any paradigm's module, built from a [`FusionConfig`].
#[derive(Clone, Debug)]
pub enum FusionKind {
    Baseline(Projector),
    ExternalDirect(ExternalDirect),
    ExternalModular(Box<ExternalModular>),
    Internal(InternalFusion),
}

/// A fusion module with its configuration.
#[derive(Clone, Debug)]
pub struct FusionModel {
    config: FusionConfig,
    kind: FusionKind,
}

impl FusionModel {
    /// Builds the module's parameters through `vb` (a `VarMap` builder for training, a
    /// safetensors builder for frozen use). No paradigm-specific initialisation happens here:
    /// use [`FusionModel::init`] for a fresh trainable module.
    pub fn new(config: FusionConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let (dv, d) = (config.vision_width, config.llm_width);
        let kind = match (&config.fusion, &config.layers) {
            (Fusion::Baseline, _) => {
                FusionKind::Baseline(Projector::new(dv, d, vb.pp("mm_projector"))?)
            }
            (Fusion::ExternalDirect, ResolvedLayers::External { groups, .. }) => {
                FusionKind::ExternalDirect(ExternalDirect::new(dv, d, groups.len(), vb)?)
            }
            (Fusion::ExternalModular, ResolvedLayers::External { groups, .. }) => {
                let levels = groups.iter().map(Vec::len).sum();
                FusionKind::ExternalModular(Box::new(ExternalModular::new(
                    dv,
                    d,
                    levels,
                    config.mmfuser,
                    vb,
                )?))
            }
            (_, ResolvedLayers::Internal { injections, .. }) => {
                FusionKind::Internal(InternalFusion::new(dv, d, injections.len(), vb)?)
            }
            _ => unreachable!("validate() rejects mismatched paradigms"),
        };
        Ok(Self { config, kind })
    }

    /// A fresh trainable module: parameters created in `map` from a ChaCha8 stream seeded with
    /// `seed` (reproducible on CPU and GPU), plus the paradigm's own initialisation (E_M:
    /// Deformable-DETR's offset-bias pattern, zero attention weights, zero gates). Parameters
    /// already in `map` are kept as they are.
    pub fn init(
        config: FusionConfig,
        map: &VarMap,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let existing: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
        let model = Self::new(config, seeded_var_builder(map, seed, dtype, device))?;
        if let FusionKind::ExternalModular(em) = &model.kind {
            let data = map.data().lock().unwrap();
            for (name, attn) in em.fuser.attentions() {
                let key = format!("mm_fuser.{name}.sampling_offsets.bias");
                if existing.contains(&key) {
                    continue; // existing values win
                }
                let dims = attn.sampling_offsets_bias().dims1()?;
                let (h, l, p) = attn.shape();
                let v = DeformAttn::offset_bias_init(h, l, p);
                debug_assert_eq!(v.len(), dims);
                let t = Tensor::from_vec(v, dims, &Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_device(device)?;
                data.get(&key)
                    .with_context(|| format!("{key} missing from the VarMap"))?
                    .set(&t)?;
            }
        }
        Ok(model)
    }

    /// Loads a trained module (frozen tensors) from safetensors files written by `VarMap::save`
    /// or a checkpoint. A missing or misshapen tensor is an error naming it.
    pub fn load(
        config: FusionConfig,
        files: &[impl AsRef<Path>],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let paths: Vec<_> = files.iter().map(|p| p.as_ref().to_path_buf()).collect();
        for p in &paths {
            if !p.is_file() {
                bail!("fusion weights {} do not exist", p.display());
            }
        }
        // SAFETY: the files are ours and are not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&paths, dtype, device) }
            .with_context(|| format!("reading fusion weights {paths:?}"))?;
        Self::new(config, vb).with_context(|| format!("loading fusion weights from {paths:?}"))
    }

    pub fn kind(&self) -> &FusionKind {
        &self.kind
    }
}

impl VisualFusion for FusionModel {
    fn forward(&self, hs: &[Tensor]) -> Result<FusionOutput> {
        let dv = self.config.vision_width;
        let base_idx = self.config.layers.base();
        let base = hidden(hs, base_idx, dv, None)?;
        match (&self.kind, &self.config.layers) {
            (FusionKind::Baseline(p), _) => Ok(FusionOutput {
                input_tokens: p.forward(base)?,
                injections: vec![],
            }),
            (FusionKind::ExternalDirect(m), ResolvedLayers::External { groups, .. }) => {
                let groups = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .map(|&k| hidden(hs, k, dv, Some(base)))
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(FusionOutput {
                    input_tokens: m.forward(base, &groups)?,
                    injections: vec![],
                })
            }
            (FusionKind::ExternalModular(m), ResolvedLayers::External { groups, .. }) => {
                let keys = groups
                    .iter()
                    .flatten()
                    .map(|&k| hidden(hs, k, dv, Some(base)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(FusionOutput {
                    input_tokens: m.forward(base, &keys)?,
                    injections: vec![],
                })
            }
            (FusionKind::Internal(m), ResolvedLayers::Internal { injections, .. }) => {
                let sources = injections
                    .iter()
                    .map(|inj| Ok((inj.llm, hidden(hs, inj.vision, dv, Some(base))?)))
                    .collect::<Result<Vec<_>>>()?;
                m.forward(base, &sources)
            }
            _ => unreachable!("kind and layers are built together"),
        }
    }

    fn config(&self) -> &FusionConfig {
        &self.config
    }
}

/// `(name, shape)` of every parameter of the module `config` describes, in creation order,
/// computed by running its constructor over a shape recorder (nothing is allocated).
pub fn parameter_shapes(config: &FusionConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let rec = ShapeRecorder::default();
    FusionModel::new(config.clone(), shape_only_var_builder(&rec))?;
    Ok(rec.shapes())
}

/// Number of trainable scalars of the module `config` describes (no allocation).
pub fn parameter_count(config: &FusionConfig) -> Result<usize> {
    Ok(parameter_shapes(config)?
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum())
}
