//! What the training stages share: finding models and datasets (a Hub id, a local directory, or
//! the published output of a `prepare` dependency for `synth:` entries), loop options from the
//! environment, and the stage context as a [`TrainObserver`].

use crate::data::encoded::EncodedFeatures;
use crate::data::{load_llava_json, ImageAspect, LlavaDataset, LoadOptions};
use crate::manifest::entries::Source;
use crate::manifest::TrainSettings;
use crate::model::mllm::{Mllm, ModelPointer};
use crate::plan::config::{DataSpec, ModelSpec};
use crate::stages::StageContext;
use crate::task::StageKind;
use crate::train::trainer::{train, TrainObserver, TrainSummary, TrainerOptions};
use anyhow::{bail, Context, Result};
use candle_nn::VarMap;
use std::path::Path;
use std::sync::Arc;

/// The loop's run summary, written next to the trained weights.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

impl TrainObserver for StageContext {
    fn metric(&mut self, name: &str, step: Option<u64>, value: f64) -> Result<()> {
        self.record(name, step, value)
    }

    fn log(&mut self, line: &str) {
        // The log is the attempt's log file; a failed write must not kill the training.
        let _ = writeln!(StageContext::log(self), "{line}");
    }
}

/// Loop options for a stage run. None of them changes the trained weights (checkpoints resume
/// bit-exactly), so they come from the environment rather than the task's key:
/// `MLVF_CHECKPOINT_EVERY` (steps, default 100), `MLVF_LOG_EVERY` (default 10),
/// `MLVF_FEATURE_CACHE_MB` (default 1024), `MLVF_STOP_AFTER` (stop as if killed after that
/// step; for resume drills).
pub fn trainer_options() -> Result<TrainerOptions> {
    let mut o = TrainerOptions::default();
    let var = |name: &str| -> Result<Option<u64>> {
        match std::env::var(name) {
            Ok(v) => Ok(Some(v.trim().parse().with_context(|| {
                format!("{name}=`{v}` is not a non-negative integer")
            })?)),
            Err(_) => Ok(None),
        }
    };
    if let Some(v) = var("MLVF_CHECKPOINT_EVERY")? {
        o.checkpoint_every = v;
    }
    if let Some(v) = var("MLVF_LOG_EVERY")? {
        o.log_every = v;
    }
    if let Some(v) = var("MLVF_FEATURE_CACHE_MB")? {
        o.feature_cache_bytes = (v as usize) << 20;
    }
    o.stop_after = var("MLVF_STOP_AFTER")?;
    Ok(o)
}

/// The features of the task's `encode` dependency, opened and checked against the model
/// (encoder, token count, width, hidden states it reads, image aspect); `None` when the task
/// has no encode dependency (`[encode]` off), and the tower runs as usual.
pub fn encoded_features(
    ctx: &StageContext,
    model: &Mllm,
    data: &LlavaDataset,
    aspect: ImageAspect,
) -> Result<Option<Arc<EncodedFeatures>>> {
    let Some(dir) = ctx.dep(StageKind::Encode) else {
        return Ok(None);
    };
    let enc = EncodedFeatures::open(dir, &data.image_folder)?;
    let vision = &model.config().vision;
    if enc.manifest().encoder != vision.source {
        bail!(
            "the encode output {} was made with encoder `{}`, this model's tower is `{}` \
             (re-plan the sweep)",
            dir.display(),
            enc.manifest().encoder,
            vision.source
        );
    }
    let cfg = model.tower().config();
    enc.check_fits(
        model.vision_indices(),
        cfg.num_patches(),
        cfg.hidden_size,
        aspect,
    )?;
    Ok(Some(Arc::new(enc)))
}

/// Where a model entry's HF-layout directory is.
pub fn resolve_model(ctx: &StageContext, spec: &ModelSpec) -> Result<ModelPointer> {
    let source = spec
        .source()
        .map_err(|e| anyhow::anyhow!("model source `{}`: {e}", spec.source))?;
    let dir = match source {
        Source::Hf { .. } => crate::model::hub::resolve(&spec.source)?.dir,
        Source::Local(p) => p,
        Source::Synth(_) => super::prepare::model_dir(spec, &ctx.deps)?,
    };
    Ok(ModelPointer {
        source: spec.source.clone(),
        dir,
    })
}

/// Loads a dataset entry (LLaVA JSON), from its paths or from its prepare dependency.
pub fn load_dataset(ctx: &StageContext, spec: &DataSpec) -> Result<LlavaDataset> {
    let (json, images) = super::prepare::dataset_files(spec, &ctx.deps)?;
    if let Some(f) = &spec.format {
        if f != "llava-json" {
            bail!("dataset format `{f}` is not supported by the training stages (use llava-json)");
        }
    }
    let opts = LoadOptions {
        on_error: spec.on_error(),
        ..LoadOptions::default()
    };
    Ok(load_llava_json(&json, &images, &opts)?)
}

/// The tail both training stages share: run the loop (resuming from the task's checkpoint
/// dir), refuse a run stopped early, then write the trained weights (the LLM too when
/// `save_llm`) and the run summary into the stage output.
#[allow(clippy::too_many_arguments)]
pub fn train_and_publish(
    ctx: &mut StageContext,
    model: &Mllm,
    trainable: &VarMap,
    data: &LlavaDataset,
    hparams: &TrainSettings,
    seed: u64,
    opts: &TrainerOptions,
    save_llm: bool,
) -> Result<()> {
    let ckpt = ctx.checkpoint_dir.clone();
    let summary = train(model, trainable, data, hparams, seed, &ckpt, opts, ctx)?;
    ensure_completed(&summary)?;
    model.save(trainable, &ctx.out_dir, save_llm, hparams.template)?;
    write_summary(&ctx.out_dir, &summary)
}

/// Writes the run summary into the stage output.
fn write_summary(dir: &Path, summary: &TrainSummary) -> Result<()> {
    crate::atomic::write_atomic(
        &dir.join(TRAINER_STATE_FILE),
        &serde_json::to_vec_pretty(summary)?,
    )
}

/// Fails a run that was stopped early (`MLVF_STOP_AFTER`): its weights are not a result.
fn ensure_completed(summary: &TrainSummary) -> Result<()> {
    if !summary.completed {
        bail!(
            "training stopped after step {} of {} (MLVF_STOP_AFTER); the next attempt resumes \
             from the checkpoint",
            summary.steps,
            summary.total_steps
        );
    }
    Ok(())
}
