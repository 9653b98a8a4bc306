//! The submission record: `<root>/slurm/jobs.jsonl`, one line per submitted task (newest line
//! of a key wins), written by the controller right after `sbatch` returns. It lets any later
//! controller (or `mlvf status`) find a task's job even if the database is lost; each
//! submission's scripts, key lists and Slurm output files sit in `<root>/slurm/<submission>/`.

use crate::task::{StageKind, TaskKey};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the Slurm executor keeps its files in a store.
pub fn slurm_dir(root: &Path) -> PathBuf {
    root.join("slurm")
}

/// The submission record file.
pub fn jobs_path(root: &Path) -> PathBuf {
    slurm_dir(root).join("jobs.jsonl")
}

/// One task's submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub key: TaskKey,
    pub stage: StageKind,
    pub sweep: String,
    /// The attempt number the element runs as.
    pub attempt: u32,
    /// The array job id (what `scontrol show job` takes).
    pub array_job: String,
    /// The element: `<array_job>_<index>`.
    pub job: String,
    pub submitted_ms: i64,
    /// The sbatch script.
    pub script: PathBuf,
}

/// Appends records (one fsync for the batch).
pub fn append(root: &Path, records: &[JobRecord]) -> anyhow::Result<()> {
    let path = jobs_path(root);
    std::fs::create_dir_all(slurm_dir(root))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The newest record of every key. A torn last line (a controller killed mid-write) is
/// skipped; any other bad line is an error naming the file and line.
pub fn latest(root: &Path) -> anyhow::Result<HashMap<TaskKey, JobRecord>> {
    let path = jobs_path(root);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JobRecord>(line) {
            Ok(r) => {
                out.insert(r.key.clone(), r);
            }
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "{} line {} is not a job record (delete the line, or the file to forget every submission)",
                        path.display(),
                        i + 1
                    )
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, job: &str) -> JobRecord {
        JobRecord {
            key: TaskKey(key.into()),
            stage: StageKind::Eval,
            sweep: "s".into(),
            attempt: 1,
            array_job: job.split('_').next().unwrap().into(),
            job: job.into(),
            submitted_ms: 0,
            script: "x.sbatch".into(),
        }
    }

    #[test]
    fn newest_record_wins_and_torn_tail_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &[rec("a", "1_0"), rec("b", "1_1")]).unwrap();
        append(dir.path(), &[rec("a", "2_0")]).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(jobs_path(dir.path()))
            .unwrap();
        f.write_all(b"{\"key\":\"c\",\"sta").unwrap();
        let l = latest(dir.path()).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[&TaskKey("a".into())].job, "2_0");
        f.write_all(b"\n").unwrap();
        append(dir.path(), &[rec("d", "3_0")]).unwrap();
        let err = latest(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("line 4 is not a job record"),
            "{err:#}"
        );
    }
}
