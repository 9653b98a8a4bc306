//! Publishing an attempt: checksum its outputs into `DONE.json`, then rename the attempt's
//! tmp directory to the task directory in one step, so a reader never sees half a result.

use crate::atomic::write_atomic;
use crate::store::done::{self, DoneRecord, VerifyLevel, DONE_FORMAT};
use crate::store::metrics::{read_metrics, METRICS_FILE};
use crate::store::{hostname, layout, now_ms};
use crate::task::{StageKind, TaskKey};
use anyhow::{bail, Context};
use std::path::Path;

/// What the worker knows about the attempt it publishes.
#[derive(Clone, Debug)]
pub struct AttemptInfo {
    pub stage: StageKind,
    pub key: TaskKey,
    pub version: u32,
    pub attempt: u32,
    pub started_ms: i64,
    pub primary_metric: Option<String>,
}

/// Writes `DONE.json` into `tmp` and renames `tmp` to the task directory.
///
/// A task directory that is already there and verifies wins: this attempt is discarded and an
/// error says so (two attempts of one key never both publish). One that does not verify (a
/// corrupted earlier result) is moved aside and removed first.
pub fn publish(root: &Path, tmp: &Path, info: &AttemptInfo) -> anyhow::Result<DoneRecord> {
    let metrics = read_metrics(&tmp.join(METRICS_FILE))?;
    if let Some(p) = &info.primary_metric {
        if !metrics.iter().any(|m| &m.name == p && m.step.is_none()) {
            bail!(
                "the stage marked `{p}` as its primary metric but recorded no final value for it"
            );
        }
    }
    let outputs = done::describe_outputs(tmp)?;
    let record = DoneRecord {
        format: DONE_FORMAT,
        stage: info.stage,
        key: info.key.clone(),
        version: info.version,
        attempt: info.attempt,
        host: hostname(),
        pid: std::process::id(),
        started_ms: info.started_ms,
        finished_ms: now_ms(),
        outputs,
        metric_count: metrics.len(),
        final_metrics: metrics.into_iter().filter(|m| m.step.is_none()).collect(),
        primary_metric: info.primary_metric.clone(),
    };
    write_atomic(
        &tmp.join(layout::DONE_FILE),
        &serde_json::to_vec_pretty(&record)?,
    )?;

    let target = layout::task_dir(root, info.stage, &info.key);
    if target.exists() {
        if done::verify(root, info.stage, &info.key, VerifyLevel::Fast).is_ok() {
            bail!(
                "{} is already published (another attempt finished first); this attempt's outputs stay in {}",
                target.display(),
                tmp.display()
            );
        }
        let aside = root
            .join("tmp")
            .join(format!("{}.invalid-{}", info.key.0, now_ms()));
        std::fs::rename(&target, &aside)
            .with_context(|| format!("moving the invalid {} aside", target.display()))?;
        std::fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
    }
    let parent = target.parent().expect("task dirs have a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    std::fs::rename(tmp, &target)
        .with_context(|| format!("publishing {} as {}", tmp.display(), target.display()))?;
    Ok(record)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Publishes an encode task with one output file `out.bin`; returns its task dir.
    pub(crate) fn publish_fake(root: &Path, key: &TaskKey, content: &[u8]) -> PathBuf {
        let tmp = layout::tmp_dir(root, key, 1);
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("out.bin"), content).unwrap();
        let info = AttemptInfo {
            stage: StageKind::Encode,
            key: key.clone(),
            version: 1,
            attempt: 1,
            started_ms: now_ms(),
            primary_metric: None,
        };
        publish(root, &tmp, &info).unwrap();
        layout::task_dir(root, StageKind::Encode, key)
    }

    #[test]
    fn publish_moves_tmp_and_refuses_a_second_valid_publish() {
        let root = tempfile::tempdir().unwrap();
        let key = TaskKey("12".repeat(32));
        let dir = publish_fake(root.path(), &key, b"hello");
        assert!(!layout::tmp_dir(root.path(), &key, 1).exists());
        let rec = done::read(&dir).unwrap();
        assert_eq!(rec.outputs.len(), 1);
        assert_eq!(rec.outputs[0].size, 5);

        let tmp2 = layout::tmp_dir(root.path(), &key, 2);
        std::fs::create_dir_all(&tmp2).unwrap();
        std::fs::write(tmp2.join("out.bin"), b"other").unwrap();
        let info = AttemptInfo {
            stage: StageKind::Encode,
            key: key.clone(),
            version: 1,
            attempt: 2,
            started_ms: 0,
            primary_metric: None,
        };
        let err = publish(root.path(), &tmp2, &info).unwrap_err();
        assert!(err.to_string().contains("already published"), "{err}");
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), b"hello");

        // A corrupted result is replaced.
        std::fs::write(dir.join("out.bin"), b"hel").unwrap();
        publish(root.path(), &tmp2, &info).unwrap();
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), b"other");
    }

    #[test]
    fn primary_metric_must_have_a_final_value() {
        let root = tempfile::tempdir().unwrap();
        let key = TaskKey("34".repeat(32));
        let tmp = layout::tmp_dir(root.path(), &key, 1);
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(
            tmp.join(METRICS_FILE),
            "{\"name\":\"acc\",\"step\":3,\"value\":0.5}\n",
        )
        .unwrap();
        let info = AttemptInfo {
            stage: StageKind::Eval,
            key,
            version: 1,
            attempt: 1,
            started_ms: 0,
            primary_metric: Some("acc".into()),
        };
        let err = publish(root.path(), &tmp, &info).unwrap_err();
        assert!(err.to_string().contains("primary metric"), "{err}");
    }
}
