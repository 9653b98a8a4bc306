//! Whether a planned task is already done. One function, so the store's verifying check can
//! replace the existence test without touching the planner or its renderers.

use super::task::Task;
use crate::store::layout;
use std::path::Path;

/// A task is *cached* when its published DONE record exists under the store root.
pub fn is_cached(store: &Path, task: &Task) -> bool {
    layout::done_path(store, task.stage, &task.key).is_file()
}
