//! Planning: grid cells → tasks keyed by what each stage reads → a DAG, and its rendering.

pub mod build;
pub mod config;
pub mod dag;
pub mod explain;
pub mod keys;
pub mod render;
pub mod synth;

pub use crate::manifest::TableSpec;
pub use crate::task::{Cell, Plan, StageKind, Task, TaskKey};

use crate::error::UserError;
use std::path::Path;

/// Loads a manifest, validates it and plans its sweep. Manifest errors come back as
/// [`crate::error::UserError`] (exit code 2) naming file:line:column; warnings go to the log.
pub fn load(manifest: &Path, store_override: Option<&Path>) -> anyhow::Result<Plan> {
    let (plan, warnings) = load_with_warnings(manifest, store_override)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(plan)
}

/// [`load`], returning the rendered warnings (e.g. an `exclude` that matches nothing) instead
/// of logging them.
pub fn load_with_warnings(
    manifest: &Path,
    store_override: Option<&Path>,
) -> anyhow::Result<(Plan, Vec<String>)> {
    let mut m = crate::manifest::load(manifest).map_err(|e| UserError(e.rendered))?;
    let axes = m.cells();
    let mut d = std::mem::take(&mut m.diags);
    let tasks = build::build(&m, &axes, &mut d);
    if d.has_errors() {
        return Err(UserError(d.render_errors(&m.sources)).into());
    }
    let warnings = d.render_warnings(&m.sources);
    let plan = Plan {
        sweep: m.sweep.name.clone(),
        manifest: manifest.to_path_buf(),
        store: store_override.map_or_else(|| m.sweep.store.clone(), Path::to_path_buf),
        cells: axes.into_iter().map(|axes| Cell { axes }).collect(),
        tasks,
        tables: m.tables.clone(),
        executor: m.executor.clone(),
    };
    dag::check_order(&plan)?;
    Ok((plan, warnings))
}
