//! Task specs: `<root>/specs/<key>.json`, the JSON of a [`Task`] that the controller writes
//! before it spawns `mlvf task run KEY`, and the only input the worker gets besides the key.

use crate::atomic::write_atomic;
use crate::store::layout;
use crate::task::{Task, TaskKey};
use anyhow::{bail, Context};
use std::path::Path;

/// Writes a task's spec unless an equivalent one is there. The key is a hash of the content
/// that matters, so an existing spec only differs in which cells it lists and in its run-time
/// options (`Task::runtime`, e.g. a raised `[encode] budget_gb`); a spec whose options differ
/// is replaced so the next attempt runs with the manifest's current ones.
pub fn write_spec(root: &Path, task: &Task) -> anyhow::Result<()> {
    let path = layout::spec_path(root, &task.key);
    if let Ok(bytes) = std::fs::read(&path) {
        match serde_json::from_slice::<Task>(&bytes) {
            Ok(old) if old.runtime == task.runtime => return Ok(()),
            _ => {}
        }
    }
    write_atomic(&path, &serde_json::to_vec_pretty(task)?)
}

/// Reads the spec of `key`, checking it is the spec of that key.
pub fn read_spec(root: &Path, key: &TaskKey) -> anyhow::Result<Task> {
    let path = layout::spec_path(root, key);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "no spec for task {key} at {} (the controller writes it; is --store right?)",
            path.display()
        )
    })?;
    let task: Task = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a task spec", path.display()))?;
    if task.key != *key {
        bail!(
            "{} holds the spec of task {}, not {key}",
            path.display(),
            task.key
        );
    }
    Ok(task)
}

/// Keys in the store's spec directory that start with `prefix`.
pub fn stored_keys(root: &Path, prefix: &str) -> Vec<TaskKey> {
    let dir = layout::spec_path(root, &TaskKey(String::new()));
    let Some(dir) = dir.parent() else {
        return vec![];
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<TaskKey> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
        })
        .filter(|k| k.starts_with(prefix))
        .map(TaskKey)
        .collect();
    out.sort();
    out
}
