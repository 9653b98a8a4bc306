//! The controller's lock on a store: one controller at a time runs tasks in a store, so no task
//! runs twice. An OS file lock (released by the kernel when the holder dies, even by SIGKILL)
//! on `<root>/mlvf.lock`; the file also names the holder, for the message others get.

use crate::store::{hostname, now_ms};
use anyhow::Context;
use fs4::fs_std::FileExt;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name under a store root.
pub const LOCK_FILE: &str = "mlvf.lock";

/// An exclusive lock on a store, held until dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: std::fs::File,
    path: PathBuf,
}

/// Another process holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("the store {root} is locked by another controller ({holder}); wait for it to finish, or pass --wait-lock to queue behind it")]
pub struct Locked {
    pub root: PathBuf,
    pub holder: String,
}

fn holder_text(file: &mut std::fs::File) -> String {
    let mut s = String::new();
    let _ = file.seek(std::io::SeekFrom::Start(0));
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "holder unknown".to_string()
    } else {
        s.to_string()
    }
}

impl StoreLock {
    /// Takes the lock. If another process holds it: with `wait`, blocks until it is free
    /// (`on_wait` is told who holds it first); without, fails with [`Locked`].
    pub fn acquire(
        root: &Path,
        wait: bool,
        on_wait: impl FnOnce(&str),
    ) -> anyhow::Result<StoreLock> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating store {}", root.display()))?;
        let path = root.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let got = FileExt::try_lock_exclusive(&file)
            .with_context(|| format!("locking {}", path.display()))?;
        if !got {
            let holder = holder_text(&mut file);
            if !wait {
                return Err(Locked {
                    root: root.to_path_buf(),
                    holder,
                }
                .into());
            }
            on_wait(&holder);
            FileExt::lock_exclusive(&file)
                .with_context(|| format!("locking {}", path.display()))?;
        }
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        writeln!(
            file,
            "pid {} on host {}, since {} ms after the epoch",
            std::process::id(),
            hostname(),
            now_ms()
        )?;
        file.flush()?;
        Ok(StoreLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holder_named() {
        let root = tempfile::tempdir().unwrap();
        let first = StoreLock::acquire(root.path(), false, |_| {}).unwrap();
        let err = StoreLock::acquire(root.path(), false, |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("--wait-lock"), "{msg}");
        drop(first);
        StoreLock::acquire(root.path(), false, |_| {}).unwrap();
    }
}
