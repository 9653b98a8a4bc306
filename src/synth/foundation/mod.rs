//! Tiny foundation models the engine trains itself on a synthetic world, so the offline study
//! has a CLIP-style and a SigLIP-style vision tower and a LLaMA LM without any download.
//!
//! * [`vision`]: a 12-layer ViT (class token + quick-GELU for CLIP, no class token + GELU-tanh
//!   for SigLIP) trained contrastively against a bag-of-words caption encoder on the world's
//!   pretrain images and captions; CLIP uses the symmetric InfoNCE loss, SigLIP the pairwise
//!   sigmoid loss. Only the tower is published (HF layout + `preprocessor_config.json`).
//! * [`tokenizer`] + [`lm`]: a byte-level BPE tokenizer trained with the `tokenizers` crate and
//!   a LLaMA (GQA, RoPE, SwiGLU) trained as a causal LM on the world's `corpus.txt`.
//!
//! Every trainer here is a deterministic function of its parameters and the world on CPU:
//! weights are initialised from a ChaCha8 stream seeded by (seed, parameter name) rather than
//! candle's thread RNG, and the data order is a per-epoch seeded permutation indexed by the
//! step. Training checkpoints (weights, AdamW state, step) go to a caller-given directory every
//! N steps, and a new run resumes from the newest valid one with bit-identical results.

pub mod lm;
pub mod patch_heads;
pub mod probe;
pub mod text_qa;
pub mod tokenizer;
pub mod vision;

use crate::train::checkpoint::{self, TrainState};
use crate::train::grad::clip_grad_norm;
use crate::train::optim::{named_vars, param_groups, AdamW, AdamWConfig};
use crate::train::schedule::{CosineSchedule, Warmup};
use anyhow::{Context, Result};
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;

/// Receives `(name, Some(step), value)` per step and `(name, None, value)` at the end.
pub type MetricSink<'a> = &'a mut dyn FnMut(&str, Option<u64>, f64) -> Result<()>;

/// Where a trainer reports and checkpoints, and (for tests and time budgets) when it stops.
pub struct TrainHooks<'a> {
    /// Checkpoints live here (created if needed); the newest valid one is resumed from.
    pub checkpoint_dir: &'a Path,
    /// Records a metric: `(name, Some(step), value)` per step, `(name, None, value)` at the end.
    pub metric: MetricSink<'a>,
    /// Stop (after checkpointing) once this many steps are done; `None` trains to the end.
    pub stop_after: Option<u64>,
}

/// Optimisation settings shared by the trainers (AdamW + cosine schedule with warmup).
#[derive(Clone, Debug, PartialEq)]
pub struct Optim {
    pub steps: u64,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: u64,
    /// Gradient-norm clipping (HF's `max_grad_norm`).
    pub max_grad_norm: f64,
    pub checkpoint_every: u64,
    pub seed: u64,
    /// Cosine decay after warm-up (`false`: constant learning rate after warm-up).
    pub cosine: bool,
}

/// How a training run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Every step ran.
    Done,
    /// [`TrainHooks::stop_after`] was reached; the last checkpoint holds the state.
    Stopped,
}

/// A ChaCha8 stream for (seed, label): independent streams for init, data order, ….
pub fn rng_for(seed: u64, label: &str) -> ChaCha8Rng {
    let h = blake3::hash(format!("{seed}\u{0}{label}").as_bytes());
    ChaCha8Rng::from_seed(*h.as_bytes())
}

/// A standard normal sample (Box–Muller; `rand_distr` is not a dependency).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1 = ((rng.next_u32() >> 8) as f64 + 0.5) / (1u64 << 24) as f64;
    let u2 = ((rng.next_u32() >> 8) as f64) / (1u64 << 24) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Re-initialises every variable of `map` from seeded streams, HF style: matrices (and CLIP's
/// class embedding) ~ N(0, `std`), biases 0, other vectors (norm weights, constants the model
/// set on purpose) untouched. candle's own random init draws from a thread RNG, which would
/// make training non-reproducible.
pub fn seeded_init(map: &VarMap, seed: u64, std: f32) -> Result<()> {
    for (name, var) in named_vars(map) {
        let t = var.as_tensor();
        let n = t.elem_count();
        let values: Option<Vec<f32>> = if name.ends_with(".bias") {
            Some(vec![0.0; n])
        } else if t.rank() >= 2 || name.ends_with("class_embedding") {
            let mut rng = rng_for(seed, &format!("init/{name}"));
            Some((0..n).map(|_| normal(&mut rng) * std).collect())
        } else {
            None
        };
        if let Some(v) = values {
            let new = Tensor::from_vec(v, t.shape(), t.device())?.to_dtype(t.dtype())?;
            var.set(&new)
                .with_context(|| format!("initialising {name}"))?;
        }
    }
    Ok(())
}

/// Sample indices of one step: positions `[step·batch, (step+1)·batch)` of an endless stream of
/// per-epoch seeded permutations of `0..n`. A function of the step alone, so a resumed run
/// draws exactly what the uninterrupted one would have.
pub struct DataOrder {
    n: usize,
    seed: u64,
    perms: HashMap<u64, Vec<usize>>,
}

impl DataOrder {
    pub fn new(n: usize, seed: u64) -> DataOrder {
        DataOrder {
            n,
            seed,
            perms: HashMap::new(),
        }
    }

    fn perm(&mut self, epoch: u64) -> &[usize] {
        let (n, seed) = (self.n, self.seed);
        self.perms.entry(epoch).or_insert_with(|| {
            let mut p: Vec<usize> = (0..n).collect();
            let mut rng = rng_for(seed, &format!("order/{epoch}"));
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                p.swap(i, j);
            }
            p
        })
    }

    /// The `batch` sample indices of step `step`.
    pub fn batch(&mut self, step: u64, batch: usize) -> Vec<usize> {
        let start = step * batch as u64;
        (0..batch as u64)
            .map(|k| {
                let pos = start + k;
                let (epoch, i) = (pos / self.n as u64, (pos % self.n as u64) as usize);
                self.perm(epoch)[i]
            })
            .collect()
    }
}

/// Runs `opt.steps` optimiser steps of `loss_at(step, metric)` over every variable of `map`, with
/// AdamW (HF's decay/no-decay split), the cosine schedule and gradient clipping; logs `loss`
/// per step, checkpoints every `checkpoint_every` steps (and at the end / at a stop), and
/// resumes from the newest valid checkpoint in `hooks.checkpoint_dir`. `loss_at` may record
/// metrics of its own (a held-out score every few steps) through the sink it is handed.
pub fn train_loop(
    map: &mut VarMap,
    opt: &Optim,
    hooks: &mut TrainHooks<'_>,
    mut loss_at: impl FnMut(u64, MetricSink<'_>) -> Result<Tensor>,
) -> Result<Finished> {
    let named = named_vars(map);
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let mut adamw = AdamW::new(
        param_groups(named, opt.lr, opt.weight_decay),
        AdamWConfig::default(),
    )?;
    let schedule = CosineSchedule::new(opt.steps, Warmup::Steps(opt.warmup_steps))?;
    let multiplier = |step: u64| {
        if opt.cosine || step < opt.warmup_steps {
            schedule.multiplier(step)
        } else {
            1.0
        }
    };
    let mut start = 0;
    if let Some(ckpt) = checkpoint::latest_checkpoint(hooks.checkpoint_dir)? {
        let state = ckpt.restore(map, &mut adamw)?;
        tracing::info!(step = state.step, dir = %ckpt.dir.display(), "resuming");
        start = state.step;
    }
    let every = opt.checkpoint_every.max(1);
    let save = |step: u64, map: &VarMap, adamw: &AdamW| -> Result<()> {
        let state = TrainState {
            step,
            data_position: step,
            seed: opt.seed,
            rng: checkpoint::RngState::capture(&rng_for(opt.seed, "train")),
            extra: serde_json::Value::Null,
        };
        checkpoint::save_checkpoint(hooks.checkpoint_dir, &state, map, adamw)?;
        checkpoint::prune_checkpoints(hooks.checkpoint_dir, 1)
    };
    for step in start..opt.steps {
        let loss = loss_at(step, &mut *hooks.metric)?;
        let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        anyhow::ensure!(
            value.is_finite(),
            "the loss became {value} at step {step}; lower `lr`"
        );
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, &vars, opt.max_grad_norm)?;
        adamw.step(&grads, multiplier(step))?;
        let done = step + 1;
        (hooks.metric)("loss", Some(done), value)?;
        let stop = hooks.stop_after == Some(done);
        if done % every == 0 || done == opt.steps || stop {
            save(done, map, &adamw)?;
        }
        if stop && done < opt.steps {
            return Ok(Finished::Stopped);
        }
    }
    Ok(Finished::Done)
}

/// Reads a trainer's parameters from a model entry's `params` (the `world` key is the
/// planner's and is skipped); unknown keys are errors that list the known ones.
pub fn params_from<T: serde::de::DeserializeOwned>(
    params: &serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<T> {
    let mut p = params.clone();
    p.remove("world");
    serde_json::from_value(serde_json::Value::Object(p))
        .with_context(|| format!("the `params` of a {what} model"))
}
