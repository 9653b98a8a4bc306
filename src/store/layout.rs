//! Where things live under a store root. Every module that needs a store path asks here.
//!
//! ```text
//! <root>/tasks/<stage>/<key>/      published task outputs (+ DONE.json, spec.json)
//! <root>/tmp/<key>.<attempt>/      an attempt's working directory, renamed on publish
//! <root>/checkpoints/<key>/        survives killed attempts; the next attempt resumes from it
//! <root>/specs/<key>.json          the task spec (key pre-image + deps) written by the controller
//! <root>/logs/<key>/<attempt>.log  per-attempt logs
//! <root>/mlvf.sqlite               the controller's database
//! ```

use crate::task::{StageKind, TaskKey};
use std::path::{Path, PathBuf};

pub const DONE_FILE: &str = "DONE.json";
pub const SPEC_FILE: &str = "spec.json";

pub fn task_dir(root: &Path, stage: StageKind, key: &TaskKey) -> PathBuf {
    root.join("tasks").join(stage.as_str()).join(&key.0)
}

pub fn done_path(root: &Path, stage: StageKind, key: &TaskKey) -> PathBuf {
    task_dir(root, stage, key).join(DONE_FILE)
}

pub fn tmp_dir(root: &Path, key: &TaskKey, attempt: u32) -> PathBuf {
    root.join("tmp").join(format!("{}.{attempt}", key.0))
}

pub fn checkpoint_dir(root: &Path, key: &TaskKey) -> PathBuf {
    root.join("checkpoints").join(&key.0)
}

pub fn spec_path(root: &Path, key: &TaskKey) -> PathBuf {
    root.join("specs").join(format!("{}.json", key.0))
}

pub fn log_path(root: &Path, key: &TaskKey, attempt: u32) -> PathBuf {
    root.join("logs")
        .join(&key.0)
        .join(format!("{attempt}.log"))
}

pub fn db_path(root: &Path) -> PathBuf {
    root.join("mlvf.sqlite")
}
