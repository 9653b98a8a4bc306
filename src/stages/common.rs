//! What the training stages share: finding models and datasets (a Hub id, a local directory, or
//! the published output of a `prepare` dependency for `synth:` entries), loop options from the
//! environment, and the stage context as a [`TrainObserver`].

use crate::manifest::entries::Source;
use crate::model::mllm::ModelPointer;
use crate::plan::config::{BenchmarkSpec, DataSpec, ModelSpec, PrepareConfig};
use crate::plan::{StageKind, Task};
use crate::stages::{DepDir, StageContext};
use crate::store::layout::SPEC_FILE;
use crate::train::data::{load_llava_json, LlavaDataset, LoadOptions};
use crate::train::trainer::{TrainObserver, TrainSummary, TrainerOptions};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

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

/// The task spec of a published dependency (its `spec.json`).
fn dep_task(dep: &DepDir) -> Result<Task> {
    let path = dep.dir.join(SPEC_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a task spec", path.display()))
}

/// The `prepare` dependency that built `entry` (compared by content, as keys are).
fn prepared<'a, T: Serialize>(
    ctx: &'a StageContext,
    kind: &str,
    entry: &T,
    what: &str,
) -> Result<&'a DepDir> {
    let want = serde_json::to_value(entry)?;
    for dep in ctx.deps.iter().filter(|d| d.stage == StageKind::Prepare) {
        let task = dep_task(dep)?;
        let Ok(cfg) = serde_json::from_value::<PrepareConfig>(task.config) else {
            continue;
        };
        if cfg.kind == kind && cfg.entry == want {
            return Ok(dep);
        }
    }
    bail!(
        "{what} is `synth:` but no prepare dependency of this task built it; re-plan the sweep \
         (`mlvf plan`) so the prepare task is listed among the deps"
    )
}

/// The first directory at or one level below `dir` that holds `file`.
fn find_with(dir: &Path, file: &str) -> Option<PathBuf> {
    if dir.join(file).is_file() {
        return Some(dir.to_path_buf());
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join(file).is_file())
        .collect();
    subs.sort();
    subs.into_iter().next()
}

/// Where a model entry's HF-layout directory is.
pub fn resolve_model(ctx: &StageContext, spec: &ModelSpec) -> Result<ModelPointer> {
    let source = spec
        .source()
        .map_err(|e| anyhow::anyhow!("model source `{}`: {e}", spec.source))?;
    let dir = match source {
        Source::Hf { .. } => crate::model::hub::resolve(&spec.source)?.dir,
        Source::Local(p) => p,
        Source::Synth(_) => {
            let dep = prepared(ctx, "model", spec, &format!("model `{}`", spec.source))?;
            find_with(&dep.dir, "config.json").with_context(|| {
                format!(
                    "the prepare task {} built `{}` but its output {} holds no config.json",
                    dep.key,
                    spec.source,
                    dep.dir.display()
                )
            })?
        }
    };
    Ok(ModelPointer {
        source: spec.source.clone(),
        dir,
    })
}

/// The conversations JSON and image folder of a prepared (`synth:<what>`) dataset. Looked for
/// at the top of the prepare output and one level below (a synthetic world keeps
/// `pretrain/captions.json` and `finetune/instructions.json`): `data.json`, else a JSON named
/// after `<what>`, else the only LLaVA JSON there is. Images are the `images/` folder next to it
/// (or its own folder).
fn prepared_data_files(dir: &Path, what: &str) -> Result<(PathBuf, PathBuf)> {
    let skip = [SPEC_FILE, "DONE.json", "world.json", "manifest.json"];
    let mut found: Vec<PathBuf> = Vec::new();
    let mut scan = |d: &Path| {
        if let Ok(rd) = std::fs::read_dir(d) {
            for p in rd.flatten().map(|e| e.path()) {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if p.is_file() && name.ends_with(".json") && !skip.contains(&name.as_str()) {
                    found.push(p);
                }
            }
        }
    };
    scan(dir);
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut subs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for s in subs {
            scan(&s);
        }
    }
    found.sort();
    let stem = |p: &PathBuf| {
        p.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let json = if let Some(p) = found.iter().find(|p| stem(p) == "data") {
        p.clone()
    } else if let Some(p) = found.iter().find(|p| !what.is_empty() && stem(p) == what) {
        p.clone()
    } else if found.len() == 1 {
        found.remove(0)
    } else if found.is_empty() {
        bail!("{} holds no conversations JSON (data.json)", dir.display())
    } else {
        bail!(
            "{} holds several JSON files {found:?} and none is data.json or {what}.json",
            dir.display()
        )
    };
    let parent = json.parent().unwrap_or(dir).to_path_buf();
    let images = if parent.join("images").is_dir() {
        parent.join("images")
    } else {
        parent
    };
    Ok((json, images))
}

/// Loads a dataset entry (LLaVA JSON), from its paths or from its prepare dependency.
pub fn load_dataset(ctx: &StageContext, spec: &DataSpec) -> Result<LlavaDataset> {
    let (json, images) = match (&spec.source, &spec.json) {
        (Some(src), _) if src.starts_with("synth:") => {
            let dep = prepared(ctx, "dataset", spec, &format!("dataset `{src}`"))?;
            prepared_data_files(&dep.dir, src.trim_start_matches("synth:"))?
        }
        (_, Some(json)) => {
            let images = spec.images.clone().with_context(|| {
                format!(
                    "dataset {json} has no `images` folder; set it in the manifest's [data] entry"
                )
            })?;
            (PathBuf::from(json), PathBuf::from(images))
        }
        _ => bail!("the dataset entry has neither `json` nor a `synth:` source: {spec:?}"),
    };
    if let Some(f) = &spec.format {
        if f != "llava-json" {
            bail!("dataset format `{f}` is not supported by the training stages (use llava-json)");
        }
    }
    Ok(load_llava_json(&json, &images, &LoadOptions::default())?)
}

/// The directory of a benchmark entry (`mmeval-jsonl/1`): its `path`, or for a `synth:<what>`
/// source the benchmark its prepare dependency built — the directory holding `manifest.json`
/// at the top of that output, or under `benchmarks/` (a synthetic world's layout), named
/// `<what>` or `synth_<what>`, else the only one there is.
pub fn resolve_benchmark(ctx: &StageContext, spec: &BenchmarkSpec) -> Result<PathBuf> {
    if let Some(path) = &spec.path {
        return Ok(PathBuf::from(path));
    }
    let src = spec
        .source
        .as_deref()
        .context("the benchmark entry has neither `path` nor `source`")?;
    let what = src.strip_prefix("synth:").with_context(|| {
        format!("benchmark source `{src}` is not supported (use `path` or `synth:<name>`)")
    })?;
    let dep = prepared(ctx, "benchmark", spec, &format!("benchmark `{src}`"))?;
    if dep.dir.join("manifest.json").is_file() {
        return Ok(dep.dir.clone());
    }
    let mut found: Vec<PathBuf> = [dep.dir.clone(), dep.dir.join("benchmarks")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    found.sort();
    let named = |n: &str| {
        found
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f == n))
            .cloned()
    };
    named(what)
        .or_else(|| named(&format!("synth_{what}")))
        .or_else(|| (found.len() == 1).then(|| found[0].clone()))
        .with_context(|| {
            format!(
                "the prepare task {} built `{src}` but {} holds no benchmark directory named \
                 `{what}` (found {found:?})",
                dep.key,
                dep.dir.display()
            )
        })
}

/// Writes the run summary into the stage output.
pub fn write_summary(dir: &Path, summary: &TrainSummary) -> Result<()> {
    crate::model::vision::checkpoint::write_text_atomic(
        &serde_json::to_string_pretty(summary)?,
        &dir.join(TRAINER_STATE_FILE),
    )
}

/// Fails a run that was stopped early (`MLVF_STOP_AFTER`): its weights are not a result.
pub fn ensure_completed(summary: &TrainSummary) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "[]").unwrap();
    }

    #[test]
    fn prepared_datasets_are_found_in_a_world_layout() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        touch(&root.join(SPEC_FILE));
        touch(&root.join("world.json"));
        touch(&root.join("pretrain/captions.json"));
        touch(&root.join("finetune/instructions.json"));
        std::fs::create_dir_all(root.join("pretrain/images")).unwrap();
        let (json, images) = prepared_data_files(root, "captions").unwrap();
        assert_eq!(json, root.join("pretrain/captions.json"));
        assert_eq!(images, root.join("pretrain/images"));
        let (json, images) = prepared_data_files(root, "instructions").unwrap();
        assert_eq!(json, root.join("finetune/instructions.json"));
        assert_eq!(
            images,
            root.join("finetune"),
            "no images/ folder: the JSON's own folder"
        );
        let err = prepared_data_files(root, "other").unwrap_err().to_string();
        assert!(err.contains("several JSON files"), "{err}");
        touch(&root.join("data.json"));
        assert_eq!(
            prepared_data_files(root, "other").unwrap().0,
            root.join("data.json")
        );
    }
}
