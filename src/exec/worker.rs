//! The worker: `mlvf task run --store S KEY`. Reads the task's spec, runs its stage in a fresh
//! tmp dir and publishes the result. It never opens the database: the controller ingests the
//! published files.

use crate::atomic::write_atomic;
use crate::stages::{DepDir, StageContext, StageRegistry};
use crate::store::done::{self, DoneRecord, VerifyLevel};
use crate::store::publish::{publish, AttemptInfo};
use crate::store::spec::read_spec;
use crate::store::{layout, now_ms};
use crate::task::{Task, TaskKey};
use anyhow::{bail, Context};
use std::path::Path;

/// What a worker run ended with.
#[derive(Debug)]
pub enum WorkerOutcome {
    /// The stage ran and its outputs were published.
    Published(DoneRecord),
    /// The task was already published and verifies; nothing ran.
    AlreadyDone(DoneRecord),
}

/// The attempt number after every attempt the store remembers (tmp dirs and logs).
pub fn next_attempt(root: &Path, key: &TaskKey) -> u32 {
    let mut max = 0u32;
    let prefix = format!("{}.", key.0);
    if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix(&prefix)
                .and_then(|r| r.parse::<u32>().ok())
            {
                max = max.max(n);
            }
        }
    }
    if let Some(dir) = layout::log_path(root, key, 0).parent() {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = name
                    .strip_suffix(".log")
                    .and_then(|r| r.parse::<u32>().ok())
                {
                    max = max.max(n);
                }
            }
        }
    }
    max + 1
}

/// The published directories of `task`'s dependencies; an error names the first one missing.
pub fn dep_dirs(root: &Path, task: &Task) -> anyhow::Result<Vec<DepDir>> {
    let mut out = Vec::with_capacity(task.deps.len());
    for dep in &task.deps {
        let spec =
            read_spec(root, dep).with_context(|| format!("task {} depends on {dep}", task.key))?;
        done::verify(root, spec.stage, dep, VerifyLevel::Fast).map_err(|e| {
            anyhow::anyhow!(
                "task {} needs {} task {dep}, which is not done ({e}); run the sweep with `mlvf run`",
                task.key,
                spec.stage
            )
        })?;
        out.push(DepDir {
            stage: spec.stage,
            key: dep.clone(),
            dir: layout::task_dir(root, spec.stage, dep),
        });
    }
    Ok(out)
}

/// Runs task `key` of the store at `root` as attempt `attempt` (default: the next one).
pub fn run_task(
    root: &Path,
    key: &TaskKey,
    attempt: Option<u32>,
    registry: &StageRegistry,
) -> anyhow::Result<WorkerOutcome> {
    let task = read_spec(root, key)?;
    if let Ok(rec) = done::verify(root, task.stage, key, VerifyLevel::Fast) {
        return Ok(WorkerOutcome::AlreadyDone(rec));
    }
    let stage = registry.get(task.stage)?;
    let deps = dep_dirs(root, &task)?;
    let attempt = attempt.unwrap_or_else(|| next_attempt(root, key));
    if attempt == 0 {
        bail!("attempt numbers start at 1");
    }
    let tmp = layout::tmp_dir(root, key, attempt);
    if tmp.exists() {
        // A dead attempt with the same number (e.g. the controller was killed before it
        // recorded it); its files are not a result.
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // The key's pre-image travels with the result, for `mlvf explain` and db rebuild.
    write_atomic(
        &tmp.join(layout::SPEC_FILE),
        &serde_json::to_vec_pretty(&task)?,
    )?;
    let checkpoint_dir = layout::checkpoint_dir(root, key);
    std::fs::create_dir_all(&checkpoint_dir)
        .with_context(|| format!("creating {}", checkpoint_dir.display()))?;

    let started_ms = now_ms();
    let mut ctx = StageContext::new(
        root.to_path_buf(),
        attempt,
        tmp.clone(),
        checkpoint_dir,
        deps,
        Box::new(std::io::stderr()),
    )?;
    eprintln!(
        "mlvf: running {} task {key} (attempt {attempt})",
        task.stage
    );
    stage.run(&task, &mut ctx).with_context(|| {
        format!(
            "{} task {key} failed (attempt {attempt}; partial outputs in {})",
            task.stage,
            tmp.display()
        )
    })?;
    ctx.finish()?;
    let info = AttemptInfo {
        stage: task.stage,
        key: key.clone(),
        version: task.version,
        attempt,
        started_ms,
        primary_metric: ctx.primary_metric().map(str::to_string),
    };
    drop(ctx);
    let rec = publish(root, &tmp, &info)?;
    // The result is published; the checkpoints that led to it are dead weight now.
    let _ = std::fs::remove_dir_all(layout::checkpoint_dir(root, key));
    eprintln!(
        "mlvf: published {}",
        layout::task_dir(root, task.stage, key).display()
    );
    Ok(WorkerOutcome::Published(rec))
}
