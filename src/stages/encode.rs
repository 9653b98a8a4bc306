//! `encode`: runs the frozen vision tower once over every distinct image of a dataset and
//! publishes every hidden state (format: [`crate::data::encoded`]). The pretrain and finetune
//! tasks that depend on it read features from it instead of running the tower
//! ([`super::common::encoded_features`]), so N fusion × layer cells sharing an (encoder, dataset,
//! image aspect) run the tower once instead of N times.
//!
//! Shards are written to the task's checkpoint directory as they complete and moved into the
//! output at the end, so a killed encode resumes at the first missing shard.
//!
//! `[encode] budget_gb` (a run-time option in the task spec, never part of the key) caps the
//! output size: the stage computes the size from the tower's shapes and the image count before
//! running anything and refuses a dataset over the budget, naming the size and the knob.

use super::common::{load_dataset, resolve_model};
use super::{Stage, StageContext};
use crate::atomic::write_atomic;
use crate::data::encoded::{
    shard_name, tensor_name, EncodedIndex, EncodedManifest, ENCODED_FILE, ENCODED_FORMAT,
    INDEX_FILE,
};
use crate::data::{ImageAspect, ImagePreprocessor};
use crate::model::fusion::patch_tokens;
use crate::model::preprocess::ImageProcessor;
use crate::model::vision::checkpoint::write_safetensors_atomic;
use crate::model::vision::{VisionArch, VisionConfig, VisionTower};
use crate::plan::config::EncodeConfig;
use crate::task::runtime::ENCODE_BUDGET_GB;
use crate::task::Task;
use crate::train::trainer::training_device;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

/// Target shard size: big enough that shard count stays small, small enough to write
/// atomically and resume at a useful granularity.
const SHARD_BYTES: u64 = 256 << 20;

/// The encode stage.
pub struct EncodeStage;

impl Stage for EncodeStage {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> Result<()> {
        let cfg: EncodeConfig = serde_json::from_value(task.config.clone())
            .context("the task's config is not an encode config (re-plan the sweep)")?;
        let budget_gb = match task.runtime.get(ENCODE_BUDGET_GB) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_f64().with_context(|| {
                format!("the task spec's runtime `{ENCODE_BUDGET_GB}` is `{v}`, not a number")
            })?),
        };
        let vision = resolve_model(ctx, &cfg.encoder)?;
        let vcfg = VisionConfig::from_file(&vision.dir.join("config.json"))?;
        if let Some(d) = cfg.encoder.depth {
            if d != vcfg.num_hidden_layers {
                bail!(
                    "the manifest declares a vision tower of depth {d} (source `{}`), but {} says \
                     num_hidden_layers = {}; fix `depth` in the manifest's model entry",
                    cfg.encoder.source,
                    vision.dir.join("config.json").display(),
                    vcfg.num_hidden_layers
                );
            }
        }
        let data = load_dataset(ctx, &cfg.data)?;
        let images = distinct_images(&data);
        let hidden_states = vcfg.num_hidden_layers + 1;
        let (tokens, width) = (vcfg.num_patches(), vcfg.hidden_size);
        let row_bytes = EncodedManifest::row_bytes(hidden_states, tokens, width);
        let bytes = row_bytes * images.len() as u64;
        check_budget(bytes, budget_gb, images.len(), hidden_states, tokens, width)?;

        let aspect: ImageAspect = cfg.image_aspect;
        let rows_per_shard = (SHARD_BYTES / row_bytes).max(1) as usize;
        let manifest = EncodedManifest {
            format: ENCODED_FORMAT.into(),
            encoder: cfg.encoder.source.clone(),
            image_aspect: aspect.as_str().into(),
            hidden_states,
            tokens,
            width,
            dtype: "f32".into(),
            images: images.len(),
            rows_per_shard,
            shards: (0..images.len().div_ceil(rows_per_shard))
                .map(shard_name)
                .collect(),
            bytes,
        };
        let log = format!(
            "encoding {} distinct images of {} ({} records): {hidden_states} hidden states × \
             {tokens} tokens × {width} f32 = {:.3} GB in {} shard(s)",
            images.len(),
            data.json.display(),
            data.len(),
            bytes as f64 / 1e9,
            manifest.shards.len()
        );
        let _ = writeln!(ctx.log(), "{log}");

        let device = training_device()?;
        let dtype = crate::device::compute_dtype(&device);
        let tower = VisionTower::from_dir_with_layers(&vision.dir, &device, dtype, None)?;
        let processor = ImageProcessor::for_model_dir(&vision.dir, &vcfg)?;
        let encoder = Encoder {
            tower: &tower,
            processor: &processor,
            has_cls: vcfg.arch == VisionArch::Clip,
            aspect,
            batch: encode_batch()?,
        };
        let started = Instant::now();
        let mut computed = 0usize;
        for (i, name) in manifest.shards.iter().enumerate() {
            let ckpt = ctx.checkpoint_dir.join(name);
            let rows = manifest.shard_rows(i);
            if shard_complete(&ckpt, &manifest, rows) {
                let _ = writeln!(ctx.log(), "shard {name}: done by an earlier attempt");
                continue;
            }
            let start = i * rows_per_shard;
            let paths: Vec<_> = images[start..start + rows]
                .iter()
                .map(|rel| data.image_folder.join(rel))
                .collect();
            let tensors = encoder.shard(&paths)?;
            write_safetensors_atomic(&tensors, &ckpt)?;
            computed += rows;
            let _ = writeln!(
                ctx.log(),
                "shard {name}: {rows} images ({}/{} encoded)",
                start + rows,
                images.len()
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        for name in &manifest.shards {
            move_file(&ctx.checkpoint_dir.join(name), &ctx.out_dir.join(name))?;
        }
        write_atomic(
            &ctx.out_dir.join(INDEX_FILE),
            &serde_json::to_vec(&EncodedIndex { images })?,
        )?;
        write_atomic(
            &ctx.out_dir.join(ENCODED_FILE),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        ctx.record("encoded_images", None, manifest.images as f64)?;
        ctx.record("encoded_bytes", None, bytes as f64)?;
        ctx.record("encode_seconds", None, seconds)?;
        if computed > 0 {
            ctx.record("images_per_s", None, computed as f64 / seconds.max(1e-9))?;
        }
        Ok(())
    }
}

/// The tower, its preprocessing and the batch size: turns image files into shard tensors.
struct Encoder<'a> {
    tower: &'a VisionTower,
    processor: &'a ImageProcessor,
    has_cls: bool,
    aspect: ImageAspect,
    batch: usize,
}

impl Encoder<'_> {
    /// Every hidden state of `paths`, patch tokens only, f32: `(hidden_states.{k}, [rows, n, dv])`.
    fn shard(&self, paths: &[std::path::PathBuf]) -> Result<Vec<(String, Tensor)>> {
        let mut per_state: Vec<Vec<Tensor>> = Vec::new();
        for chunk in paths.chunks(self.batch.max(1)) {
            let pixels = chunk
                .iter()
                .map(|p| {
                    self.processor
                        .pixel_values(p, self.aspect)
                        .with_context(|| format!("encoding image {}", p.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let pixels = Tensor::stack(&pixels, 0)?.to_device(self.tower.device())?;
            let states = self.tower.forward_hidden_states(&pixels)?;
            let states = patch_tokens(&states, self.has_cls)?;
            if per_state.is_empty() {
                per_state = vec![Vec::new(); states.len()];
            }
            for (k, s) in states.into_iter().enumerate() {
                per_state[k].push(
                    s.to_dtype(DType::F32)?
                        .to_device(&candle_core::Device::Cpu)?,
                );
            }
        }
        per_state
            .into_iter()
            .enumerate()
            .map(|(k, parts)| Ok((tensor_name(k), Tensor::cat(&parts, 0)?)))
            .collect()
    }
}

/// Images per tower forward pass: `MLVF_ENCODE_BATCH` (default 32; not part of the key, as the
/// tower computes each image independently).
fn encode_batch() -> Result<usize> {
    match std::env::var("MLVF_ENCODE_BATCH") {
        Ok(v) => {
            let n: usize = v
                .trim()
                .parse()
                .with_context(|| format!("MLVF_ENCODE_BATCH=`{v}` is not a positive integer"))?;
            if n == 0 {
                bail!("MLVF_ENCODE_BATCH must be at least 1");
            }
            Ok(n)
        }
        Err(_) => Ok(32),
    }
}

/// Every image the dataset's records name, once, in first-use order (relative to its folder).
fn distinct_images(data: &crate::data::LlavaDataset) -> Vec<String> {
    let mut seen = HashSet::new();
    data.records
        .iter()
        .filter_map(|r| r.image.as_deref())
        .filter(|p| seen.insert(*p))
        .map(str::to_string)
        .collect()
}

/// Refuses an output larger than `[encode] budget_gb`.
fn check_budget(
    bytes: u64,
    budget_gb: Option<f64>,
    images: usize,
    hidden_states: usize,
    tokens: usize,
    width: usize,
) -> Result<()> {
    let Some(budget) = budget_gb else {
        return Ok(());
    };
    if bytes as f64 > budget * 1e9 {
        bail!(
            "the encoded features would take {:.3} GB ({images} images × {hidden_states} hidden \
             states × {tokens} tokens × {width} × 4 bytes), over [encode] budget_gb = {budget}; \
             raise `budget_gb` in the manifest's [encode] section, or set `enabled = false` \
             there to let training run the tower itself",
            bytes as f64 / 1e9
        );
    }
    Ok(())
}

/// Whether an earlier attempt left shard `path` complete (right tensors, shapes and dtype).
fn shard_complete(path: &Path, m: &EncodedManifest, rows: usize) -> bool {
    if !path.is_file() {
        return false;
    }
    // SAFETY: checkpoint shards are written atomically and never modified afterwards.
    let Ok(st) = (unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }) else {
        return false;
    };
    (0..m.hidden_states).all(|k| {
        st.get(&tensor_name(k)).is_ok_and(|v| {
            v.shape() == [rows, m.tokens, m.width] && v.dtype() == safetensors::Dtype::F32
        })
    })
}

/// Renames `from` to `to` (same filesystem: the store), copying if that fails.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_error_names_the_size_and_the_knob() {
        assert!(check_budget(2_000_000_000, Some(2.0), 10, 25, 576, 1024).is_ok());
        assert!(check_budget(u64::MAX, None, 10, 25, 576, 1024).is_ok());
        let err = check_budget(2_000_000_001, Some(2.0), 10, 25, 576, 1024)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2.000 GB"), "{err}");
        assert!(err.contains("[encode] budget_gb = 2"), "{err}");
        assert!(err.contains("10 images × 25 hidden states"), "{err}");
    }
}
