//! The multimodal LLM: frozen vision tower → fusion module (+ I_M sub-blocks) → LLaMA.
//!
//! [`Mllm`] ties the parts together the way LLaVA's `LlavaLlamaForCausalLM` does, with the
//! paper's four paradigms (paper.md §1): the tower's selected hidden states (patch tokens only,
//! computed without gradients) go through the [`FusionModel`]; its `input_tokens` replace the
//! `<image>` sentinel of each row ([`splice`]), its `injections` become I_D [`Injections`] at the
//! visual spans or I_M [`CrossAttnInputs`] for the gated sub-blocks.
//!
//! # Text-only samples
//! LLaVA runs a zero image through the tower and splices none of its tokens. Here the tower is not
//! run at all for a text-only row: the row gets no visual tokens, a zero-length I_D span, and
//! **zero** I_M keys/values (so its cross-attention output is exactly zero; the gated MLP branch
//! still acts, as on every position). The fusion module still runs on zero hidden states for such
//! rows so batches keep one shape; its outputs for them are discarded or zeroed.
//!
//! # Generation
//! [`Mllm::generate_ids`] decodes one prompt; [`Mllm::generate_ids_batch`] ([`batch`]) decodes
//! several in one left-padded batch with the same answers (the eval stage's path).
//!
//! # What trains
//! * [`Mllm::pretrain`]: the fusion module and its projectors (+ I_M sub-blocks) in a fresh,
//!   seeded `VarMap`; tower and LLM are loaded as plain tensors, so they are frozen by
//!   construction (the optimiser never sees them).
//! * [`Mllm::finetune`]: the same fusion weights, loaded from the pretrain output, plus every LLM
//!   weight ([`Llama::load_trainable`]) in one `VarMap`; the tower stays frozen.
//! * [`Mllm::load`]: everything frozen, for evaluation.
//!
//! # Output layout (a stage's `out_dir`)
//! ```text
//! mllm.json               MllmConfig: fusion (paradigm, ResolvedLayers, widths, MMFuser), I_M
//!                         placement, tower and LLM pointers, image tokens, aspect mode
//! mm_fusion.safetensors   the fusion weights: mm_projector.*, mm_fuser.*, mm_projectors.{j}.*,
//!                         model.layers.{i}.xattn.* (I_M)
//! llm/                    finetune only: the trained LLM in HF layout (config.json,
//!                         model.safetensors, tokenizer.json)
//! trainer_state.json      steps, final loss, tokens, time
//! ```
//! After pretraining, `mllm.json`'s `llm` points at the frozen base LLM's directory; after
//! finetuning, at `llm` (relative). The tower is always a pointer (it is never trained).

pub mod batch;
pub mod config;
pub mod generator;
pub mod images;
pub mod splice;

pub use batch::PromptIds;
pub use config::{
    MllmConfig, ModelPointer, FUSION_WEIGHTS_FILE, LLM_DIR, MLLM_CONFIG_FILE, MLLM_FORMAT,
};
pub use images::FeatureCache;
pub use splice::{image_position, splice, Spliced};

use crate::data::IGNORE_INDEX;
use crate::data::{ImageAspect, TemplateKind, TextTokenizer};
use crate::layers::{Fusion, ResolvedLayers};
use crate::model::fusion::{
    patch_tokens, seeded_var_builder, FusionConfig, FusionModel, MmFuserConfig, VisualFusion,
};
use crate::model::hub::ModelFiles;
use crate::model::llm::{
    generate_greedy, CrossAttn, CrossAttnBlocks, CrossAttnConfig, CrossAttnInputs, ForwardOptions,
    GenerateConfig, Injections, Llama, LlamaConfig, VisualSpans,
};
use crate::model::loss::causal_lm_loss;
use crate::model::preprocess::ImageProcessor;
use crate::model::vision::{VisionArch, VisionConfig, VisionTower};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::path::{Path, PathBuf};

/// Seed offset of the I_M sub-blocks' initialisation (the fusion module uses the seed itself).
const XATTN_SEED_OFFSET: u64 = 0x9e37_79b9_7f4a_7c15;

/// What to build a model from (a pretrain stage's view of its config).
#[derive(Clone, Debug)]
pub struct MllmSpec {
    pub fusion: Fusion,
    pub layers: ResolvedLayers,
    pub vision: ModelPointer,
    pub llm: ModelPointer,
    /// The manifest's `depth` of the tower, checked against its config.json.
    pub vision_depth: Option<usize>,
    /// The manifest's `drop_last_layer`, checked against the tower family.
    pub drop_last_layer: Option<bool>,
    /// The manifest's `layers` of the LLM, checked against its config.json.
    pub llm_layers: Option<usize>,
    pub mmfuser: MmFuserConfig,
    /// I_M sub-block options (ignored by other paradigms).
    pub xattn: CrossAttnConfig,
    pub image_aspect: ImageAspect,
}

/// One training (or scoring) batch for [`Mllm::forward`].
#[derive(Clone, Debug)]
pub struct MllmBatch {
    /// Token ids per row, unpadded, with at most one `IMAGE_TOKEN_INDEX`.
    pub ids: Vec<Vec<i64>>,
    /// Labels per row (same lengths), `IGNORE_INDEX` where not trained.
    pub labels: Vec<Vec<i64>>,
    /// The tower's selected hidden states, [`Mllm::vision_indices`] order, each `[B, n, dv]`
    /// (zeros for text-only rows).
    pub features: Vec<Tensor>,
    /// Which rows have an image.
    pub has_image: Vec<bool>,
}

/// What [`Mllm::forward`] returns.
#[derive(Clone, Debug)]
pub struct MllmOutput {
    /// Mean masked cross-entropy over the supervised next tokens.
    pub loss: Tensor,
    /// `[B, T, vocab]` f32.
    pub logits: Tensor,
    /// Real (text + visual) tokens in the batch.
    pub tokens: usize,
}

/// Tower + fusion + LLM.
pub struct Mllm {
    config: MllmConfig,
    tower: VisionTower,
    processor: ImageProcessor,
    fusion: FusionModel,
    xattn: Option<CrossAttnBlocks>,
    llm: Llama,
    llm_files: ModelFiles,
    tokenizer: TextTokenizer,
    indices: Vec<usize>,
    has_cls: bool,
    fusion_names: Vec<String>,
}

fn check_layers(
    spec: &MllmSpec,
    vcfg: &VisionConfig,
    lcfg: &LlamaConfig,
    vdir: &Path,
    ldir: &Path,
) -> Result<()> {
    if let Some(d) = spec.vision_depth {
        if d != vcfg.num_hidden_layers {
            bail!(
                "the manifest declares a vision tower of depth {d} (source `{}`), but {} says \
                 num_hidden_layers = {}; fix `depth` in the manifest's model entry",
                spec.vision.source,
                vdir.join("config.json").display(),
                vcfg.num_hidden_layers
            );
        }
    }
    if let Some(drop) = spec.drop_last_layer {
        let tower_drops = vcfg.arch == VisionArch::Siglip;
        if drop != tower_drops {
            bail!(
                "the manifest sets drop_last_layer = {drop} for `{}`, but a {:?} tower {} its last \
                 layer in this engine; remove the setting or fix the family",
                spec.vision.source,
                vcfg.arch,
                if tower_drops { "drops" } else { "keeps" }
            );
        }
    }
    if let Some(l) = spec.llm_layers {
        if l != lcfg.num_hidden_layers {
            bail!(
                "the manifest declares an LLM with {l} layers (source `{}`), but {} says \
                 num_hidden_layers = {}; fix `layers` in the manifest's model entry",
                spec.llm.source,
                ldir.join("config.json").display(),
                lcfg.num_hidden_layers
            );
        }
    }
    let depth = vcfg.encoder_depth();
    if spec.layers.base() != depth.base() {
        bail!(
            "the resolved layers use base hidden state {}, but the tower in {} (depth {}) has base \
             {}; the plan was resolved for another encoder depth",
            spec.layers.base(),
            vdir.display(),
            depth.layers,
            depth.base()
        );
    }
    if let Some(&k) = spec.layers.vision_indices().iter().max() {
        if k > vcfg.num_hidden_layers {
            bail!(
                "the resolved layers read vision hidden state {k}, but the tower in {} has only {} layers",
                vdir.display(),
                vcfg.num_hidden_layers
            );
        }
    }
    if let ResolvedLayers::Internal { injections, .. } = &spec.layers {
        if let Some(i) = injections.iter().find(|i| i.llm >= lcfg.num_hidden_layers) {
            bail!(
                "the resolved layers inject into LLM layer {}, but {} has only {} layers",
                i.llm,
                ldir.display(),
                lcfg.num_hidden_layers
            );
        }
    }
    Ok(())
}

struct Frozen {
    tower: VisionTower,
    processor: ImageProcessor,
    vcfg: VisionConfig,
    files: ModelFiles,
    lcfg: LlamaConfig,
    tokenizer: TextTokenizer,
}

fn load_frozen_parts(
    vdir: &Path,
    ldir: &Path,
    indices: &[usize],
    device: &Device,
) -> Result<Frozen> {
    let dtype = crate::device::compute_dtype(device);
    let vcfg = VisionConfig::from_file(&vdir.join("config.json"))?;
    let last = indices.iter().copied().max().unwrap_or(0);
    let tower = VisionTower::from_dir_with_layers(vdir, device, dtype, Some(last))?;
    let processor = ImageProcessor::for_model_dir(vdir, &vcfg)?;
    let files = ModelFiles::from_dir(ldir)?;
    let lcfg = LlamaConfig::from_file(&files.config)?;
    let tok_path = files.tokenizer.clone().with_context(|| {
        format!(
            "{} has no tokenizer.json; the LLM directory must ship its tokenizer",
            ldir.display()
        )
    })?;
    let tokenizer = TextTokenizer::from_file(&tok_path)?;
    Ok(Frozen {
        tower,
        processor,
        vcfg,
        files,
        lcfg,
        tokenizer,
    })
}

fn var_names(map: &VarMap) -> Vec<String> {
    let mut v: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
    v.sort();
    v
}

impl Mllm {
    fn assemble(
        config: MllmConfig,
        parts: Frozen,
        fusion: FusionModel,
        xattn: Option<CrossAttnBlocks>,
        llm: Llama,
        fusion_names: Vec<String>,
    ) -> Mllm {
        let indices = config.fusion.layers.vision_indices();
        let has_cls = parts.vcfg.arch == VisionArch::Clip;
        Mllm {
            config,
            tower: parts.tower,
            processor: parts.processor,
            fusion,
            xattn,
            llm,
            llm_files: parts.files,
            tokenizer: parts.tokenizer,
            indices,
            has_cls,
            fusion_names,
        }
    }

    fn new_config(
        spec: &MllmSpec,
        vcfg: &VisionConfig,
        lcfg: &LlamaConfig,
        stage: &str,
    ) -> MllmConfig {
        let mut fusion = FusionConfig::new(
            spec.fusion,
            spec.layers.clone(),
            vcfg.hidden_size,
            lcfg.hidden_size,
        );
        fusion.mmfuser = spec.mmfuser;
        MllmConfig {
            format: MLLM_FORMAT.into(),
            stage: stage.into(),
            fusion,
            xattn: (spec.fusion == Fusion::InternalModular).then_some(spec.xattn),
            vision: spec.vision.clone(),
            llm: spec.llm.clone(),
            image_tokens: vcfg.num_patches(),
            image_aspect: spec.image_aspect.as_str().into(),
            template: None,
        }
    }

    /// A model for pretraining: fresh fusion weights (+ I_M sub-blocks) from `seed` in the
    /// returned `VarMap`, tower and LLM frozen. Checks the manifest's declared depths.
    pub fn pretrain(spec: &MllmSpec, seed: u64, device: &Device) -> Result<(Mllm, VarMap)> {
        let vdir = spec.vision.resolve_dir(Path::new("/"))?;
        let ldir = spec.llm.resolve_dir(Path::new("/"))?;
        let indices = spec.layers.vision_indices();
        let parts = load_frozen_parts(&vdir, &ldir, &indices, device)?;
        check_layers(spec, &parts.vcfg, &parts.lcfg, &vdir, &ldir)?;
        let mut config = Self::new_config(spec, &parts.vcfg, &parts.lcfg, "pretrain");
        config.vision.dir = vdir;
        config.llm.dir = ldir;
        let dtype = crate::device::compute_dtype(device);
        let llm = Llama::load_with_config(&parts.lcfg, &parts.files, dtype, device)?;
        let map = VarMap::new();
        let fusion = FusionModel::init(config.fusion.clone(), &map, seed, dtype, device)?;
        let xattn = match &config.xattn {
            Some(x) => Some(CrossAttnBlocks::new(
                &parts.lcfg,
                &config.xattn_layers(),
                *x,
                seeded_var_builder(&map, seed ^ XATTN_SEED_OFFSET, dtype, device),
            )?),
            None => None,
        };
        let names = var_names(&map);
        Ok((
            Self::assemble(config, parts, fusion, xattn, llm, names.clone()),
            map,
        ))
    }

    /// A model for finetuning from a pretrain output directory: its fusion weights and every LLM
    /// weight are trainable (one `VarMap`); the tower stays frozen. With `freeze_llm` the LLM is
    /// loaded frozen instead (only the fusion trains, as in pretraining).
    pub fn finetune(
        pretrained: &Path,
        freeze_llm: bool,
        device: &Device,
    ) -> Result<(Mllm, VarMap)> {
        let mut config = MllmConfig::read(pretrained)?;
        let vdir = config.vision.resolve_dir(pretrained)?;
        let ldir = config.llm.resolve_dir(pretrained)?;
        let parts =
            load_frozen_parts(&vdir, &ldir, &config.fusion.layers.vision_indices(), device)?;
        let dtype = crate::device::compute_dtype(device);
        let map = VarMap::new();
        // Shapes first (any init), then the pretrained values over them.
        let fusion = FusionModel::new(
            config.fusion.clone(),
            seeded_var_builder(&map, 0, dtype, device),
        )?;
        let xattn = match &config.xattn {
            Some(x) => Some(CrossAttnBlocks::new(
                &parts.lcfg,
                &config.xattn_layers(),
                *x,
                seeded_var_builder(&map, 0, dtype, device),
            )?),
            None => None,
        };
        let weights = pretrained.join(FUSION_WEIGHTS_FILE);
        let mut loaded = map.clone();
        loaded.load(&weights).with_context(|| {
            format!(
                "loading the pretrained fusion weights {}",
                weights.display()
            )
        })?;
        let fusion_names = var_names(&map);
        let llm = if freeze_llm {
            Llama::load_with_config(&parts.lcfg, &parts.files, dtype, device)?
        } else {
            let (llm, llm_map) = Llama::load_trainable(&parts.files, dtype, device)?;
            let mut data = map.data().lock().unwrap();
            for (name, var) in llm_map.data().lock().unwrap().iter() {
                if data.insert(name.clone(), var.clone()).is_some() {
                    bail!("LLM weight `{name}` collides with a fusion weight of the same name");
                }
            }
            llm
        };
        config.stage = "finetune".into();
        config.template = None; // pretrain's `plain`; the finetune's is recorded by `save`
        config.vision.dir = vdir;
        config.llm.dir = ldir;
        Ok((
            Self::assemble(config, parts, fusion, xattn, llm, fusion_names),
            map,
        ))
    }

    /// Loads a trained model (a pretrain or finetune output directory), every weight frozen.
    pub fn load(dir: &Path, device: &Device) -> Result<Mllm> {
        let mut config = MllmConfig::read(dir)?;
        let vdir = config.vision.resolve_dir(dir)?;
        let ldir = config.llm.resolve_dir(dir)?;
        let parts =
            load_frozen_parts(&vdir, &ldir, &config.fusion.layers.vision_indices(), device)?;
        let dtype = crate::device::compute_dtype(device);
        let weights = dir.join(FUSION_WEIGHTS_FILE);
        let fusion = FusionModel::load(config.fusion.clone(), &[&weights], dtype, device)?;
        let xattn = match &config.xattn {
            Some(x) => {
                // SAFETY: published task outputs are never modified in place.
                let vb =
                    unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], dtype, device) }?;
                Some(
                    CrossAttnBlocks::new(&parts.lcfg, &config.xattn_layers(), *x, vb)
                        .with_context(|| {
                            format!("loading the I_M sub-blocks from {}", weights.display())
                        })?,
                )
            }
            None => None,
        };
        let llm = Llama::load_with_config(&parts.lcfg, &parts.files, dtype, device)?;
        config.vision.dir = vdir;
        config.llm.dir = ldir;
        Ok(Self::assemble(config, parts, fusion, xattn, llm, vec![]))
    }

    /// The model's description (what `mllm.json` holds).
    pub fn config(&self) -> &MllmConfig {
        &self.config
    }

    /// Records how images are made square for this model (the finetune stage's own setting,
    /// which eval should reuse); [`Mllm::pixels`] follows it.
    pub fn set_image_aspect(&mut self, aspect: ImageAspect) {
        self.config.image_aspect = aspect.as_str().into();
    }

    /// The LLM.
    pub fn llm(&self) -> &Llama {
        &self.llm
    }

    /// The frozen vision tower.
    pub fn tower(&self) -> &VisionTower {
        &self.tower
    }

    /// The fusion module.
    pub fn fusion(&self) -> &FusionModel {
        &self.fusion
    }

    /// The LLM's tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The tower's image processor (also an `ImagePreprocessor` for the data loader).
    pub fn image_processor(&self) -> &ImageProcessor {
        &self.processor
    }

    /// Hidden-state indices the fusion reads, ascending (base included).
    pub fn vision_indices(&self) -> &[usize] {
        &self.indices
    }

    /// Names of the fusion weights in a trainable `VarMap` (empty for a loaded model).
    pub fn fusion_weight_names(&self) -> &[String] {
        &self.fusion_names
    }

    /// The selected hidden states of `pixels` `[B, 3, H, W]`, patch tokens only, without
    /// gradients: one `[B, n, dv]` tensor per [`Mllm::vision_indices`] entry.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        let states = self.tower.forward_selected(pixels, &self.indices)?;
        Ok(patch_tokens(&states, self.has_cls)?
            .into_iter()
            .map(|t| t.detach())
            .collect())
    }

    /// Zero features for `batch` text-only rows (the shapes [`Mllm::image_features`] returns).
    pub fn zero_features(&self, batch: usize) -> Result<Vec<Tensor>> {
        let cfg = self.tower.config();
        let n = cfg.num_patches();
        let t = Tensor::zeros(
            (batch, n, cfg.hidden_size),
            self.tower.dtype(),
            self.tower.device(),
        )?;
        Ok(vec![t; self.indices.len()])
    }

    /// The fusion module's output for selected features, with I_M features zeroed on text-only
    /// rows. Returns the visual input tokens and the per-layer injections.
    fn fuse(
        &self,
        features: &[Tensor],
        has_image: &[bool],
    ) -> Result<(Tensor, Vec<(usize, Tensor)>)> {
        if features.len() != self.indices.len() {
            bail!(
                "{} feature tensors given, the model reads hidden states {:?}",
                features.len(),
                self.indices
            );
        }
        // The fusion indexes hidden states like transformers (0 = embeddings); states it never
        // reads are filled with the base layer (never looked at).
        let base_pos = self
            .indices
            .iter()
            .position(|&k| k == self.config.fusion.layers.base())
            .expect("the base layer is always selected");
        let last = *self.indices.last().unwrap();
        let mut full = vec![features[base_pos].clone(); last + 1];
        for (&k, t) in self.indices.iter().zip(features) {
            full[k] = t.clone();
        }
        let out = self.fusion.forward(&full)?;
        let mut injections = out.injections;
        if has_image.iter().any(|h| !h) && self.xattn.is_some() {
            let keep: Vec<f32> = has_image
                .iter()
                .map(|&h| if h { 1.0 } else { 0.0 })
                .collect();
            let keep = Tensor::from_vec(keep, (has_image.len(), 1, 1), self.llm.device())?;
            for (_, t) in injections.iter_mut() {
                *t = t.broadcast_mul(&keep.to_dtype(t.dtype())?)?;
            }
        }
        Ok((out.input_tokens, injections))
    }

    /// Runs the model on the spliced sequence and returns the logits (and the splice).
    fn run(
        &self,
        spliced: &Spliced,
        injections: &[(usize, Tensor)],
        mask: Option<&Tensor>,
        cache: Option<&mut crate::model::llm::KvCache>,
    ) -> Result<Tensor> {
        let (id, xin) = self.hooks(&spliced.spans, injections)?;
        let opts = ForwardOptions {
            attention_mask: mask,
            injections: id.as_ref(),
            cross_attn: match (&self.xattn, &xin) {
                (Some(blocks), Some(inputs)) => Some(CrossAttn { blocks, inputs }),
                _ => None,
            },
            ..Default::default()
        };
        self.llm.forward_embeds(&spliced.embeds, &opts, cache)
    }

    /// The LLM hooks of the fusion's injections: I_D at the visual `spans`, I_M per layer.
    fn hooks(
        &self,
        spans: &VisualSpans,
        injections: &[(usize, Tensor)],
    ) -> Result<(Option<Injections>, Option<CrossAttnInputs>)> {
        match self.config.fusion.fusion {
            Fusion::InternalDirect => {
                let mut inj = Injections::new(spans.clone());
                for (l, t) in injections {
                    inj.add(*l, t.clone())?;
                }
                Ok((Some(inj), None))
            }
            Fusion::InternalModular => {
                // Several injections into one layer: the sub-block attends to all their tokens.
                let mut per_layer: std::collections::BTreeMap<usize, Vec<Tensor>> =
                    Default::default();
                for (l, t) in injections {
                    per_layer.entry(*l).or_default().push(t.clone());
                }
                let mut inputs = CrossAttnInputs::new();
                for (l, ts) in per_layer {
                    inputs.insert(l, Tensor::cat(&ts, 1)?);
                }
                Ok((None, Some(inputs)))
            }
            _ => Ok((None, None)),
        }
    }

    /// Fusion and splice of a batch: the LLM's input rows and the paradigm's injections.
    fn prepare(&self, batch: &MllmBatch) -> Result<(Spliced, Vec<(usize, Tensor)>)> {
        let b = batch.ids.len();
        if batch.labels.len() != b || batch.has_image.len() != b {
            bail!("a batch of {b} rows needs as many label rows and image flags");
        }
        let (tokens, injections) = self.fuse(&batch.features, &batch.has_image)?;
        let ids: Vec<&[i64]> = batch.ids.iter().map(Vec::as_slice).collect();
        let labels: Vec<&[i64]> = batch.labels.iter().map(Vec::as_slice).collect();
        for (r, row) in ids.iter().enumerate() {
            let has = image_position(row)?.is_some();
            if has != batch.has_image[r] {
                bail!(
                    "row {r}: {} but the sample {} an image",
                    if has {
                        "the text holds <image>"
                    } else {
                        "the text holds no <image>"
                    },
                    if batch.has_image[r] { "has" } else { "has no" }
                );
            }
        }
        let spliced = splice(&self.llm, &ids, Some(&labels), &tokens)?;
        Ok((spliced, injections))
    }

    /// The batched, right-padded, attention-masked forward pass with the masked LM loss.
    pub fn forward(&self, batch: &MllmBatch) -> Result<MllmOutput> {
        let (spliced, injections) = self.prepare(batch)?;
        let mask = spliced.attention_mask.clone();
        let logits = self.run(&spliced, &injections, Some(&mask), None)?;
        let loss = causal_lm_loss(&logits, &spliced.labels)?;
        Ok(MllmOutput {
            loss,
            logits,
            tokens: spliced.lengths.iter().sum(),
        })
    }

    /// The loss of [`Mllm::forward`] (same value up to float rounding) and the batch's real
    /// tokens, computing the vocabulary logits only where a next token is supervised. A
    /// training step needs nothing else, and the head and its log-softmax over every position
    /// of every row (`B·T·vocab`) were a large share of a tiny model's step.
    pub fn train_loss(&self, batch: &MllmBatch) -> Result<(Tensor, usize)> {
        let (spliced, injections) = self.prepare(batch)?;
        let mask = spliced.attention_mask.clone();
        let (id, xin) = self.hooks(&spliced.spans, &injections)?;
        let opts = ForwardOptions {
            attention_mask: Some(&mask),
            injections: id.as_ref(),
            cross_attn: match (&self.xattn, &xin) {
                (Some(blocks), Some(inputs)) => Some(CrossAttn { blocks, inputs }),
                _ => None,
            },
            ..Default::default()
        };
        let hidden = self.llm.forward_hidden(&spliced.embeds, &opts, None)?;
        let (b, t, h) = hidden.dims3()?;
        let labels: Vec<i64> = spliced
            .labels
            .to_dtype(DType::I64)?
            .flatten_all()?
            .to_vec1()?;
        let (mut at, mut target) = (Vec::new(), Vec::new());
        for r in 0..b {
            for p in 1..t {
                let l = labels[r * t + p];
                if l != IGNORE_INDEX {
                    at.push((r * t + p - 1) as u32);
                    target.push(l as u32);
                }
            }
        }
        if at.is_empty() {
            bail!(
                "every label is {IGNORE_INDEX} (ignored): the batch has no target token; check the \
                 template masking or the truncation length"
            );
        }
        let dev = hidden.device();
        let n = at.len();
        let picked = hidden
            .reshape((b * t, h))?
            .index_select(&Tensor::from_vec(at, n, dev)?, 0)?;
        let logits = self.llm.lm_logits(&picked)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &Tensor::from_vec(target, n, dev)?)?;
        Ok((loss, spliced.lengths.iter().sum()))
    }

    /// Pixels `[1, 3, H, W]` for an image, made square the way the model was trained.
    pub fn pixels(&self, image: &image::RgbImage) -> Result<Tensor> {
        let mode = ImageAspect::parse(&self.config.image_aspect).map_err(anyhow::Error::msg)?;
        Ok(self
            .processor
            .preprocess(image, mode, self.tower.device())?
            .unsqueeze(0)?)
    }

    /// Greedy decoding with the KV cache for one prompt given as ids (with at most one
    /// `IMAGE_TOKEN_INDEX`, which `pixels` `[1, 3, H, W]` fills). Returns the new ids.
    pub fn generate_ids(
        &self,
        pixels: Option<&Tensor>,
        ids: &[i64],
        max_new_tokens: usize,
    ) -> Result<Vec<u32>> {
        let has_image = image_position(ids)?.is_some();
        let features = match (pixels, has_image) {
            (Some(p), true) => self.image_features(p)?,
            (None, false) => self.zero_features(1)?,
            (Some(_), false) => bail!("an image was given but the prompt holds no <image>"),
            (None, true) => bail!("the prompt holds <image> but no image was given"),
        };
        let (tokens, injections) = self.fuse(&features, &[has_image])?;
        let spliced = splice(&self.llm, &[ids], None, &tokens)?;
        let (id, xin) = self.hooks(&spliced.spans, &injections)?;
        let opts = ForwardOptions {
            injections: id.as_ref(),
            cross_attn: match (&self.xattn, &xin) {
                (Some(blocks), Some(inputs)) => Some(CrossAttn { blocks, inputs }),
                _ => None,
            },
            ..Default::default()
        };
        generate_greedy(
            &self.llm,
            &spliced.embeds,
            &opts,
            &GenerateConfig::for_model(&self.llm, max_new_tokens),
        )
    }

    /// Greedy completion of `prompt` (already in the conversation template; `<image>` marks
    /// where the image goes), decoded without special tokens.
    pub fn generate(
        &self,
        image: Option<&image::RgbImage>,
        prompt: &str,
        max_new_tokens: usize,
    ) -> Result<String> {
        let ids = self.tokenizer.encode_prompt(prompt)?;
        let pixels = image.map(|i| self.pixels(i)).transpose()?;
        let out = self.generate_ids(pixels.as_ref(), &ids, max_new_tokens)?;
        let out: Vec<i64> = out.into_iter().map(i64::from).collect();
        Ok(self.tokenizer.decode(&out)?)
    }

    /// Writes the stage output into `dir`: `mm_fusion.safetensors` (the fusion weights of
    /// `map`), `mllm.json` (recording `template`, the one the stage trained with), and with
    /// `save_llm` the LLM in HF layout under `llm/`.
    pub fn save(
        &self,
        map: &VarMap,
        dir: &Path,
        save_llm: bool,
        template: TemplateKind,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let data = map.data().lock().unwrap();
        let mut tensors = Vec::with_capacity(self.fusion_names.len());
        for name in &self.fusion_names {
            let var = data
                .get(name)
                .with_context(|| format!("fusion weight {name} missing from the VarMap"))?;
            tensors.push((name.clone(), var.as_tensor().clone()));
        }
        drop(data);
        crate::model::vision::checkpoint::write_safetensors_atomic(
            &tensors,
            &dir.join(FUSION_WEIGHTS_FILE),
        )?;
        let mut config = self.config.clone();
        config.template = Some(template);
        if save_llm {
            self.llm
                .save(&dir.join(LLM_DIR), self.llm_files.tokenizer.as_deref())?;
            config.llm = ModelPointer {
                source: "output".into(),
                dir: PathBuf::from(LLM_DIR),
            };
        }
        config.write(dir)
    }
}
