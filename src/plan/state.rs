//! Whether a planned task is already done, as `plan` and `explain` report it.

use super::task::Task;
use crate::store::done::{verify, VerifyLevel};
use std::path::Path;

/// A task is *cached* when its published DONE record verifies (sizes always, content where a
/// file changed since publishing) — the same check `mlvf run` uses to skip it.
pub fn is_cached(store: &Path, task: &Task) -> bool {
    verify(store, task.stage, &task.key, VerifyLevel::Fast).is_ok()
}
