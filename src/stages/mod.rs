//! Stage kinds: thin adapters from a task spec to models, training and evaluation.
//!
//! A [`Stage`] runs inside a worker process (`mlvf task run KEY`). It reads its task's config
//! and its dependencies' published directories, writes outputs into [`StageContext::out_dir`]
//! (a fresh tmp dir that is published atomically when it returns `Ok`), may keep resumable
//! state in [`StageContext::checkpoint_dir`], and records metrics through the context.

pub mod common;
pub mod encode;
pub mod eval;
pub mod finetune;
pub mod grounding;
pub mod prepare;
pub mod pretrain;

use crate::store::metrics::{MetricRecord, METRICS_FILE};
use crate::task::{StageKind, Task, TaskKey};
use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One kind of stage. Implementations must be deterministic functions of the task's config
/// and its dependencies' outputs: the task key promises it.
pub trait Stage: Send + Sync {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> anyhow::Result<()>;
}

/// A published dependency of the running task.
#[derive(Clone, Debug)]
pub struct DepDir {
    pub stage: StageKind,
    pub key: TaskKey,
    pub dir: PathBuf,
}

/// What a running stage may touch.
pub struct StageContext {
    /// The store root.
    pub root: PathBuf,
    /// This attempt's number (1, 2, ...).
    pub attempt: u32,
    /// Where outputs go; published as the task directory if the stage returns `Ok`.
    pub out_dir: PathBuf,
    /// Survives killed and failed attempts of this key; the next attempt resumes from it.
    pub checkpoint_dir: PathBuf,
    /// The published directories of the task's dependencies, in the task's `deps` order.
    pub deps: Vec<DepDir>,
    metrics: std::fs::File,
    primary_metric: Option<String>,
    log: Box<dyn Write + Send>,
}

impl StageContext {
    /// Creates a context; `metrics.jsonl` is created (empty) in `out_dir`.
    pub fn new(
        root: PathBuf,
        attempt: u32,
        out_dir: PathBuf,
        checkpoint_dir: PathBuf,
        deps: Vec<DepDir>,
        log: Box<dyn Write + Send>,
    ) -> anyhow::Result<StageContext> {
        let path = out_dir.join(METRICS_FILE);
        let metrics =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(StageContext {
            root,
            attempt,
            out_dir,
            checkpoint_dir,
            deps,
            metrics,
            primary_metric: None,
            log,
        })
    }

    /// The published directory of the first dependency of `stage`, if any.
    pub fn dep(&self, stage: StageKind) -> Option<&Path> {
        self.deps
            .iter()
            .find(|d| d.stage == stage)
            .map(|d| d.dir.as_path())
    }

    /// Records a metric value; `step` is `None` for a final metric (what tables show).
    pub fn record(&mut self, name: &str, step: Option<u64>, value: f64) -> anyhow::Result<()> {
        let rec = MetricRecord {
            name: name.to_string(),
            step,
            value,
        };
        let mut line = serde_json::to_vec(&rec)?;
        line.push(b'\n');
        self.metrics
            .write_all(&line)
            .context("writing metrics.jsonl")?;
        Ok(())
    }

    /// Records the final value of the task's primary metric (e.g. a benchmark's accuracy) and
    /// marks it primary: `mlvf results --metric primary` shows it.
    pub fn record_primary(&mut self, name: &str, value: f64) -> anyhow::Result<()> {
        self.record(name, None, value)?;
        self.primary_metric = Some(name.to_string());
        Ok(())
    }

    /// The metric marked primary, if any.
    pub fn primary_metric(&self) -> Option<&str> {
        self.primary_metric.as_deref()
    }

    /// The attempt's log (the worker's stderr, which the executor sends to the attempt's log file).
    pub fn log(&mut self) -> &mut (dyn Write + Send) {
        self.log.as_mut()
    }

    /// Flushes metrics to disk before publishing.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.metrics.sync_all().context("syncing metrics.jsonl")?;
        self.log.flush().ok();
        Ok(())
    }
}

/// Maps stage kinds to implementations.
#[derive(Default)]
pub struct StageRegistry {
    stages: BTreeMap<StageKind, Box<dyn Stage>>,
}

impl StageRegistry {
    /// An empty registry.
    pub fn new() -> StageRegistry {
        StageRegistry::default()
    }

    /// The stages this build ships. Real stages are registered here as they land; a kind
    /// without one fails with a clear message when a task of it runs (never faked).
    pub fn product() -> StageRegistry {
        let mut r = StageRegistry::new();
        r.register(StageKind::Prepare, Box::new(prepare::PrepareStage));
        r.register(StageKind::Encode, Box::new(encode::EncodeStage));
        r.register(StageKind::Pretrain, Box::new(pretrain::PretrainStage));
        r.register(StageKind::Finetune, Box::new(finetune::FinetuneStage));
        r.register(StageKind::Eval, Box::new(eval::EvalStage));
        r
    }

    /// Registers (or replaces) the implementation of `kind`.
    pub fn register(&mut self, kind: StageKind, stage: Box<dyn Stage>) -> &mut Self {
        self.stages.insert(kind, stage);
        self
    }

    /// Whether `kind` has an implementation.
    pub fn has(&self, kind: StageKind) -> bool {
        self.stages.contains_key(&kind)
    }

    /// The implementation of `kind`, or an error saying this build has none.
    pub fn get(&self, kind: StageKind) -> anyhow::Result<&dyn Stage> {
        self.stages.get(&kind).map(|s| s.as_ref()).ok_or_else(|| {
            anyhow::anyhow!("stage `{kind}` has no implementation in this build yet")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_stage_is_refused_clearly() {
        let reg = StageRegistry::new();
        let err = reg.get(StageKind::Pretrain).err().unwrap().to_string();
        assert_eq!(
            err,
            "stage `pretrain` has no implementation in this build yet"
        );
    }
}
