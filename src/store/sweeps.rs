//! Sweep records: `<root>/sweeps/<name>.json` holds the plan of every sweep that ran in the
//! store. They say which task directories are reachable (gc) and let `mlvf db rebuild` restore
//! sweeps, cells and their links without the manifests.

use crate::atomic::write_atomic;
use crate::task::Plan;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The record of sweep `name`.
pub fn sweep_path(root: &Path, name: &str) -> PathBuf {
    root.join("sweeps").join(format!("{name}.json"))
}

/// Checks that a sweep name can be a file name on every platform we run on.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !ok {
        bail!("sweep name {name:?} must be non-empty and use only letters, digits, '-', '_' and '.' (set [sweep] name)");
    }
    Ok(())
}

/// Records (or updates) a sweep's plan in the store.
pub fn write_sweep(root: &Path, plan: &Plan) -> anyhow::Result<()> {
    write_sweep_json(root, &plan.sweep, &serde_json::to_string(plan)?)
}

/// Records a sweep's plan given as JSON (`serde_json::to_string(&plan)`); does not rewrite an
/// identical record (a no-op rerun stays cheap).
pub fn write_sweep_json(root: &Path, name: &str, plan_json: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let path = sweep_path(root, name);
    if std::fs::read(&path).is_ok_and(|old| old == plan_json.as_bytes()) {
        return Ok(());
    }
    write_atomic(&path, plan_json.as_bytes())
}

/// Reads the recorded plan of sweep `name`.
pub fn read_sweep(root: &Path, name: &str) -> anyhow::Result<Plan> {
    check_name(name)?;
    let path = sweep_path(root, name);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "no sweep `{name}` is recorded in {} (run it first, or check --store)",
            root.display()
        )
    })?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a sweep record", path.display()))
}

/// Every recorded sweep, by name.
pub fn list_sweeps(root: &Path) -> anyhow::Result<Vec<Plan>> {
    let dir = root.join("sweeps");
    let mut names = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                if p.extension().and_then(|s| s.to_str()) == Some("json") {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        names.push(stem.to_string());
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    }
    names.sort();
    names.iter().map(|n| read_sweep(root, n)).collect()
}
