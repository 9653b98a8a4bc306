//! `mlvf db rebuild`: recreate the database from the store's files (sweep records, specs,
//! published task dirs). Attempts that never published leave no trace in the files, so the
//! rebuilt database knows only the succeeded ones.

use crate::db::Db;
use crate::store::done::{self, VerifyLevel};
use crate::store::metrics::{read_metrics, METRICS_FILE};
use crate::store::{layout, now_ms, spec, sweeps};
use crate::task::{StageKind, TaskKey};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// What a rebuild found.
#[derive(Debug, Default)]
pub struct RebuildReport {
    pub sweeps: usize,
    pub tasks: usize,
    pub done: usize,
    /// Task directories whose DONE record did not verify (left in place, not counted as done).
    pub invalid: Vec<(PathBuf, String)>,
}

fn dir_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                out.push(e?.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    }
    out.sort();
    Ok(out)
}

/// Rebuilds `<root>/mlvf.sqlite` from the files. The new database is built beside the old one
/// and renamed over it, so a failed rebuild leaves the old one intact. Call with the store lock.
pub fn rebuild(root: &Path) -> anyhow::Result<RebuildReport> {
    let final_path = layout::db_path(root);
    let tmp_path = root.join(format!("mlvf.sqlite.rebuild-{}", now_ms()));
    let mut report = RebuildReport::default();
    let mut db = Db::open_at(&tmp_path)?;
    for plan in sweeps::list_sweeps(root)? {
        db.register_sweep(&plan)?;
        report.sweeps += 1;
    }
    for name in dir_names(&root.join("specs"))? {
        if let Some(k) = name.strip_suffix(".json") {
            let task = spec::read_spec(root, &TaskKey(k.to_string()))?;
            db.ensure_task(&task)?;
        }
    }
    for stage_name in dir_names(&root.join("tasks"))? {
        let Some(stage) = StageKind::parse(&stage_name) else {
            continue;
        };
        for k in dir_names(&root.join("tasks").join(&stage_name))? {
            let key = TaskKey(k);
            let dir = layout::task_dir(root, stage, &key);
            match done::verify(root, stage, &key, VerifyLevel::Fast) {
                Ok(rec) => {
                    if let Ok(task) = spec::read_spec(root, &key).or_else(|_| {
                        let bytes = std::fs::read(dir.join(layout::SPEC_FILE))?;
                        Ok::<_, anyhow::Error>(serde_json::from_slice(&bytes)?)
                    }) {
                        db.ensure_task(&task)?;
                    }
                    let metrics = read_metrics(&dir.join(METRICS_FILE))?;
                    let log = layout::log_path(root, &key, rec.attempt);
                    db.ingest_done(&rec, &metrics, log.exists().then_some(log.as_path()))
                        .with_context(|| format!("ingesting {}", dir.display()))?;
                    report.done += 1;
                }
                Err(e) => report.invalid.push((dir, e.to_string())),
            }
        }
    }
    report.tasks =
        db.conn()
            .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get::<_, i64>(0))? as usize;
    db.close()?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", final_path.display()));
    }
    std::fs::rename(&tmp_path, &final_path)
        .with_context(|| format!("replacing {}", final_path.display()))?;
    Ok(report)
}
