//! Training checkpoints: trainable weights + optimiser state + progress, written atomically.
//!
//! Layout: `DIR/checkpoint-00000120/{weights.safetensors, optimizer.safetensors, state.json}`.
//! A checkpoint is written into `DIR/.tmp-checkpoint-…` (files fsynced), then renamed into
//! place, so a crash leaves either no checkpoint or a whole one. `state.json` records the step,
//! the data position, the seed and the RNG state, and the blake3 digest and size of the two
//! tensor files; a checkpoint is *valid* only if its state parses and both digests verify.
//! [`latest_checkpoint`] returns the newest valid one, skipping (and reporting) broken ones.

use super::optim::AdamW;
use anyhow::{bail, Context, Result};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const WEIGHTS: &str = "weights.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "state.json";
const FORMAT: &str = "mlvf-checkpoint-1";

/// Full state of a ChaCha8 stream: restoring it continues the exact same sequence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RngState {
    /// The 32-byte key, hex.
    pub key: String,
    pub stream: u64,
    /// Position in 32-bit words (a u128, as a decimal string: JSON numbers are f64).
    pub word_pos: String,
}

impl RngState {
    pub fn capture(rng: &ChaCha8Rng) -> Self {
        Self {
            key: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self) -> Result<ChaCha8Rng> {
        if self.key.len() != 64 {
            bail!("RNG key must be 64 hex digits, got {}", self.key.len());
        }
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.key[2 * i..2 * i + 2], 16)
                .with_context(|| format!("RNG key `{}` is not hex", self.key))?;
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(self.stream);
        rng.set_word_pos(
            self.word_pos
                .parse()
                .with_context(|| format!("RNG word position `{}`", self.word_pos))?,
        );
        Ok(rng)
    }
}

/// Where training stands: everything besides tensors that a resume needs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Samples (or batches: the caller's unit) consumed from the data order.
    pub data_position: u64,
    /// The run's seed.
    pub seed: u64,
    /// The data/dropout RNG, mid-stream.
    pub rng: RngState,
    /// Free-form extras (last loss, epoch, …).
    #[serde(default)]
    pub extra: serde_json::Value,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileDigest {
    blake3: String,
    bytes: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    format: String,
    state: TrainState,
    weights: FileDigest,
    optimizer: FileDigest,
}

/// A checkpoint found on disk.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainState,
}

impl Checkpoint {
    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS)
    }

    pub fn optimizer(&self) -> PathBuf {
        self.dir.join(OPTIMIZER)
    }

    /// Loads weights into `weights` (every var of the map must be in the file) and the
    /// optimiser state into `optim`; returns the training state.
    pub fn restore(&self, weights: &mut VarMap, optim: &mut AdamW) -> Result<TrainState> {
        weights
            .load(self.weights())
            .with_context(|| format!("loading weights of {}", self.dir.display()))?;
        optim.load_state(&self.optimizer())?;
        Ok(self.state.clone())
    }
}

fn digest(path: &Path) -> Result<FileDigest> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(FileDigest {
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        bytes: bytes.len() as u64,
    })
}

fn fsync(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

fn checkpoint_name(step: u64) -> String {
    format!("checkpoint-{step:08}")
}

/// Writes a checkpoint of `weights`, `optim` and `state` under `dir` (created if needed) and
/// returns its directory. A checkpoint of the same step is replaced.
pub fn save_checkpoint(
    dir: &Path,
    state: &TrainState,
    weights: &VarMap,
    optim: &AdamW,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = checkpoint_name(state.step);
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp)?;
    let w = tmp.join(WEIGHTS);
    weights
        .save(&w)
        .with_context(|| format!("writing {}", w.display()))?;
    let o = tmp.join(OPTIMIZER);
    optim.save_state(&o)?;
    fsync(&w)?;
    fsync(&o)?;
    let record = StateFile {
        format: FORMAT.into(),
        state: state.clone(),
        weights: digest(&w)?,
        optimizer: digest(&o)?,
    };
    let s = tmp.join(STATE);
    let mut f = fs::File::create(&s)?;
    f.write_all(serde_json::to_string_pretty(&record)?.as_bytes())?;
    f.sync_all()?;
    drop(f);
    let target = dir.join(&name);
    if target.exists() {
        // Same step written again (a resumed attempt): move the old one aside first, because a
        // directory cannot be renamed over a non-empty one.
        let old = dir.join(format!(".old-{name}-{}", std::process::id()));
        fs::rename(&target, &old)?;
        fs::rename(&tmp, &target)?;
        fs::remove_dir_all(&old)?;
    } else {
        fs::rename(&tmp, &target)?;
    }
    fsync(dir).ok(); // directory fsync: best effort (not every filesystem allows it)
    Ok(target)
}

/// Reads and verifies the checkpoint in `path`.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let s = path.join(STATE);
    let text = fs::read_to_string(&s).with_context(|| format!("reading {}", s.display()))?;
    let record: StateFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", s.display()))?;
    if record.format != FORMAT {
        bail!(
            "{}: unknown checkpoint format `{}`",
            s.display(),
            record.format
        );
    }
    for (file, want) in [(WEIGHTS, &record.weights), (OPTIMIZER, &record.optimizer)] {
        let got = digest(&path.join(file))?;
        if got.blake3 != want.blake3 || got.bytes != want.bytes {
            bail!(
                "{}: {file} does not match its recorded checksum (truncated or modified)",
                path.display()
            );
        }
    }
    Ok(Checkpoint {
        dir: path.to_path_buf(),
        state: record.state,
    })
}

/// Checkpoint directories under `dir`, newest step first (temporary ones excluded).
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(step) = name
            .strip_prefix("checkpoint-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((step, e.path()));
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(out)
}

/// The newest checkpoint under `dir` that verifies; broken newer ones are skipped with a warning.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<Checkpoint>> {
    for (_, path) in list_checkpoints(dir)? {
        match read_checkpoint(&path) {
            Ok(c) => return Ok(Some(c)),
            Err(e) => tracing::warn!("skipping invalid checkpoint {}: {e:#}", path.display()),
        }
    }
    Ok(None)
}

/// Removes all but the newest `keep` checkpoints (HF's `save_total_limit`).
pub fn prune_checkpoints(dir: &Path, keep: usize) -> Result<()> {
    for (_, path) in list_checkpoints(dir)?.into_iter().skip(keep) {
        fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Saves `map` to `path` atomically (temp file in the same directory, fsync, rename), for stage
/// outputs such as the trained fusion weights: readers never see a half-written file.
pub fn save_varmap_atomic(map: &VarMap, path: &Path) -> Result<()> {
    crate::atomic::write_atomic_via(path, |tmp| Ok(map.save(tmp)?))
}
