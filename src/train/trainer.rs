//! The training loop of the pretrain and finetune stages, on an [`Mllm`] and a LLaVA dataset.
//!
//! One optimiser step = `grad_accum` micro-batches of `batch` samples (HF Trainer semantics:
//! each micro-batch loss is a mean, the summed gradients are scaled by `1 / micro-batches`), then
//! global-norm clipping, then AdamW (no weight decay on biases and norms) at the scheduled lr.
//! An epoch that ends mid-accumulation steps with the micro-batches it has, as HF does, so an
//! epoch is `ceil(batches / grad_accum)` steps; `max_steps` caps the total.
//!
//! # Resume
//! Every `checkpoint_every` steps the trainable `VarMap`, the AdamW moments, the data position,
//! the running loss sum and the RNG state go to the checkpoint directory (atomically; see
//! `crate::train::checkpoint`). A new run with the same directory resumes from the newest valid
//! checkpoint and, because batches, schedule and optimiser state are all functions of the step
//! and the data position, ends with the same weights as an uninterrupted run (CPU, tested).
//!
//! # Observability
//! Per step: `loss`, `lr`, `grad_norm`, `tokens_per_s` through [`TrainObserver::metric`] with the
//! step; at the end `train_loss` (mean step loss over the whole run) with step `None`. A progress
//! bar on a terminal (hidden otherwise) and a log line every `log_every` steps.

use crate::data::encoded::EncodedFeatures;
use crate::data::{
    Batch, DataLoader, DataPosition, ImagePreprocessor, LlavaDataset, LoaderConfig, OnError,
    SamplerConfig, TokenBudget,
};
use crate::manifest::stages::{Scheduler, TrainSettings};
use crate::model::mllm::{FeatureCache, Mllm, MllmBatch};
use crate::train::checkpoint::{
    latest_checkpoint, prune_checkpoints, save_checkpoint, RngState, TrainState,
};
use crate::train::grad::{clip_grad_norm, GradAccumulator};
use crate::train::optim::{named_vars, param_groups, AdamW, AdamWConfig};
use crate::train::schedule::{CosineSchedule, Warmup};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Loop settings that do not change the result (so they are not part of a task's key), except
/// `max_grad_norm` and the data options, whose defaults are the paper's.
#[derive(Clone, Debug)]
pub struct TrainerOptions {
    /// Global-norm clipping threshold (HF default 1.0; `None` disables clipping).
    pub max_grad_norm: Option<f64>,
    /// Checkpoint every this many optimiser steps (0 = never). The last step is not
    /// checkpointed: the stage publishes its result instead.
    pub checkpoint_every: u64,
    /// Checkpoints kept (older ones are pruned).
    pub keep_checkpoints: usize,
    /// A log line every this many steps (0 = none).
    pub log_every: u64,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Stop right after this step (and its checkpoint) as if killed: for resume tests.
    pub stop_after: Option<u64>,
    /// Bytes of tower features cached across epochs (0 disables the cache).
    pub feature_cache_bytes: usize,
    /// LLaVA's `group_by_modality_length` (finetuning).
    pub group_by_modality: bool,
    /// The dataset entry's `on_error`: under `Skip`, samples that cannot be trained on are
    /// left out and counted (`skipped_samples`) instead of failing the run.
    pub on_error: OnError,
    /// A separate base learning rate for the fusion weights (LLaVA's `mm_projector_lr`); `None`
    /// = one learning rate for everything, the paper's recipe. The stages set it from the
    /// key-hashed `[pretrain]`/`[finetune]` `mm_projector_lr`.
    pub fusion_lr: Option<f64>,
    /// The `encode` stage's output for this dataset: tower features are read from it instead of
    /// computed (same values; see `crate::data::encoded`).
    pub encoded: Option<Arc<EncodedFeatures>>,
}

impl Default for TrainerOptions {
    fn default() -> Self {
        TrainerOptions {
            max_grad_norm: Some(1.0),
            checkpoint_every: 100,
            keep_checkpoints: 2,
            log_every: 10,
            progress: true,
            stop_after: None,
            feature_cache_bytes: 1 << 30,
            group_by_modality: false,
            on_error: OnError::Fail,
            fusion_lr: None,
            encoded: None,
        }
    }
}

/// Where the loop reports to (a stage's context, or a test's collector).
pub trait TrainObserver {
    /// One metric value; `step` `None` for a final value.
    fn metric(&mut self, name: &str, step: Option<u64>, value: f64) -> Result<()>;
    /// One human-readable log line.
    fn log(&mut self, line: &str);
}

/// Collects metrics in memory (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MetricLog {
    pub values: Vec<(String, Option<u64>, f64)>,
    pub lines: Vec<String>,
}

impl MetricLog {
    /// The values of metric `name`, in order.
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.values
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
            .collect()
    }
}

impl TrainObserver for MetricLog {
    fn metric(&mut self, name: &str, step: Option<u64>, value: f64) -> Result<()> {
        self.values.push((name.to_string(), step, value));
        Ok(())
    }
    fn log(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// Optimiser steps done (including those before a resume).
    pub steps: u64,
    /// Steps the schedule was built for.
    pub total_steps: u64,
    /// Mean step loss over the whole run.
    pub train_loss: f64,
    /// Loss of the last step.
    pub last_loss: f64,
    /// Real tokens (text + visual) trained on, whole run.
    pub tokens: u64,
    /// Wall time of this process's part of the run.
    pub seconds: f64,
    /// The step this process resumed from, if any.
    pub resumed_from: Option<u64>,
    /// `false` when stopped early by `stop_after`.
    pub completed: bool,
}

/// The lr multiplier of `scheduler` after `step` steps (HF's `get_*_schedule_with_warmup`).
pub fn lr_multiplier(scheduler: Scheduler, schedule: &CosineSchedule, step: u64) -> f64 {
    let w = schedule.warmup_steps;
    if step < w {
        return step as f64 / w.max(1) as f64;
    }
    match scheduler {
        Scheduler::Cosine => schedule.multiplier(step),
        Scheduler::Constant => 1.0,
        Scheduler::Linear => {
            let rest = schedule.total_steps.saturating_sub(w).max(1) as f64;
            ((schedule.total_steps.saturating_sub(step)) as f64 / rest).max(0.0)
        }
    }
}

/// The loader configuration a run uses.
pub fn loader_config(
    model: &Mllm,
    hp: &TrainSettings,
    seed: u64,
    opts: &TrainerOptions,
) -> LoaderConfig {
    LoaderConfig {
        template: hp.template,
        budget: TokenBudget {
            max_len: hp.max_len as usize,
            image_tokens: model.config().image_tokens,
        },
        aspect: hp.image_aspect,
        sampler: SamplerConfig {
            seed,
            shuffle: true,
            group_by_modality: opts.group_by_modality,
            batch_size: hp.batch.max(1) as usize,
        },
        drop_last: false,
        on_error: opts.on_error,
    }
}

/// The tower features of a batch, through the cache: `[B, n, dv]` per selected hidden state.
pub fn batch_features(
    model: &Mllm,
    batch: &Batch,
    cache: &mut FeatureCache,
) -> Result<Vec<Tensor>> {
    let k = model.vision_indices().len();
    let zero = model.zero_features(1)?;
    let mut rows: Vec<Option<Vec<Tensor>>> = vec![None; batch.batch_size];
    let mut todo = Vec::new();
    for (r, img) in batch.images.iter().enumerate() {
        match img {
            None => rows[r] = Some(zero.clone()),
            Some(spec) => match cache.get(&spec.path, spec.aspect) {
                Some(f) => rows[r] = Some(f),
                None => todo.push(r),
            },
        }
    }
    if let (false, Some(enc)) = (todo.is_empty(), cache.encoded()) {
        let tower = model.tower();
        for &r in &todo {
            let spec = batch.images[r].as_ref().unwrap();
            if spec.aspect != enc.aspect() {
                bail!(
                    "record {} wants its image made {}, the encode output {} holds {} images",
                    batch.ids[r],
                    spec.aspect.as_str(),
                    enc.dir().display(),
                    enc.aspect().as_str()
                );
            }
            let f = enc.features(
                &spec.path,
                model.vision_indices(),
                tower.device(),
                tower.dtype(),
            )?;
            rows[r] = Some(f);
        }
        todo.clear();
    }
    if !todo.is_empty() {
        let proc = model.image_processor();
        let mut pixels = Vec::with_capacity(todo.len());
        for &r in &todo {
            let spec = batch.images[r].as_ref().unwrap();
            let p = proc
                .pixel_values(&spec.path, spec.aspect)
                .with_context(|| {
                    format!("image {} of record {}", spec.path.display(), batch.ids[r])
                })?;
            pixels.push(p);
        }
        let pixels = Tensor::stack(&pixels, 0)?.to_device(model.tower().device())?;
        let feats = model.image_features(&pixels)?;
        for (j, &r) in todo.iter().enumerate() {
            let f: Vec<Tensor> = feats
                .iter()
                .map(|t| t.narrow(0, j, 1)?.contiguous())
                .collect::<candle_core::Result<_>>()?;
            let spec = batch.images[r].as_ref().unwrap();
            cache.insert(&spec.path, spec.aspect, f.clone());
            rows[r] = Some(f);
        }
    }
    (0..k)
        .map(|i| {
            let parts: Vec<Tensor> = rows
                .iter()
                .map(|r| r.as_ref().unwrap()[i].clone())
                .collect();
            Ok(Tensor::cat(&parts, 0)?)
        })
        .collect()
}

/// The model batch of a data batch.
pub fn mllm_batch(model: &Mllm, batch: &Batch, cache: &mut FeatureCache) -> Result<MllmBatch> {
    let cut = |row: &[i64], r: usize| row[..batch.lengths[r]].to_vec();
    Ok(MllmBatch {
        ids: (0..batch.batch_size)
            .map(|r| cut(batch.row_ids(r), r))
            .collect(),
        labels: (0..batch.batch_size)
            .map(|r| cut(batch.row_labels(r), r))
            .collect(),
        features: batch_features(model, batch, cache)?,
        has_image: batch.images.iter().map(Option::is_some).collect(),
    })
}

/// Trains the variables of `trainable` (and nothing else) on `dataset`; see the module docs.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &Mllm,
    trainable: &VarMap,
    dataset: &LlavaDataset,
    hp: &TrainSettings,
    seed: u64,
    checkpoint_dir: &Path,
    opts: &TrainerOptions,
    obs: &mut dyn TrainObserver,
) -> Result<TrainSummary> {
    if dataset.is_empty() {
        bail!(
            "{}: the dataset has no usable records",
            dataset.json.display()
        );
    }
    let started = Instant::now();
    let cfg = loader_config(model, hp, seed, opts);
    let mut loader = DataLoader::new(dataset, model.tokenizer(), cfg);
    // Tokenise everything once before the first step: a sample that cannot be trained on
    // fails the run now, not hours in.
    let audit = loader.audit();
    // What `on_error = "skip"` left out: malformed records at load time, and samples the
    // template or length budget cannot train on (always 0 under `fail`, which stops instead).
    obs.metric("skipped_records", None, dataset.skipped.len() as f64)?;
    obs.metric("skipped_samples", None, audit.unusable.len() as f64)?;
    if !dataset.skipped.is_empty() || !audit.unusable.is_empty() {
        obs.log(&format!(
            "{}: on_error = \"skip\" left out {} malformed records and {} unusable samples{}",
            dataset.json.display(),
            dataset.skipped.len(),
            audit.unusable.len(),
            dataset
                .skipped
                .first()
                .map(|s| format!(" (first: record {}: {})", s.index, s.reason))
                .unwrap_or_default()
        ));
    }
    if let (Some(first), OnError::Fail) = (audit.unusable.first(), opts.on_error) {
        bail!(
            "{}: {} of {} records cannot be trained on; the first is record {} (id \"{}\"): {} \
             (or set on_error = \"skip\" in the manifest's [data] entry to leave them out)",
            dataset.json.display(),
            audit.unusable.len(),
            audit.records,
            first.index,
            first.id,
            first.reason
        );
    }
    if audit.usable == 0 {
        bail!(
            "{}: none of its {} records can be trained on{}",
            dataset.json.display(),
            audit.records,
            audit
                .unusable
                .first()
                .map(|f| format!(
                    "; the first is record {} (id \"{}\"): {}",
                    f.index, f.id, f.reason
                ))
                .unwrap_or_default()
        );
    }
    obs.log(&format!(
        "{}: {} samples, {} truncated to max_len {}, {} supervised tokens",
        dataset.json.display(),
        audit.usable,
        audit.truncated,
        hp.max_len,
        audit.supervised_tokens
    ));
    let accum = hp.grad_accum.max(1);
    let batches = loader.batches_per_epoch() as u64;
    let per_epoch = batches.div_ceil(accum).max(1);
    let mut total = per_epoch * hp.epochs.max(1);
    if let Some(m) = hp.max_steps {
        total = total.min(m.max(1));
    }
    let warmup = match (hp.warmup_steps, hp.warmup_ratio) {
        (Some(s), _) => Warmup::Steps(s),
        (None, Some(r)) => Warmup::Ratio(r),
        (None, None) => Warmup::Steps(0),
    };
    let schedule = CosineSchedule::new(total, warmup)?;
    let named = named_vars(trainable);
    if named.is_empty() {
        bail!("nothing to train: the trainable VarMap is empty");
    }
    let groups = match opts.fusion_lr {
        None => param_groups(named, hp.lr, hp.weight_decay),
        Some(lr) => {
            let fusion = model.fusion_weight_names();
            let (f, rest): (Vec<_>, Vec<_>) =
                named.into_iter().partition(|(n, _)| fusion.contains(n));
            let mut g = param_groups(rest, hp.lr, hp.weight_decay);
            for mut group in param_groups(f, lr, hp.weight_decay) {
                group.name = format!("fusion_{}", group.name);
                g.push(group);
            }
            g
        }
    };
    let mut optim = AdamW::new(groups, AdamWConfig::default())?;
    let vars = optim.vars();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut step, mut loss_sum, mut tokens_total, mut resumed_from) = (0u64, 0.0f64, 0u64, None);
    if let Some(ck) = latest_checkpoint(checkpoint_dir)? {
        let mut map = trainable.clone();
        let state = ck.restore(&mut map, &mut optim)?;
        if state.seed != seed {
            bail!(
                "checkpoint {} was written with seed {}, this run has seed {seed}; remove it or \
                 fix the seed",
                ck.dir.display(),
                state.seed
            );
        }
        step = state.step;
        rng = state.rng.restore()?;
        let epoch = state.extra["epoch"].as_u64().unwrap_or(0);
        loader.seek(DataPosition {
            epoch,
            offset: state.data_position as usize,
        })?;
        loss_sum = state.extra["loss_sum"].as_f64().unwrap_or(0.0);
        tokens_total = state.extra["tokens"].as_u64().unwrap_or(0);
        resumed_from = Some(step);
        obs.log(&format!(
            "resuming from {} (step {step} of {total})",
            ck.dir.display()
        ));
    }
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} train [{bar:30}] {pos}/{len} steps {msg} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position(step);
    let mut cache = FeatureCache::new(opts.feature_cache_bytes).backed_by(opts.encoded.clone());
    let mut last_loss = f64::NAN;
    let mut epochs_without_batch = 0;
    while step < total {
        let t0 = Instant::now();
        let mut acc = GradAccumulator::new(vars.clone());
        let (mut micro, mut loss_acc, mut tokens) = (0u64, 0.0f64, 0usize);
        while micro < accum {
            let Some(batch) = loader.next_batch()? else {
                loader.seek(loader.position().next_epoch())?;
                if micro > 0 {
                    break;
                }
                epochs_without_batch += 1;
                if epochs_without_batch > 1 {
                    bail!("{}: an epoch produced no batch", dataset.json.display());
                }
                continue;
            };
            epochs_without_batch = 0;
            let mb = mllm_batch(model, &batch, &mut cache)?;
            let (loss, n) = model.train_loss(&mb).with_context(|| {
                format!(
                    "forward pass at step {} (records {:?})",
                    step + 1,
                    batch.ids
                )
            })?;
            loss_acc += loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            tokens += n;
            acc.add(loss.backward()?)?;
            micro += 1;
        }
        let mut grads = acc.take(1.0 / micro as f64)?;
        let norm = match opts.max_grad_norm {
            Some(m) => clip_grad_norm(&mut grads, &vars, m)?,
            None => crate::train::grad::grad_norm(&grads, &vars)?,
        };
        let loss = loss_acc / micro as f64;
        if !norm.is_finite() || !loss.is_finite() {
            bail!(
                "step {}: loss {loss}, gradient norm {norm}: training diverged; lower the \
                 learning rate (now {})",
                step + 1,
                hp.lr
            );
        }
        let mult = lr_multiplier(hp.scheduler, &schedule, step);
        optim.step(&grads, mult)?;
        step += 1;
        last_loss = loss;
        loss_sum += loss;
        tokens_total += tokens as u64;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        obs.metric("loss", Some(step), loss)?;
        obs.metric("lr", Some(step), hp.lr * mult)?;
        if let Some(f) = opts.fusion_lr {
            obs.metric("fusion_lr", Some(step), f * mult)?;
        }
        obs.metric("grad_norm", Some(step), norm)?;
        obs.metric("tokens_per_s", Some(step), tokens as f64 / secs)?;
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.4}"));
        if opts.log_every > 0 && (step % opts.log_every == 0 || step == total) {
            obs.log(&format!(
                "step {step}/{total} loss {loss:.4} lr {:.3e} grad_norm {norm:.3} {:.0} tok/s",
                hp.lr * mult,
                tokens as f64 / secs
            ));
        }
        let stop = opts.stop_after == Some(step);
        if opts.checkpoint_every > 0 && (step % opts.checkpoint_every == 0 || stop) && step < total
        {
            let pos = loader.position();
            let state = TrainState {
                step,
                data_position: pos.offset as u64,
                seed,
                rng: RngState::capture(&rng),
                extra: serde_json::json!({
                    "epoch": pos.epoch,
                    "loss_sum": loss_sum,
                    "tokens": tokens_total,
                    "last_loss": loss,
                }),
            };
            save_checkpoint(checkpoint_dir, &state, trainable, &optim)?;
            prune_checkpoints(checkpoint_dir, opts.keep_checkpoints.max(1))?;
        }
        if stop && step < total {
            bar.abandon();
            return Ok(TrainSummary {
                steps: step,
                total_steps: total,
                train_loss: loss_sum / step as f64,
                last_loss,
                tokens: tokens_total,
                seconds: started.elapsed().as_secs_f64(),
                resumed_from,
                completed: false,
            });
        }
    }
    bar.finish_and_clear();
    let train_loss = loss_sum / step.max(1) as f64;
    obs.metric("train_loss", None, train_loss)?;
    obs.log(&format!(
        "trained {step} steps: train_loss {train_loss:.4}, {tokens_total} tokens, feature cache \
         {} hits / {} misses{}",
        cache.hits,
        cache.misses,
        match cache.encoded() {
            Some(e) => format!(" (misses read from {})", e.dir().display()),
            None => " (misses ran the tower)".into(),
        }
    ));
    Ok(TrainSummary {
        steps: step,
        total_steps: total,
        train_loss,
        last_loss,
        tokens: tokens_total,
        seconds: started.elapsed().as_secs_f64(),
        resumed_from,
        completed: true,
    })
}

/// The device training runs on: `MLVF_DEVICE` (`auto`, `cpu`, `cuda:N`), default `auto`.
pub fn training_device() -> Result<Device> {
    let spec = std::env::var("MLVF_DEVICE").unwrap_or_else(|_| "auto".into());
    crate::device::parse_device(&spec)
}
