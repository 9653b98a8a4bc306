//! Garbage: task directories that no recorded sweep reaches, their checkpoints, and the tmp
//! directories of attempts that are no longer running. Callers hold the store lock, so no
//! attempt is running and every tmp directory is dead.

use crate::store::{layout, sweeps};
use crate::task::TaskKey;
use anyhow::Context;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One removable directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Garbage {
    pub path: PathBuf,
    pub bytes: u64,
    pub why: &'static str,
}

fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn subdirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                if e.file_type()?.is_dir() {
                    out.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    }
    out.sort();
    Ok(out)
}

/// Lists what gc would remove, sorted by path.
pub fn find_garbage(root: &Path) -> anyhow::Result<Vec<Garbage>> {
    let mut reachable: HashSet<TaskKey> = HashSet::new();
    for plan in sweeps::list_sweeps(root)? {
        reachable.extend(plan.tasks.into_iter().map(|t| t.key));
    }
    let name_key = |p: &Path| {
        TaskKey(
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        )
    };
    let mut out = Vec::new();
    for stage_dir in subdirs(&root.join("tasks"))? {
        for task_dir in subdirs(&stage_dir)? {
            if !reachable.contains(&name_key(&task_dir)) {
                out.push(Garbage {
                    bytes: dir_bytes(&task_dir),
                    path: task_dir,
                    why: "task no recorded sweep reaches",
                });
            }
        }
    }
    for ck in subdirs(&root.join("checkpoints"))? {
        if !reachable.contains(&name_key(&ck)) {
            out.push(Garbage {
                bytes: dir_bytes(&ck),
                path: ck,
                why: "checkpoints of an unreachable task",
            });
        }
    }
    for tmp in subdirs(&root.join("tmp"))? {
        out.push(Garbage {
            bytes: dir_bytes(&tmp),
            path: tmp,
            why: "tmp dir of a dead attempt",
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Removes the listed directories (and the specs of removed tasks).
pub fn delete(root: &Path, garbage: &[Garbage]) -> anyhow::Result<()> {
    for g in garbage {
        std::fs::remove_dir_all(&g.path)
            .with_context(|| format!("removing {}", g.path.display()))?;
        if g.path.starts_with(root.join("tasks")) {
            let key = TaskKey(
                g.path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            let _ = std::fs::remove_file(layout::spec_path(root, &key));
        }
    }
    Ok(())
}
