//! Planning: grid cells → tasks keyed by what each stage reads → a DAG, and its rendering.

pub mod task;

pub use task::{Cell, Plan, StageKind, TableSpec, Task, TaskKey};

use std::path::Path;

/// Loads a manifest, validates it and plans its sweep. Manifest errors come back as
/// [`crate::cli::UserError`] (exit code 2) naming file:line:column; warnings go to the log.
pub fn load(manifest: &Path, store_override: Option<&Path>) -> anyhow::Result<Plan> {
    let _ = (manifest, store_override);
    anyhow::bail!("manifest loading and planning are not implemented yet")
}
