//! `DONE.json`: the record that makes a task directory a result. It lists every output file
//! with its size and blake3 checksum; a directory counts as done only if the record parses,
//! names the expected task, and every listed file is present with the recorded size and content.

use crate::store::layout;
use crate::store::metrics::MetricRecord;
use crate::task::{Plan, StageKind, Task, TaskKey};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped when the record's meaning changes; older records are then treated as not done.
pub const DONE_FORMAT: u32 = 1;

/// One output file of a task, relative to the task directory ('/'-separated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: String,
    pub size: u64,
    /// Hex blake3 of the content.
    pub blake3: String,
    /// Modification time (ns since the epoch) when hashed; if unchanged at verification the
    /// fast check trusts the checksum without rereading the file.
    pub mtime_ns: u64,
}

/// The content of `DONE.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoneRecord {
    pub format: u32,
    pub stage: StageKind,
    pub key: TaskKey,
    pub version: u32,
    pub attempt: u32,
    pub host: String,
    pub pid: u32,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub outputs: Vec<OutputFile>,
    /// How many metric records `metrics.jsonl` holds.
    pub metric_count: usize,
    /// The final metrics (step = null), for a glance without reading `metrics.jsonl`.
    pub final_metrics: Vec<MetricRecord>,
    /// The name of the metric this task reports as its primary result (eval stages set it;
    /// `mlvf results --metric primary` reads it).
    pub primary_metric: Option<String>,
}

/// How thoroughly [`verify`] checks output files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyLevel {
    /// Sizes always; content rehashed only for files whose mtime changed since publishing.
    Fast,
    /// Sizes and the content of every file.
    Full,
}

/// Why a task directory does not count as done.
#[derive(Debug, thiserror::Error)]
pub enum NotDone {
    #[error("no {0}")]
    Missing(PathBuf),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Hashes one file with blake3.
pub fn hash_file(path: &Path) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    h.update_reader(f)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Lists and hashes every regular file under `dir` except `DONE.json`, sorted by path.
pub fn describe_outputs(dir: &Path) -> anyhow::Result<Vec<OutputFile>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays under its root");
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if rel == layout::DONE_FILE {
            continue;
        }
        let meta = entry.metadata()?;
        out.push(OutputFile {
            blake3: hash_file(entry.path())?,
            path: rel,
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        });
    }
    Ok(out)
}

/// Reads `DONE.json` in `dir` without checking the outputs.
pub fn read(dir: &Path) -> Result<DoneRecord, NotDone> {
    let path = dir.join(layout::DONE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NotDone::Missing(path)),
        Err(e) => {
            return Err(NotDone::Invalid {
                path,
                reason: e.to_string(),
            });
        }
    };
    let rec: DoneRecord = serde_json::from_slice(&text).map_err(|e| NotDone::Invalid {
        path: path.clone(),
        reason: format!("not a DONE record ({e})"),
    })?;
    if rec.format != DONE_FORMAT {
        return Err(NotDone::Invalid {
            path,
            reason: format!(
                "record format {} (this build reads {DONE_FORMAT})",
                rec.format
            ),
        });
    }
    Ok(rec)
}

/// Checks that `dir` holds a DONE record for `stage`/`key` whose outputs are intact.
pub fn verify_dir(
    dir: &Path,
    stage: StageKind,
    key: &TaskKey,
    level: VerifyLevel,
) -> Result<DoneRecord, NotDone> {
    let rec = read(dir)?;
    let done_path = dir.join(layout::DONE_FILE);
    let invalid = |reason: String| NotDone::Invalid {
        path: done_path.clone(),
        reason,
    };
    if rec.key != *key || rec.stage != stage {
        return Err(invalid(format!(
            "record is for {} task {}, expected {stage} task {key}",
            rec.stage, rec.key
        )));
    }
    for f in &rec.outputs {
        let p = dir.join(&f.path);
        let meta =
            std::fs::metadata(&p).map_err(|_| invalid(format!("output {} is missing", f.path)))?;
        if meta.len() != f.size {
            return Err(invalid(format!(
                "output {} has {} bytes, the record says {} (truncated or rewritten)",
                f.path,
                meta.len(),
                f.size
            )));
        }
        if level == VerifyLevel::Full || mtime_ns(&meta) != f.mtime_ns {
            let h = hash_file(&p).map_err(|e| invalid(format!("{e:#}")))?;
            if h != f.blake3 {
                return Err(invalid(format!(
                    "output {} does not match its checksum",
                    f.path
                )));
            }
        }
    }
    Ok(rec)
}

/// Verifies the published directory of a task (see [`verify_dir`]).
pub fn verify(
    root: &Path,
    stage: StageKind,
    key: &TaskKey,
    level: VerifyLevel,
) -> Result<DoneRecord, NotDone> {
    verify_dir(&layout::task_dir(root, stage, key), stage, key, level)
}

/// A task is *cached* when its published DONE record verifies (sizes always, content where a
/// file changed since publishing) — the same check `mlvf run` uses to skip it.
pub fn is_cached(root: &Path, task: &Task) -> bool {
    verify(root, task.stage, &task.key, VerifyLevel::Fast).is_ok()
}

/// Whether each of a plan's tasks is cached in its store, in plan order (what `mlvf plan` shows).
pub fn cached_states(plan: &Plan) -> Vec<bool> {
    plan.tasks
        .iter()
        .map(|t| is_cached(&plan.store, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::publish::tests::publish_fake;

    #[test]
    fn corrupted_or_truncated_outputs_are_not_done() {
        let root = tempfile::tempdir().unwrap();
        let key = TaskKey("ab".repeat(32));
        let dir = publish_fake(root.path(), &key, b"0123456789");
        assert!(verify(root.path(), StageKind::Encode, &key, VerifyLevel::Full).is_ok());
        // Same size, different content: caught by the checksum (mtime changes too).
        std::fs::write(dir.join("out.bin"), b"0123456780").unwrap();
        let err = verify(root.path(), StageKind::Encode, &key, VerifyLevel::Fast).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // Truncated: caught by the size alone.
        std::fs::write(dir.join("out.bin"), b"0123").unwrap();
        let err = verify(root.path(), StageKind::Encode, &key, VerifyLevel::Fast).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        std::fs::remove_file(dir.join("out.bin")).unwrap();
        let err = verify(root.path(), StageKind::Encode, &key, VerifyLevel::Fast).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn record_for_another_task_is_not_done() {
        let root = tempfile::tempdir().unwrap();
        let key = TaskKey("cd".repeat(32));
        let dir = publish_fake(root.path(), &key, b"x");
        let other = TaskKey("ef".repeat(32));
        let err = verify_dir(&dir, StageKind::Encode, &other, VerifyLevel::Fast).unwrap_err();
        assert!(err.to_string().contains("expected encode task"), "{err}");
        std::fs::write(dir.join("DONE.json"), b"{\"format\":1").unwrap();
        let err = verify_dir(&dir, StageKind::Encode, &key, VerifyLevel::Fast).unwrap_err();
        assert!(err.to_string().contains("not a DONE record"), "{err}");
    }
}
