//! Vision towers (CLIP ViT, SigLIP ViT) that return every hidden state, as transformers'
//! `output_hidden_states=True` does: index 0 = embeddings (for CLIP after `pre_layrnorm`),
//! index i = output of encoder layer i, each `[batch, tokens, dim]`.
//!
//! One type, [`VisionTower`], covers both families; the differences (class token, patch bias,
//! pre-norm, activation, eps) come from [`VisionConfig`]. Weights use HF names, so a tower loads
//! from `CLIPVisionModel`, `SiglipVisionModel`, `CLIPModel`, `SiglipModel` and LLaVA-style
//! checkpoints, and [`VisionTower::save`] writes a directory transformers loads back.
//!
//! Dropping SigLIP's last layer (paper.md §2.2) is a fusion-time choice made in
//! `crate::layers` ([`VisionConfig::encoder_depth`]); the tower itself always computes what its
//! config says, or stops early when the caller asks for fewer layers.
//!
//! # Gradients and kernels
//! Every tower is differentiable by default ([`Kernels::Differentiable`]): layer norm and
//! softmax take their value from candle's fused kernels and get their backward from
//! [`ops`], so training costs nothing extra in the forward pass (measured on the project's CPU:
//! tiny tower and CLIP-L layer within noise of the no-backward kernels, which are in turn 13×
//! (softmax) and 26× (layer norm) faster than candle's differentiable compositions). Towers
//! loaded with [`VisionTower::from_dir`] use [`Kernels::Fused`], candle's kernels without a
//! backward, which saves a copy per op on CPU and the slow compositions on GPU; call
//! [`VisionTower::set_kernels`] to get gradients through a loaded tower.

pub mod checkpoint;
pub mod config;
pub mod embeddings;
pub mod encoder;

pub use config::{VisionActivation, VisionArch, VisionConfig};
pub use encoder::Kernels;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use checkpoint::CheckpointIndex;
use embeddings::PatchEmbeddings;
use encoder::{EncoderLayer, LayerNorm};
use std::path::Path;

/// A CLIP or SigLIP vision transformer.
#[derive(Clone, Debug)]
pub struct VisionTower {
    cfg: VisionConfig,
    embeddings: PatchEmbeddings,
    /// CLIP only.
    pre_layrnorm: Option<LayerNorm>,
    layers: Vec<EncoderLayer>,
    /// Applied to CLIP's pooled class token and SigLIP's last hidden state, never to
    /// `hidden_states` (HF does the same).
    post_layernorm: LayerNorm,
    kernels: Kernels,
}

impl VisionTower {
    /// Builds a tower from `vb` rooted at the tower (the level that holds `embeddings`, e.g.
    /// `vb.pp("vision_model")`). With a `VarMap` builder every weight is a trainable `Var`.
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<VisionTower> {
        VisionTower::new_with_layers(cfg, cfg.num_hidden_layers, vb)
    }

    /// Like [`VisionTower::new`], but builds only the first `layers` encoder layers.
    /// [`VisionTower::config`] still describes the whole checkpoint (so
    /// [`VisionConfig::encoder_depth`] stays right); [`VisionTower::num_layers`] says what is built.
    pub fn new_with_layers(
        cfg: &VisionConfig,
        layers: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<VisionTower> {
        if let Err(e) = cfg.validate() {
            candle_core::bail!("invalid vision config: {e}");
        }
        if layers > cfg.num_hidden_layers {
            candle_core::bail!(
                "asked for {layers} layers of a {}-layer tower",
                cfg.num_hidden_layers
            );
        }
        let cfg = cfg.clone();
        let d = cfg.hidden_size;
        let embeddings = PatchEmbeddings::new(&cfg, vb.pp("embeddings"))?;
        let pre_layrnorm = match cfg.arch {
            VisionArch::Clip => Some(LayerNorm::new(
                d,
                cfg.layer_norm_eps,
                vb.pp("pre_layrnorm"),
            )?),
            VisionArch::Siglip => None,
        };
        let layers = (0..layers)
            .map(|i| EncoderLayer::new(&cfg, vb.pp(format!("encoder.layers.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let post_layernorm = LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("post_layernorm"))?;
        Ok(VisionTower {
            cfg,
            embeddings,
            pre_layrnorm,
            layers,
            post_layernorm,
            kernels: Kernels::Differentiable,
        })
    }

    /// A fresh trainable tower whose weights live in `map` under HF names (`vision_model.…`),
    /// so `map.save(..)` and [`VisionTower::save`] agree on names.
    pub fn new_trainable(
        cfg: &VisionConfig,
        map: &VarMap,
        dtype: DType,
        device: &Device,
    ) -> Result<VisionTower> {
        let vb = VarBuilder::from_varmap(map, dtype, device);
        Ok(VisionTower::new(cfg, vb.pp("vision_model"))?)
    }

    /// Loads a frozen tower from an HF model directory (`config.json` + safetensors). The
    /// weights are plain tensors: no gradients are kept for them.
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<VisionTower> {
        VisionTower::from_dir_with_layers(dir, device, dtype, None)
    }

    /// Loads only the first `layers` encoder layers (all when `None`): fusion that needs hidden
    /// states up to index D never reads the rest of the checkpoint.
    pub fn from_dir_with_layers(
        dir: &Path,
        device: &Device,
        dtype: DType,
        layers: Option<usize>,
    ) -> Result<VisionTower> {
        let cfg = VisionConfig::from_file(&dir.join("config.json"))?;
        let layers = layers.unwrap_or(cfg.num_hidden_layers);
        if layers > cfg.num_hidden_layers {
            bail!(
                "asked for {layers} layers, but {} has only {}",
                dir.join("config.json").display(),
                cfg.num_hidden_layers
            );
        }
        let files = checkpoint::safetensors_files(dir)?;
        let index = CheckpointIndex::read(&files)?;
        let prefix = index.tower_prefix()?;
        index.check(&prefix, &cfg, layers)?;
        // SAFETY: the files are memory-mapped read-only; like every mmap user we rely on nobody
        // truncating them while the tower is being built (tensors are copied out during build).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
            .with_context(|| format!("cannot map the safetensors files of {}", dir.display()))?;
        let vb = match prefix.strip_suffix('.') {
            Some(p) => vb.pp(p),
            None => vb,
        };
        let mut tower = VisionTower::new_with_layers(&cfg, layers, vb)
            .with_context(|| format!("cannot build the vision tower of {}", dir.display()))?;
        tower.kernels = Kernels::Fused;
        Ok(tower)
    }

    /// Writes `config.json` and `model.safetensors` in HF layout (`vision_model.…` names), each
    /// atomically; transformers loads the directory as `CLIPVisionModel` / `SiglipVisionModel`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tensors = self.named_tensors();
        let dtype = match tensors[0].1.dtype() {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            _ => "float32",
        };
        checkpoint::write_safetensors_atomic(&tensors, &dir.join("model.safetensors"))?;
        // A truncated tower is saved as the smaller tower it is.
        let cfg = VisionConfig {
            num_hidden_layers: self.layers.len(),
            ..self.cfg.clone()
        };
        let json = serde_json::to_string_pretty(&cfg.to_hf_json(dtype))?;
        crate::atomic::write_atomic(&dir.join("config.json"), json.as_bytes())?;
        Ok(())
    }

    /// Every weight with its HF name (`vision_model.…`).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let root = "vision_model";
        self.embeddings
            .collect(&format!("{root}.embeddings"), &mut out);
        if let Some(ln) = &self.pre_layrnorm {
            ln.collect(&format!("{root}.pre_layrnorm"), &mut out);
        }
        for (i, l) in self.layers.iter().enumerate() {
            l.collect(&format!("{root}.encoder.layers.{i}"), &mut out);
        }
        self.post_layernorm
            .collect(&format!("{root}.post_layernorm"), &mut out);
        out
    }

    /// The checkpoint's config (`num_hidden_layers` may exceed [`VisionTower::num_layers`] when
    /// only the first layers were loaded).
    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// The dtype of the weights (and of every hidden state).
    pub fn dtype(&self) -> DType {
        self.post_layernorm.dtype()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.post_layernorm.device()
    }

    /// Encoder layers this tower computes; `forward_hidden_states` returns one more state.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Which kernels the forward pass uses. Loaded towers default to [`Kernels::Fused`],
    /// trainable ones to [`Kernels::Differentiable`].
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Chooses the kernels; use [`Kernels::Differentiable`] whenever gradients must reach the
    /// pixels or the tower's weights.
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// All hidden states: `num_layers() + 1` tensors of `[batch, tokens, dim]`.
    /// `pixels` is `[batch, channels, image_size, image_size]` in the tower's dtype.
    pub fn forward_hidden_states(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        self.forward_hidden_states_upto(pixels, self.layers.len())
    }

    /// Hidden states `0..=last` only; layers above `last` are not computed.
    pub fn forward_hidden_states_upto(&self, pixels: &Tensor, last: usize) -> Result<Vec<Tensor>> {
        if last > self.layers.len() {
            bail!(
                "hidden state {last} asked for, but this tower has only {} layers",
                self.layers.len()
            );
        }
        self.check_pixels(pixels)?;
        // Preprocessing yields f32; a half-precision tower takes them in its own dtype.
        let pixels = pixels.to_dtype(self.dtype())?;
        let mut x = self.embeddings.forward(&pixels)?;
        if let Some(ln) = &self.pre_layrnorm {
            x = ln.forward(&x, self.kernels)?;
        }
        let mut states = Vec::with_capacity(last + 1);
        states.push(x.clone());
        for layer in &self.layers[..last] {
            x = layer.forward(&x, self.kernels)?;
            states.push(x.clone());
        }
        Ok(states)
    }

    /// Only the hidden states at `indices` (any order, repeats allowed), computing layers up to
    /// the largest index and no further; e.g. `ResolvedLayers::vision_indices()` from
    /// `crate::layers`.
    pub fn forward_selected(&self, pixels: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
        let Some(&last) = indices.iter().max() else {
            bail!("no hidden-state indices selected")
        };
        let states = self.forward_hidden_states_upto(pixels, last)?;
        Ok(indices.iter().map(|&i| states[i].clone()).collect())
    }

    /// HF's pooled output from the last hidden state: `post_layernorm` of CLIP's class token
    /// (`[batch, dim]`), or of every SigLIP token (`[batch, tokens, dim]`, SigLIP's
    /// `last_hidden_state`).
    pub fn post_layernorm(&self, last_hidden: &Tensor) -> Result<Tensor> {
        let x = match self.cfg.arch {
            VisionArch::Clip => last_hidden.narrow(1, 0, 1)?.squeeze(1)?,
            VisionArch::Siglip => last_hidden.clone(),
        };
        Ok(self.post_layernorm.forward(&x, self.kernels)?)
    }

    fn check_pixels(&self, pixels: &Tensor) -> Result<()> {
        let c = &self.cfg;
        let want = [c.num_channels, c.image_size, c.image_size];
        match pixels.dims() {
            [_, rest @ ..] if rest == want => {
                if !pixels.device().same_device(self.device()) {
                    bail!(
                        "pixels are on {:?} but the tower is on {:?}",
                        pixels.device(),
                        self.device()
                    );
                }
                Ok(())
            }
            dims => bail!(
                "pixel tensor has shape {dims:?}; this {} tower expects [batch, {}, {}, {}] \
                 (preprocess images with crate::model::preprocess)",
                c.arch.hf_class(),
                want[0],
                want[1],
                want[2]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(arch: VisionArch) -> VisionConfig {
        VisionConfig {
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            image_size: 14,
            patch_size: 4,
            ..VisionConfig::hf_defaults(arch)
        }
    }

    #[test]
    fn expected_tensor_list_matches_what_the_tower_builds() {
        for arch in [VisionArch::Clip, VisionArch::Siglip] {
            let cfg = tiny(arch);
            let map = VarMap::new();
            let tower = VisionTower::new_trainable(&cfg, &map, DType::F32, &Device::Cpu).unwrap();
            let mut built: Vec<(String, Vec<usize>)> = tower
                .named_tensors()
                .into_iter()
                .map(|(n, t)| (n, t.dims().to_vec()))
                .collect();
            let mut expected: Vec<(String, Vec<usize>)> = checkpoint::expected_tensors(&cfg, 3)
                .into_iter()
                .map(|(n, s)| (format!("vision_model.{n}"), s))
                .collect();
            built.sort();
            expected.sort();
            assert_eq!(built, expected);
            let mut in_map: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
            in_map.sort();
            assert_eq!(
                in_map,
                built.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn shapes_and_early_stop() {
        let cfg = tiny(VisionArch::Clip);
        let map = VarMap::new();
        let tower = VisionTower::new_trainable(&cfg, &map, DType::F32, &Device::Cpu).unwrap();
        let px = Tensor::zeros((2, 3, 14, 14), DType::F32, &Device::Cpu).unwrap();
        let hs = tower.forward_hidden_states(&px).unwrap();
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[3].dims(), &[2, 10, 16]); // 3x3 patches (2-pixel remainder dropped) + class
        let two = tower.forward_hidden_states_upto(&px, 2).unwrap();
        assert_eq!(two.len(), 3);
        assert!(tower.forward_hidden_states_upto(&px, 4).is_err());
        let sel = tower.forward_selected(&px, &[2, 0, 2]).unwrap();
        assert_eq!(sel.len(), 3);
        let diff = (&sel[0] - &hs[2])
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        assert!(tower.forward_selected(&px, &[]).is_err());
        let bad = Tensor::zeros((1, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
        let err = tower.forward_hidden_states(&bad).unwrap_err().to_string();
        assert!(err.contains("[batch, 3, 14, 14]"), "{err}");
    }
}
