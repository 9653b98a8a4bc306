//! Writing files: PNG encoding, JSON arrays one record per line and the staging directory
//! that makes a world appear all at once or not at all.

use anyhow::Context;
use image::RgbImage;
use serde::Serialize;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// PNG bytes of `img`. The encoder is deterministic, so equal images give equal bytes (and hashes).
pub fn encode_png(img: &RgbImage) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding a PNG")?;
    Ok(bytes)
}

/// Writes a JSON array with one record per line: valid JSON for LLaVA loaders, readable with
/// `head`, and diff-friendly.
pub fn write_json_array<T: Serialize>(path: &Path, items: &[T]) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    out.write_all(b"[")?;
    for (i, item) in items.iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut out, item)?;
    }
    out.write_all(b"\n]\n")?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes pretty JSON followed by a newline.
pub fn write_pretty_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A sibling directory the world is written into, renamed onto the destination only when every
/// file is complete; dropped without `commit`, it is removed.
pub struct Staging {
    dir: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staging {
    /// Refuses a destination that exists and is not an empty directory (a world is never merged
    /// into other files).
    pub fn new(dest: &Path) -> anyhow::Result<Self> {
        if dest.exists() {
            let empty_dir = dest.is_dir()
                && fs::read_dir(dest)
                    .with_context(|| format!("reading {}", dest.display()))?
                    .next()
                    .is_none();
            if !empty_dir {
                anyhow::bail!(
                    "{} already exists and is not empty; choose another --out or remove it first",
                    dest.display()
                );
            }
        }
        let name = dest
            .file_name()
            .with_context(|| format!("{} has no file name", dest.display()))?
            .to_string_lossy()
            .into_owned();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let dir = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            dir,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Moves the finished world to its destination.
    pub fn commit(mut self) -> anyhow::Result<PathBuf> {
        if self.dest.is_dir() {
            // Checked empty in `new`; rename cannot replace a directory on every platform.
            fs::remove_dir(&self.dest)
                .with_context(|| format!("replacing empty {}", self.dest.display()))?;
        }
        fs::rename(&self.dir, &self.dest)
            .with_context(|| format!("moving {} to {}", self.dir.display(), self.dest.display()))?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
