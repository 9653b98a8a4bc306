//! `eval`: answers one benchmark with the finetuned model of its dependency and scores it.
//!
//! Generation is resumable: answers are cached per sample in the task's checkpoint directory,
//! which survives killed attempts, so a new attempt continues at the next unanswered sample.
//! The published directory holds lmms-eval-shaped outputs (`predictions.jsonl`,
//! `samples_<task>.jsonl`, `results.json`, `metrics.json`) and the metrics are recorded for the
//! controller: every metric under its lmms-eval name, raw; and `primary_score`, the benchmark's
//! primary metric on its reporting scale (`report.scale`, e.g. exact match × 100 — the number
//! the paper's tables print), marked primary.
//!
//! Answer length: the benchmark's own `generation.max_new_tokens` (lmms-eval's value), capped
//! by `[eval] max_new_tokens`. Only greedy decoding is implemented; other settings are refused.
//!
//! Samples are answered in batches of `[eval] batch` (default [`DEFAULT_EVAL_BATCH`]): a
//! run-time option in the task spec ([`crate::task::runtime::EVAL_BATCH`]), never part of the key, because a batch
//! decodes every row exactly as it would alone (`tests/mllm_batch.rs`).
//!
//! Every eval also records accuracy per question type (`acc/<type>`) and the majority-answer
//! baseline (`majority`, `majority/<type>`; [`crate::eval::breakdown`]). An eval under a
//! grounding control (its config's `control`) records its metrics under `<control>/…`, marks
//! none primary, and records the gains against its with-image eval ([`super::grounding`]).

use super::prepare::benchmark_dir;
use super::{grounding, Stage, StageContext};
use crate::eval::runner::PREDICTIONS_FILE;
use crate::eval::{evaluate, run_benchmark, Benchmark, RunInfo, RunOptions};
use crate::manifest::stages::DEFAULT_EVAL_BATCH;
use crate::model::mllm::Mllm;
use crate::plan::config::EvalConfig;
use crate::task::runtime::EVAL_BATCH;
use crate::task::{StageKind, Task};
use crate::train::trainer::training_device;
use anyhow::{bail, Context};

/// The eval stage.
#[derive(Default)]
pub struct EvalStage;

/// The metric name under which the primary metric is recorded on its reporting scale.
pub const PRIMARY_SCORE: &str = "primary_score";

impl Stage for EvalStage {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> anyhow::Result<()> {
        let cfg: EvalConfig = serde_json::from_value(task.config.clone())
            .context("the task's config is not an eval config (re-plan the sweep)")?;
        if cfg.settings.temperature != 0.0 || cfg.settings.num_beams != 1 {
            bail!(
                "only greedy decoding is implemented: set [eval] temperature = 0 and num_beams = 1 \
                 (got temperature {}, num_beams {})",
                cfg.settings.temperature,
                cfg.settings.num_beams
            );
        }
        let model_dir = ctx
            .dep(StageKind::Finetune)
            .or_else(|| ctx.dep(StageKind::Pretrain))
            .context("an eval task needs its finetune task among the deps (re-plan the sweep)")?
            .to_path_buf();
        let with_image = match cfg.control {
            Some(_) => Some(grounding::WithImage::read(ctx)?),
            None => None,
        };
        let bench_dir = benchmark_dir(&cfg.benchmark, &ctx.deps)?;
        let bench = Benchmark::load(&bench_dir)
            .with_context(|| format!("loading benchmark {}", bench_dir.display()))?;
        let device = training_device()?;
        let mut model = Mllm::load(&model_dir, &device)?;

        let max_new_tokens = bench
            .manifest
            .generation
            .max_new_tokens
            .min(cfg.settings.max_new_tokens as usize);
        let opts = RunOptions {
            limit: cfg.settings.limit.map(|n| n as usize),
            max_new_tokens: Some(max_new_tokens),
            template: None,
            batch: eval_batch(task)?,
            control: cfg.control,
        };
        // Generate into the checkpoint dir (resumable across attempts), then let `evaluate`
        // score from a copy in the output dir: every answer is cached, so it generates nothing.
        std::fs::create_dir_all(&ctx.checkpoint_dir)?;
        let cache = ctx.checkpoint_dir.join(PREDICTIONS_FILE);
        let run = run_benchmark(&mut model, &bench, &cache, &opts)?;
        writeln!(
            ctx.log(),
            "{}{}: {} samples, {} cached from an earlier attempt, {} generated",
            bench.manifest.task,
            cfg.control
                .map_or(String::new(), |c| format!(" under control {c}")),
            run.total,
            run.cached,
            run.generated
        )?;
        std::fs::copy(&cache, ctx.out_dir.join(PREDICTIONS_FILE))?;
        let info = RunInfo {
            model: Some("mlvf".into()),
            model_args: Some(format!("pretrained={}", model_dir.display())),
            limit: opts.limit,
        };
        let (_, report) = evaluate(&mut model, &bench, &ctx.out_dir, &opts, &info)?;
        let primary = report.primary_value.with_context(|| {
            format!(
                "benchmark {} produced no value for its primary metric `{}`",
                bench.manifest.task, report.primary
            )
        })?;
        let scale = bench.manifest.report.scale;
        if let (Some(control), Some(with_image)) = (cfg.control, &with_image) {
            let score = primary * scale;
            return grounding::record(
                ctx,
                control,
                with_image,
                &report,
                score,
                run.control_unchanged,
            );
        }
        for (name, value) in &report.metrics {
            if value.is_finite() {
                ctx.record(name, None, *value)?;
            }
        }
        for (name, value) in report.breakdown.metrics(scale) {
            ctx.record(&name, None, value)?;
        }
        ctx.record_primary(PRIMARY_SCORE, primary * scale)
    }
}

/// The generation batch of an eval task: its run-time option, else [`DEFAULT_EVAL_BATCH`].
fn eval_batch(task: &Task) -> anyhow::Result<usize> {
    match task.runtime.get(EVAL_BATCH) {
        None => Ok(DEFAULT_EVAL_BATCH as usize),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(n as usize),
            _ => bail!("[eval] batch must be a positive integer (the task spec says {v})"),
        },
    }
}
