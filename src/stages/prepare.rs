//! The `prepare` stage: generates a synthetic world, or trains a tiny foundation model on one.
//!
//! The planner (`crate::plan::synth` has the manifest spelling) makes one `world` task per
//! distinct world config and one `model` task per `synth:` model entry, which depends on its
//! world's task. `synth:` datasets and benchmarks are *parts* of a world: their consumers depend
//! on the world task and find their files with [`dataset_files`] / [`benchmark_dir`].
//!
//! # Published layouts
//!
//! ```text
//! <world task>/prepared.json          {"format": "mlvf-prepared/1", "kind": "world", "entry": …}
//! <world task>/world/world.json       crate::synth::WorldSummary (paths relative to world/)
//! <world task>/world/pretrain/captions.json + images/      LLaVA JSON (synth:pretrain)
//! <world task>/world/finetune/instructions.json + images/  LLaVA JSON (synth:finetune)
//! <world task>/world/benchmarks/<synth_task>/              mmeval-jsonl/1 (synth:<benchmark>)
//! <world task>/world/corpus.txt
//! <model task>/prepared.json          {"format", "kind": "model", "entry": <ModelSpec>, "report"}
//! <model task>/model/config.json + model.safetensors       HF layout
//!                   + preprocessor_config.json (vision) | tokenizer.json (llama)
//! ```
//!
//! A vision model dir loads with `VisionTower::from_dir` and `ImageProcessor::for_model_dir`,
//! an LLM dir with `ModelFiles::from_dir` + `Llama::load`, exactly like downloaded checkpoints;
//! [`model_dir`] finds it among a task's deps. Training checkpoints live in the task's
//! `checkpoint_dir`, so a killed attempt resumes where it stopped.

use super::{DepDir, Stage, StageContext};
use crate::manifest::entries::Source;
use crate::model::vision::VisionArch;
use crate::plan::config::{BenchmarkSpec, DataSpec, ModelSpec, PrepareConfig};
use crate::plan::synth::SynthPart;
use crate::synth::foundation::{lm, vision, TrainHooks};
use crate::synth::{SynthConfig, WorldSummary};
use crate::task::{StageKind, Task};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

/// The marker every prepare task publishes: what it is and which entry it was built from.
pub const PREPARED_FILE: &str = "prepared.json";
/// `format` of [`PREPARED_FILE`].
pub const PREPARED_FORMAT: &str = "mlvf-prepared/1";
/// The world's directory inside a world task.
pub const WORLD_DIR: &str = "world";
/// The model's HF directory inside a model task.
pub const MODEL_DIR: &str = "model";

/// The stage implementation registered for [`StageKind::Prepare`].
pub struct PrepareStage;

impl Stage for PrepareStage {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> Result<()> {
        let cfg: PrepareConfig = serde_json::from_value(task.config.clone())
            .with_context(|| format!("task {}: not a prepare config", task.key.0))?;
        match cfg.kind.as_str() {
            "world" => prepare_world(&cfg.entry, ctx),
            "model" => {
                let spec: ModelSpec = serde_json::from_value(cfg.entry.clone())
                    .context("prepare: the model entry is not a model spec")?;
                prepare_model(&spec, ctx)
            }
            other => bail!(
                "prepare task {}: unknown kind `{other}` (this build prepares `world` and `model`; re-plan the manifest)",
                task.key.0
            ),
        }
    }
}

fn write_marker(ctx: &StageContext, kind: &str, entry: &Json, report: Json) -> Result<()> {
    let marker = json!({
        "format": PREPARED_FORMAT,
        "kind": kind,
        "entry": entry,
        "report": report,
    });
    let path = ctx.out_dir.join(PREPARED_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&marker)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn prepare_world(entry: &Json, ctx: &mut StageContext) -> Result<()> {
    let cfg: SynthConfig = serde_json::from_value(entry["params"].clone())
        .context("prepare: the world entry's params are not a world config")?;
    let start = std::time::Instant::now();
    let summary = crate::synth::generate(&cfg, &ctx.out_dir.join(WORLD_DIR))?;
    let seconds = start.elapsed().as_secs_f64();
    writeln!(
        ctx.log(),
        "world: {} pretrain, {} finetune records, {} benchmarks in {seconds:.1}s",
        summary.pretrain.records,
        summary.finetune.records,
        summary.benchmarks.len()
    )
    .ok();
    ctx.record("generate_seconds", None, seconds)?;
    write_marker(
        ctx,
        "world",
        entry,
        json!({ "pretrain": summary.pretrain.records, "finetune": summary.finetune.records }),
    )
}

fn prepare_model(spec: &ModelSpec, ctx: &mut StageContext) -> Result<()> {
    let what = match spec.source() {
        Ok(Source::Synth(w)) => w,
        _ => bail!(
            "prepare: model source `{}` is not `synth:` (only synthetic models are prepared)",
            spec.source
        ),
    };
    let (world, _) = find_world(&ctx.deps, spec.params.get("world"))?;
    let out = ctx.out_dir.join(MODEL_DIR);
    let checkpoints = ctx.checkpoint_dir.clone();
    let report = {
        // Straight to metrics.jsonl, so a long run's curves can be followed while it trains.
        let mut record = |name: &str, step: Option<u64>, value: f64| -> Result<()> {
            ctx.record(name, step, value)
        };
        let mut hooks = TrainHooks {
            checkpoint_dir: &checkpoints,
            metric: &mut record,
            stop_after: None,
        };
        match what.as_str() {
            "clip" | "siglip" => {
                let arch = if what == "clip" {
                    VisionArch::Clip
                } else {
                    VisionArch::Siglip
                };
                let depth = spec
                    .depth
                    .context("a synth vision model needs `depth` (its number of layers)")?;
                let p = vision::VisionParams::from_params(&spec.params)?;
                vision::train_vision(arch, depth, &p, &world, &out, &mut hooks)?
                    .map(|r| serde_json::to_value(r).expect("report serialises"))
            }
            "llama" => {
                let layers = spec
                    .layers
                    .context("a synth llama needs `layers` (its number of decoder layers)")?;
                let p = lm::LmParams::from_params(&spec.params)?;
                lm::train_lm(layers, &p, &world, &out, &mut hooks)?
                    .map(|r| serde_json::to_value(r).expect("report serialises"))
            }
            _ => {
                bail!("prepare: the engine cannot build model `synth:{what}` (clip, siglip, llama)")
            }
        }
    };
    let Some(report) = report else {
        bail!("prepare: training stopped before its last step; the next attempt resumes from the checkpoint");
    };
    for (k, v) in report.as_object().into_iter().flatten() {
        if let Some(x) = v.as_f64() {
            if k != "steps" && k != "layers" {
                ctx.record(k, None, x)?;
            }
        }
    }
    writeln!(ctx.log(), "synth:{what}: {report}").ok();
    write_marker(ctx, "model", &serde_json::to_value(spec)?, report)
}

/// Reads a dep's [`PREPARED_FILE`], if it has one.
fn marker(dir: &Path) -> Option<Json> {
    let text = std::fs::read_to_string(dir.join(PREPARED_FILE)).ok()?;
    let v: Json = serde_json::from_str(&text).ok()?;
    (v["format"] == PREPARED_FORMAT).then_some(v)
}

/// The world among `deps` (the world root, i.e. `<task>/world`, and its summary). With
/// `world` (a resolved `params.world`), the one generated from exactly that config.
pub fn find_world(deps: &[DepDir], world: Option<&Json>) -> Result<(PathBuf, WorldSummary)> {
    for d in deps.iter().filter(|d| d.stage == StageKind::Prepare) {
        let Some(m) = marker(&d.dir) else { continue };
        if m["kind"] != "world" || world.is_some_and(|w| &m["entry"]["params"] != w) {
            continue;
        }
        let root = d.dir.join(WORLD_DIR);
        let summary = WorldSummary::load(&root)?;
        return Ok((root, summary));
    }
    bail!(
        "none of this task's {} dependencies is the synthetic world it reads (a prepare task with kind `world`{}); re-plan the manifest",
        deps.len(),
        if world.is_some() { " and this world config" } else { "" }
    )
}

/// A dataset's LLaVA JSON and image root: the files of a file dataset, or the part of the
/// world dep a `synth:pretrain` / `synth:finetune` dataset names.
pub fn dataset_files(spec: &DataSpec, deps: &[DepDir]) -> Result<(PathBuf, PathBuf)> {
    let Some(source) = &spec.source else {
        let (Some(json), Some(images)) = (&spec.json, &spec.images) else {
            bail!("dataset has neither `json` + `images` nor a `synth:` source");
        };
        return Ok((PathBuf::from(json), PathBuf::from(images)));
    };
    let what = source.strip_prefix("synth:").with_context(|| {
        format!("dataset source `{source}` is not synthetic; give `json` and `images`")
    })?;
    let (root, summary) = find_world(deps, spec.params.get("world"))?;
    let split = match SynthPart::data(what) {
        Some(SynthPart::Pretrain) => &summary.pretrain,
        Some(SynthPart::Finetune) => &summary.finetune,
        _ => bail!("`synth:{what}` is not a training split (use synth:pretrain or synth:finetune)"),
    };
    Ok((root.join(&split.json), root.join(&split.images)))
}

/// A benchmark's directory: its `path`, or the world dep's `benchmarks/<task>` for `synth:`.
pub fn benchmark_dir(spec: &BenchmarkSpec, deps: &[DepDir]) -> Result<PathBuf> {
    if let Some(p) = &spec.path {
        return Ok(PathBuf::from(p));
    }
    let source = spec.source.as_deref().unwrap_or_default();
    let what = source
        .strip_prefix("synth:")
        .with_context(|| format!("benchmark source `{source}` is neither a path nor synth:"))?;
    let (root, summary) = find_world(deps, spec.params.get("world"))?;
    summary
        .benchmark_dir(&root, what)
        .with_context(|| format!("the world at {} has no benchmark `{what}`", root.display()))
}

/// The HF directory of a `synth:` model among `deps` (its prepare task's `model/`), matched
/// by the exact entry the task was built from. Other sources are not prepared: resolve them
/// with `crate::model::hub`.
pub fn model_dir(spec: &ModelSpec, deps: &[DepDir]) -> Result<PathBuf> {
    let want = serde_json::to_value(spec)?;
    for d in deps.iter().filter(|d| d.stage == StageKind::Prepare) {
        if let Some(m) = marker(&d.dir) {
            if m["kind"] == "model" && m["entry"] == want {
                return Ok(d.dir.join(MODEL_DIR));
            }
        }
    }
    bail!(
        "no dependency of this task prepared model `{}` with these settings; re-plan the manifest",
        spec.source
    )
}
