//! Atomic file writes, one way for the whole crate: a temporary file beside the target, written,
//! fsynced, renamed over the target, then the directory fsynced. A reader sees the old content or
//! the new one; a crash or a power cut never leaves a half-written file under the final name
//! that a later attempt would trust; a failed write leaves nothing behind (the temporary file
//! is removed when it is dropped unrenamed).

use anyhow::Context;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use tempfile::NamedTempFile;

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_stream(path, |w| Ok(w.write_all(bytes)?))
}

/// Writes `path` atomically from a writer: `fill` writes the whole content to `w` (buffered).
pub fn write_atomic_stream(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut tmp = temporary_beside(path)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w).with_context(|| format!("writing {}", path.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    finish(tmp, path)
}

/// Writes `path` atomically with a writer that wants a file name of its own (candle's
/// safetensors, `VarMap::save`, a tokenizer's `save`): `save` writes the whole content to the
/// temporary path it is given.
pub fn write_atomic_via(
    path: &Path,
    save: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = temporary_beside(path)?;
    save(tmp.path()).with_context(|| format!("writing {}", path.display()))?;
    finish(tmp, path)
}

/// A temporary file in `path`'s directory (created if needed), so the final rename stays on one
/// file system.
fn temporary_beside(path: &Path) -> anyhow::Result<NamedTempFile> {
    let dir = parent_of(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| "file".to_string(), |n| n.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// fsyncs the temporary file (reopened: a writer given its path wrote through a handle of its
/// own), renames it over `path`, and fsyncs the directory so the rename itself is durable.
fn finish(tmp: NamedTempFile, path: &Path) -> anyhow::Result<()> {
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    // Directories cannot be opened for syncing on every platform; the file itself is synced.
    if let Ok(dir) = File::open(parent_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_old_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(&dir.path().join("sub")), ["out.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        write_atomic(&path, b"good").unwrap();
        let err = write_atomic_via(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("disk full")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        let err = write_atomic_stream(&path, |w| {
            w.write_all(b"half")?;
            anyhow::bail!("serialiser failed")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("serialiser failed"), "{err:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"good");
        assert_eq!(entries(dir.path()), ["w.safetensors"]);
    }

    #[test]
    fn a_writer_given_the_temporary_path_is_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        write_atomic_via(&path, |tmp| Ok(std::fs::write(tmp, b"{}")?)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert_eq!(entries(dir.path()), ["tokenizer.json"]);
    }
}
