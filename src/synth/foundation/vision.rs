//! Contrastive pretraining of a tiny CLIP- or SigLIP-style vision tower on a synthetic world.
//!
//! # Model
//! The tower is [`VisionTower`] itself (HF names, so it saves and loads like a real checkpoint):
//! by default 12 layers of width 64 (4 heads, MLP 256) on 64-pixel images in 8-pixel patches
//! (64 patch tokens, + the class token for CLIP). Twelve layers make the paper's layer sets
//! meaningful: with `crate::layers`' reference scale, CLIP (D = 12, base 11) maps `3-18-23` to
//! hidden states 1, 9, 11 and `former`/`latter` to 1–6 / 7–12; SigLIP drops its last layer
//! (D = 11, base 10): `3-18-23` → 1, 8, 10, `former` 1–5, `latter` 6–11.
//!
//! # Objective
//! Image embedding: CLIP projects `post_layernorm` of the class token, SigLIP the mean of
//! `post_layernorm` over its tokens (a parameter-free stand-in for SigLIP's attention-pooling
//! head), each through a bias-free linear map to `embed_dim`. Caption embedding: a bag of words
//! (lower-cased alphanumeric words, vocabulary from the training captions, mean of one-hots) through
//! a two-layer GELU MLP — the captions are short attribute lists, so a bag of words carries most
//! of what they say, and no second transformer has to be trained. Both embeddings are
//! L2-normalised. CLIP: symmetric InfoNCE with a learned temperature (init 1/0.07). SigLIP:
//! pairwise sigmoid loss with learned temperature (init 10) and bias (init −ln batch; the paper's
//! −10 is meant for batches of thousands), at a lower default learning rate ([`SIGLIP_LR`]:
//! at CLIP's the sigmoid loss stalls on its constant-logit plateau). The heads are discarded
//! after training; only the tower is published.
//!
//! # Data
//! The world's `pretrain/captions.json` (first answer = the caption) and images, preprocessed
//! once with the tower family's HF image processor. The last `holdout` records are never
//! trained on; top-1 image→caption retrieval over them is reported (a hit when the retrieved
//! caption's text equals the true one's; chance ≈ 1/holdout).

use super::patch_heads::{layer_probes, PatchHeads, PatchLabels};
use super::{params_from, seeded_init, train_loop, DataOrder, Finished, Optim, TrainHooks};
use crate::model::preprocess::{ImageAspect, ImageProcessor, CLIP_MEAN, CLIP_STD, HALF};
use crate::model::vision::{VisionActivation, VisionArch, VisionConfig, VisionTower};
use crate::synth::{LlavaRecord, WorldSummary};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Module, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Settings of a `synth:clip` / `synth:siglip` model entry (`params`); depth is the entry's
/// `depth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionParams {
    /// Hidden size of the tower.
    pub width: usize,
    pub heads: usize,
    /// MLP width = `mlp_ratio · width`.
    pub mlp_ratio: usize,
    pub patch_size: usize,
    /// Input side; defaults to the world's image size.
    pub image_size: Option<usize>,
    /// Width of the shared image–caption embedding space.
    pub embed_dim: usize,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: u64,
    pub checkpoint_every: u64,
    /// Pretrain records held out for the retrieval check and the probes (taken from the end).
    pub holdout: usize,
    /// Weight of the per-patch label loss (`patch_heads`) beside the contrastive loss; 0 trains
    /// on captions alone. Needs the world's `pretrain/cells.json` and a patch grid that is a
    /// multiple of the 3×3 object grid.
    pub patch_loss_weight: f64,
    /// Hidden state the per-patch heads read (default: the last layer's output).
    pub patch_loss_layer: Option<usize>,
    pub seed: u64,
}

impl Default for VisionParams {
    fn default() -> Self {
        VisionParams {
            width: 64,
            heads: 4,
            mlp_ratio: 4,
            patch_size: 8,
            image_size: None,
            embed_dim: 64,
            steps: 150,
            batch: 16,
            lr: 2e-3,
            weight_decay: 0.05,
            warmup_steps: 10,
            checkpoint_every: 50,
            holdout: 200,
            patch_loss_weight: 1.0,
            patch_loss_layer: None,
            seed: 0,
        }
    }
}

/// Training images the per-layer probes are fitted on (their held-out score uses every
/// held-out image): a few thousand occupied-cell patches, enough for a 64-wide linear read-out.
const PROBE_IMAGES: usize = 600;

/// SigLIP's default learning rate, a quarter of CLIP's. The pairwise sigmoid loss has a
/// plateau CLIP's softmax does not: the constant-logit optimum (every σ(logit) = 1/B, loss
/// 3.74 at batch 16), which the towers can reach by collapsing every embedding onto one
/// direction instead of moving the bias. At 2e-3 the first large steps do exactly that (the
/// spread of image embeddings over a batch falls ~20× within 10 steps) and the run stays at
/// chance; at 5e-4 it leaves the plateau (default settings, 150 steps: loss 3.91 → 3.33,
/// retrieval 2× chance). The sigmoid loss itself, its gradients to t, b and the tower, and
/// the SigLIP tower under InfoNCE all learn (see the tests below).
pub const SIGLIP_LR: f64 = 5e-4;

impl VisionParams {
    /// Reads the entry's `params` over [`Default`] (CLIP's defaults; the planner's `world` key
    /// is ignored). Use [`VisionParams::from_family_params`] for a family's own defaults.
    pub fn from_params(params: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        params_from(params, "synth vision")
    }

    /// The defaults of a family: [`Default`], with [`SIGLIP_LR`] for SigLIP.
    pub fn defaults_for(arch: VisionArch) -> Self {
        match arch {
            VisionArch::Clip => VisionParams::default(),
            VisionArch::Siglip => VisionParams {
                lr: SIGLIP_LR,
                ..VisionParams::default()
            },
        }
    }

    /// Reads the entry's `params` over the family's defaults ([`VisionParams::defaults_for`]);
    /// unknown keys are errors as with [`VisionParams::from_params`].
    pub fn from_family_params(
        arch: VisionArch,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self> {
        let serde_json::Value::Object(mut full) = serde_json::to_value(Self::defaults_for(arch))?
        else {
            bail!("internal: vision params did not serialise to a table");
        };
        full.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
        params_from(&full, "synth vision")
    }
}

/// What a finished run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisionReport {
    pub family: String,
    pub layers: usize,
    pub steps: u64,
    /// Mean loss of the last 10% of steps run in this attempt (NaN if none ran).
    pub final_loss: f64,
    /// Top-1 image→caption retrieval accuracy on held-out images.
    pub retrieval_top1: f64,
    /// The same for a random ranking (1 / distinct captions among the held-out ones, roughly).
    pub retrieval_chance: f64,
    pub holdout: usize,
    /// Best per-layer linear-probe accuracy (0–100) on held-out occupied cells, colour and
    /// shape (NaN without cell labels); the curves are recorded as `probe/<attr>/h<k>` metrics.
    pub probe_color: f64,
    pub probe_shape: f64,
    pub train_seconds: f64,
}

/// The tower's config for a family, depth and parameters.
pub fn tower_config(
    arch: VisionArch,
    depth: usize,
    p: &VisionParams,
    image_size: usize,
) -> VisionConfig {
    VisionConfig {
        arch,
        hidden_size: p.width,
        intermediate_size: p.width * p.mlp_ratio,
        num_hidden_layers: depth,
        num_attention_heads: p.heads,
        num_channels: 3,
        image_size,
        patch_size: p.patch_size,
        hidden_act: match arch {
            VisionArch::Clip => VisionActivation::QuickGelu,
            VisionArch::Siglip => VisionActivation::GeluTanh,
        },
        layer_norm_eps: match arch {
            VisionArch::Clip => 1e-5,
            VisionArch::Siglip => 1e-6,
        },
    }
}

/// The `preprocessor_config.json` transformers writes for this tower's image processor, so
/// `ImageProcessor::for_model_dir` (and transformers) preprocess exactly as training did.
pub fn preprocessor_json(cfg: &VisionConfig) -> serde_json::Value {
    let s = cfg.image_size;
    match cfg.arch {
        VisionArch::Clip => serde_json::json!({
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": true, "size": {"shortest_edge": s}, "resample": 3,
            "do_center_crop": true, "crop_size": {"height": s, "width": s},
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
            "do_convert_rgb": true,
        }),
        VisionArch::Siglip => serde_json::json!({
            "image_processor_type": "SiglipImageProcessor",
            "do_resize": true, "size": {"height": s, "width": s}, "resample": 3,
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": HALF, "image_std": HALF,
        }),
    }
}

/// Lower-cased alphanumeric words of a caption.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
}

/// Captions as mean-of-one-hot rows over a vocabulary (index 0 = unknown word).
struct BagOfWords {
    vocab: BTreeMap<String, usize>,
}

impl BagOfWords {
    fn fit<'a>(captions: impl Iterator<Item = &'a str>) -> BagOfWords {
        let mut all: Vec<String> = captions.flat_map(words).collect();
        all.sort();
        all.dedup();
        let vocab = all
            .into_iter()
            .enumerate()
            .map(|(i, w)| (w, i + 1))
            .collect();
        BagOfWords { vocab }
    }

    fn size(&self) -> usize {
        self.vocab.len() + 1
    }

    fn encode(&self, captions: &[&str], device: &Device) -> Result<Tensor> {
        let v = self.size();
        let mut data = vec![0f32; captions.len() * v];
        for (r, c) in captions.iter().enumerate() {
            let ids: Vec<usize> = words(c)
                .map(|w| self.vocab.get(&w).copied().unwrap_or(0))
                .collect();
            let scale = 1.0 / ids.len().max(1) as f32;
            for id in ids {
                data[r * v + id] += scale;
            }
        }
        Ok(Tensor::from_vec(data, (captions.len(), v), device)?)
    }
}

/// The tower plus the throw-away heads the contrastive loss needs.
struct Contrastive {
    tower: VisionTower,
    visual_projection: candle_nn::Linear,
    text_hidden: candle_nn::Linear,
    text_projection: candle_nn::Linear,
    /// log temperature (and SigLIP's bias).
    logit_scale: Tensor,
    logit_bias: Option<Tensor>,
    /// Per-patch label heads (when the world has cell labels and the weight is positive).
    patch_heads: Option<PatchHeads>,
}

impl Contrastive {
    #[cfg(test)]
    fn new(cfg: &VisionConfig, p: &VisionParams, vocab: usize, map: &VarMap) -> Result<Self> {
        Self::with_patch_heads(cfg, p, vocab, map, false)
    }

    fn with_patch_heads(
        cfg: &VisionConfig,
        p: &VisionParams,
        vocab: usize,
        map: &VarMap,
        patch_heads: bool,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let tower = VisionTower::new_trainable(cfg, map, DType::F32, &device)?;
        let vb = VarBuilder::from_varmap(map, DType::F32, &device).pp("heads");
        let visual_projection =
            candle_nn::linear_no_bias(cfg.hidden_size, p.embed_dim, vb.pp("visual_projection"))?;
        let hidden = 2 * p.embed_dim;
        let text_hidden = candle_nn::linear(vocab, hidden, vb.pp("text_hidden"))?;
        let text_projection =
            candle_nn::linear_no_bias(hidden, p.embed_dim, vb.pp("text_projection"))?;
        let (scale, bias) = match cfg.arch {
            VisionArch::Clip => ((1.0f64 / 0.07).ln(), None),
            // Bias −ln(batch): σ(b) starts at the 1/B share of positive pairs (the paper's −10
            // suits batches of thousands; at batch 16 the towers collapse to match it through
            // the cosines instead). Learning needs SigLIP's lower learning rate: [`SIGLIP_LR`].
            VisionArch::Siglip => (10f64.ln(), Some(-(p.batch as f64).ln())),
        };
        let logit_scale = vb.get_with_hints(1, "logit_scale", candle_nn::Init::Const(scale))?;
        let logit_bias = match bias {
            Some(b) => Some(vb.get_with_hints(1, "logit_bias", candle_nn::Init::Const(b))?),
            None => None,
        };
        let patch_heads = if patch_heads {
            Some(PatchHeads::new(cfg.hidden_size, vb.clone())?)
        } else {
            None
        };
        Ok(Contrastive {
            tower,
            visual_projection,
            text_hidden,
            text_projection,
            logit_scale,
            logit_bias,
            patch_heads,
        })
    }

    fn image_embeddings(&self, pixels: &Tensor) -> Result<Tensor> {
        self.embed_states(&self.tower.forward_hidden_states(pixels)?)
    }

    /// The image embedding from a forward pass's hidden states.
    fn embed_states(&self, states: &[Tensor]) -> Result<Tensor> {
        let last = states.last().context("tower has no hidden states")?;
        let pooled = self.tower.post_layernorm(last)?;
        let pooled = match self.tower.config().arch {
            VisionArch::Clip => pooled,
            VisionArch::Siglip => pooled.mean(1)?,
        };
        l2_normalize(&self.visual_projection.forward(&pooled)?)
    }

    fn text_embeddings(&self, bow: &Tensor) -> Result<Tensor> {
        let h = self.text_hidden.forward(bow)?.gelu()?;
        l2_normalize(&self.text_projection.forward(&h)?)
    }

    /// `[B, B]` similarity logits, images along rows.
    fn logits(&self, img: &Tensor, txt: &Tensor) -> Result<Tensor> {
        let sims = img.matmul(&txt.t()?)?;
        let scaled = sims.broadcast_mul(&self.logit_scale.exp()?)?;
        Ok(match &self.logit_bias {
            Some(b) => scaled.broadcast_add(b)?,
            None => scaled,
        })
    }

    fn loss(&self, img: &Tensor, txt: &Tensor) -> Result<Tensor> {
        let logits = self.logits(img, txt)?;
        let b = logits.dim(0)?;
        match self.tower.config().arch {
            VisionArch::Clip => {
                let targets = Tensor::arange(0u32, b as u32, logits.device())?;
                let a = candle_nn::loss::cross_entropy(&logits, &targets)?;
                let t = candle_nn::loss::cross_entropy(&logits.t()?.contiguous()?, &targets)?;
                Ok(((a + t)? * 0.5)?)
            }
            VisionArch::Siglip => {
                // z = +1 on the diagonal, −1 elsewhere; loss = −Σ log σ(z·logits) / B.
                let eye = Tensor::eye(b, DType::F32, logits.device())?;
                let z = ((eye * 2.0)? - 1.0)?;
                let x = (z * logits)?;
                Ok((softplus(&x.neg()?)?.sum_all()? / b as f64)?)
            }
        }
    }
}

fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// log(1 + eˣ), stable for large |x|, built from differentiable ops.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.relu()? + tail)?)
}

/// Loaded, preprocessed pretrain split.
struct Split {
    pixels: Tensor,
    captions: Vec<String>,
    /// Record ids, in order (to align `cells.json`).
    ids: Vec<String>,
    /// The split's per-cell labels, when the world has them.
    cells: Option<std::path::PathBuf>,
}

fn load_split(world: &Path, processor: &ImageProcessor) -> Result<Split> {
    let summary = WorldSummary::load(world)?;
    let json_path = world.join(&summary.pretrain.json);
    let text = std::fs::read_to_string(&json_path)
        .with_context(|| format!("reading {}", json_path.display()))?;
    let records: Vec<LlavaRecord> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json_path.display()))?;
    let images = world.join(&summary.pretrain.images);
    let mut data = Vec::new();
    let mut captions = Vec::new();
    let mut ids = Vec::new();
    let mut size = (0, 0);
    for r in &records {
        let (Some(image), Some(answer)) = (&r.image, r.conversations.get(1)) else {
            continue;
        };
        let path = images.join(image);
        let img = crate::model::preprocess::load_rgb(&path)?;
        let (v, h, w) = processor.preprocess_to_vec(&img, ImageAspect::Square)?;
        size = (h, w);
        data.extend(v);
        captions.push(answer.value.clone());
        ids.push(r.id.clone());
    }
    if captions.is_empty() {
        bail!("{} has no image–caption records", json_path.display());
    }
    let pixels = Tensor::from_vec(data, (captions.len(), 3, size.0, size.1), &Device::Cpu)?;
    Ok(Split {
        pixels,
        captions,
        ids,
        cells: summary.pretrain.cells.as_ref().map(|c| world.join(c)),
    })
}

/// Trains a tower of `depth` layers on the world at `world` and saves it into `out` (HF
/// layout + `preprocessor_config.json`). Returns `None` when `hooks.stop_after` stopped it.
pub fn train_vision(
    arch: VisionArch,
    depth: usize,
    p: &VisionParams,
    world: &Path,
    out: &Path,
    hooks: &mut TrainHooks<'_>,
) -> Result<Option<VisionReport>> {
    if depth == 0 || p.width % p.heads.max(1) != 0 || p.batch < 2 {
        bail!(
            "vision params: need depth ≥ 1, width divisible by heads and batch ≥ 2 (got depth {depth}, width {}, heads {}, batch {})",
            p.width, p.heads, p.batch
        );
    }
    let world_size = WorldSummary::load(world)?.config.image_size as usize;
    let cfg = tower_config(arch, depth, p, p.image_size.unwrap_or(world_size));
    cfg.validate()?;
    let processor = ImageProcessor::for_tower(&cfg);
    let split = load_split(world, &processor)?;
    let n = split.captions.len();
    if n <= p.holdout + p.batch {
        bail!(
            "the world has {n} pretrain captions, too few for holdout {} + batch {}; raise n_pretrain",
            p.holdout,
            p.batch
        );
    }
    let n_train = n - p.holdout;
    let bow = BagOfWords::fit(split.captions[..n_train].iter().map(String::as_str));
    let refs: Vec<&str> = split.captions.iter().map(String::as_str).collect();
    let texts = bow.encode(&refs, &Device::Cpu)?;

    // Per-patch labels, when the world has them and the loss is on.
    let labels = match &split.cells {
        Some(path) if p.patch_loss_weight > 0.0 => {
            Some(PatchLabels::load(path, &split.ids, cfg.grid_size())?)
        }
        _ => None,
    };
    let patch_layer = p.patch_loss_layer.unwrap_or(depth);
    if patch_layer > depth {
        bail!(
            "vision params: patch_loss_layer = {patch_layer} is above the tower's {depth} layers"
        );
    }

    let mut map = VarMap::new();
    let model = Contrastive::with_patch_heads(&cfg, p, bow.size(), &map, labels.is_some())?;
    seeded_init(&map, p.seed, 0.02)?;
    let opt = Optim {
        steps: p.steps,
        lr: p.lr,
        weight_decay: p.weight_decay,
        warmup_steps: p.warmup_steps,
        max_grad_norm: 1.0,
        checkpoint_every: p.checkpoint_every,
        seed: p.seed,
        cosine: true,
    };
    let mut order = DataOrder::new(n_train, p.seed);
    let start = std::time::Instant::now();
    let mut losses = Vec::new();
    let finished = train_loop(&mut map, &opt, hooks, |step, _| {
        let rows = order.batch(step, p.batch);
        let idx: Vec<u32> = rows.iter().map(|&i| i as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &Device::Cpu)?;
        let states = model
            .tower
            .forward_hidden_states(&split.pixels.index_select(&idx, 0)?)?;
        let img = model.embed_states(&states)?;
        let txt = model.text_embeddings(&texts.index_select(&idx, 0)?)?;
        let mut loss = model.loss(&img, &txt)?;
        if let (Some(heads), Some(labels)) = (&model.patch_heads, &labels) {
            if let Some(aux) = heads.loss(&cfg, &states[patch_layer], labels, &rows)? {
                loss = (loss + (aux * p.patch_loss_weight)?)?;
            }
        }
        losses.push(loss.to_scalar::<f32>()? as f64);
        Ok(loss)
    })?;
    let train_seconds = start.elapsed().as_secs_f64();
    if finished == Finished::Stopped {
        return Ok(None);
    }
    let (top1, chance) = retrieval(&model, &split, &texts, n_train)?;
    // What each hidden state carries: probes fitted on training images, scored on held-out ones.
    let (mut probe_color, mut probe_shape) = (f64::NAN, f64::NAN);
    // A tower trained without the patch loss is probed too, when the world has labels.
    let probe_only = match (&labels, &split.cells) {
        (None, Some(path)) => Some(PatchLabels::load(path, &split.ids, cfg.grid_size())?),
        _ => None,
    };
    let probe_labels = labels.as_ref().or(probe_only.as_ref());
    if let Some(labels) = probe_labels {
        let train: Vec<usize> = (0..n_train.min(PROBE_IMAGES)).collect();
        let test: Vec<usize> = (n_train..n).collect();
        let probes = layer_probes(&model.tower, &split.pixels, labels, &train, &test)?;
        for (attr, accs) in &probes {
            for (k, v) in accs.iter().enumerate() {
                (hooks.metric)(&format!("probe/{attr}/h{k}"), None, *v)?;
            }
            let best = accs.iter().copied().fold(f64::NAN, f64::max);
            match attr.as_str() {
                "color" => probe_color = best,
                "shape" => probe_shape = best,
                _ => {}
            }
        }
    }
    let tail = losses.len().div_ceil(10);
    let final_loss = if losses.is_empty() {
        f64::NAN
    } else {
        losses[losses.len() - tail..].iter().sum::<f64>() / tail as f64
    };
    model.tower.save(out)?;
    let pre = serde_json::to_string_pretty(&preprocessor_json(&cfg))?;
    crate::atomic::write_atomic(&out.join("preprocessor_config.json"), pre.as_bytes())?;
    Ok(Some(VisionReport {
        family: arch.vision_model_type().to_string(),
        layers: depth,
        steps: p.steps,
        final_loss,
        retrieval_top1: top1,
        retrieval_chance: chance,
        holdout: n - n_train,
        probe_color,
        probe_shape,
        train_seconds,
    }))
}

/// Top-1 image→caption retrieval over records `from..`; returns (accuracy, chance).
fn retrieval(
    model: &Contrastive,
    split: &Split,
    texts: &Tensor,
    from: usize,
) -> Result<(f64, f64)> {
    let n = split.captions.len() - from;
    let mut imgs = Vec::new();
    for chunk in (from..split.captions.len()).step_by(64) {
        let len = 64.min(split.captions.len() - chunk);
        imgs.push(
            model
                .image_embeddings(&split.pixels.narrow(0, chunk, len)?)?
                .detach(),
        );
    }
    let img = Tensor::cat(&imgs, 0)?;
    let txt = model.text_embeddings(&texts.narrow(0, from, n)?)?.detach();
    let best = img.matmul(&txt.t()?)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let caps = &split.captions[from..];
    let hits = best
        .iter()
        .enumerate()
        .filter(|(i, &j)| caps[*i] == caps[j as usize])
        .count();
    // A random pick hits any caption equal to the true one.
    let chance = caps
        .iter()
        .map(|c| caps.iter().filter(|d| *d == c).count() as f64 / n as f64)
        .sum::<f64>()
        / n as f64;
    Ok((hits as f64 / n as f64, chance))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::foundation::rng_for;
    use crate::train::optim::{named_vars, param_groups, AdamW};
    use rand::RngCore;

    /// The loss of a batch whose logits are all equal at their best value (σ = 1/B).
    fn constant_logit_optimum(arch: VisionArch, b: usize) -> f64 {
        let b = b as f64;
        match arch {
            VisionArch::Clip => b.ln(),
            VisionArch::Siglip => b.ln() - (b - 1.0) * (1.0 - 1.0 / b).ln(),
        }
    }

    /// Both objectives on a fixed batch of 8 distinct noise images and captions: gradients reach
    /// the temperature, SigLIP's bias and the tower, and a few AdamW steps at the family's
    /// default learning rate take the loss far below the constant-logit optimum. (A second or so.)
    #[test]
    fn both_losses_reach_every_parameter_and_learn_a_tiny_batch() {
        let (b, size) = (8, 16);
        for arch in [VisionArch::Clip, VisionArch::Siglip] {
            let p = VisionParams {
                width: 16,
                heads: 2,
                patch_size: 8,
                embed_dim: 16,
                ..VisionParams::defaults_for(arch)
            };
            let cfg = tower_config(arch, 1, &p, size);
            let map = VarMap::new();
            let model = Contrastive::new(&cfg, &p, b + 1, &map).unwrap();
            seeded_init(&map, 0, 0.02).unwrap();
            let mut rng = rng_for(1, "pixels");
            let px: Vec<f32> = (0..b * 3 * size * size)
                .map(|_| (rng.next_u32() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let px = Tensor::from_vec(px, (b, 3, size, size), &Device::Cpu).unwrap();
            let bow = Tensor::eye(b + 1, DType::F32, &Device::Cpu)
                .unwrap()
                .narrow(0, 1, b)
                .unwrap();
            let loss_of = || {
                let img = model.image_embeddings(&px).unwrap();
                let txt = model.text_embeddings(&bow).unwrap();
                model.loss(&img, &txt).unwrap()
            };
            let named = named_vars(&map);
            let grads = loss_of().backward().unwrap();
            for (name, var) in &named {
                let norm = grads.get(var.as_tensor()).map(|g| {
                    g.sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                });
                // Biases and the class token start where only later steps move them.
                let may_be_zero = name.ends_with(".bias") || name.contains("class_embedding");
                assert!(
                    norm.is_some_and(|n| n.is_finite() && (may_be_zero || n > 0.0)),
                    "{arch:?}: no gradient for {name}: {norm:?}"
                );
            }
            assert!(named.iter().any(|(n, _)| n == "heads.logit_scale"));
            assert_eq!(
                named.iter().any(|(n, _)| n == "heads.logit_bias"),
                arch == VisionArch::Siglip
            );

            let mut adamw = AdamW::new(
                param_groups(named, p.lr, p.weight_decay),
                Default::default(),
            )
            .unwrap();
            let first = loss_of().to_scalar::<f32>().unwrap() as f64;
            let mut last = first;
            for _ in 0..40 {
                let loss = loss_of();
                last = loss.to_scalar::<f32>().unwrap() as f64;
                adamw.step(&loss.backward().unwrap(), 1.0).unwrap();
            }
            let plateau = constant_logit_optimum(arch, b);
            assert!(
                last < 0.5 * plateau,
                "{arch:?}: loss {first:.3} → {last:.3}, the constant-logit optimum is {plateau:.3}"
            );
        }
    }

    #[test]
    fn siglip_defaults_to_its_own_learning_rate_and_params_still_win() {
        let none = serde_json::Map::new();
        let siglip = VisionParams::from_family_params(VisionArch::Siglip, &none).unwrap();
        assert_eq!(siglip.lr, SIGLIP_LR);
        assert_eq!(VisionParams { lr: 2e-3, ..siglip }, VisionParams::default());
        let clip = VisionParams::from_family_params(VisionArch::Clip, &none).unwrap();
        assert_eq!(clip, VisionParams::from_params(&none).unwrap());
        let given: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"lr": 0.001, "world": "w"}"#).unwrap();
        let p = VisionParams::from_family_params(VisionArch::Siglip, &given).unwrap();
        assert_eq!(p.lr, 1e-3);
        let typo: serde_json::Map<_, _> = serde_json::from_str(r#"{"lrr": 0.001}"#).unwrap();
        let err = format!(
            "{:#}",
            VisionParams::from_family_params(VisionArch::Siglip, &typo).unwrap_err()
        );
        assert!(err.contains("lrr"), "{err}");
    }
}
