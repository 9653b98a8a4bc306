//! Encoded features: the `encode` stage's on-disk format, its writer and its reader.
//!
//! The vision tower is frozen in both training stages, so an image's hidden states are a pure
//! function of (tower, image, preprocessing). The `encode` stage computes them once per
//! (encoder, dataset, image aspect) and every pretrain/finetune cell that shares those reads them
//! back instead of running the tower: one forward pass per image for the whole sweep instead of
//! one per image per cell (per epoch, beyond the in-memory [`crate::model::mllm::FeatureCache`]).
//!
//! # Layout (`mlvf-encoded/1`, the stage's output directory)
//! ```text
//! encoded.json               EncodedManifest: encoder, image aspect, shapes, shard list
//! index.json                 {"images": [<path relative to the dataset's image folder>, ...]}
//!                            (position = global row; every distinct image of the dataset once)
//! features-00000.safetensors hidden_states.{k}: [rows, tokens, width] f32, k = 0..=num_layers
//! features-00001.safetensors ...  (shard s holds rows s*rows_per_shard ..)
//! ```
//! **Every** hidden state of the tower is stored (index 0 = embeddings … `num_layers` = last
//! layer, transformers' numbering), patch tokens only (CLIP's class token is dropped, as the
//! fusion never reads it): the stage is shared by every fusion × layer-set cell, and each picks
//! its own indices at read time. Values are f32, bit-identical to what the tower computes on the
//! same device (on a GPU the tower runs in bf16 and the stored f32 holds those bf16 values
//! exactly), so the encoded path trains to the same weights as running the tower (tested).
//! One output covers one image aspect; the index maps image path → row.

use crate::data::ImageAspect;
use anyhow::{bail, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `encoded.json`'s `format`.
pub const ENCODED_FORMAT: &str = "mlvf-encoded/1";
/// The manifest of an encode output.
pub const ENCODED_FILE: &str = "encoded.json";
/// The image list of an encode output.
pub const INDEX_FILE: &str = "index.json";

/// The name of shard `i`.
pub fn shard_name(i: usize) -> String {
    format!("features-{i:05}.safetensors")
}

/// The tensor name of hidden state `k` in a shard.
pub fn tensor_name(k: usize) -> String {
    format!("hidden_states.{k}")
}

/// `encoded.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodedManifest {
    /// [`ENCODED_FORMAT`].
    pub format: String,
    /// The encoder's source as the task config wrote it (`hf:…`, a path, `synth:…`).
    pub encoder: String,
    /// `square` or `pad`: how images were made square before the tower.
    pub image_aspect: String,
    /// Hidden states per image (`num_layers + 1`).
    pub hidden_states: usize,
    /// Patch tokens per hidden state.
    pub tokens: usize,
    /// Tower width.
    pub width: usize,
    /// Always `f32`.
    pub dtype: String,
    /// Distinct images (rows).
    pub images: usize,
    /// Rows per shard (the last shard may hold fewer).
    pub rows_per_shard: usize,
    /// Shard file names, in row order.
    pub shards: Vec<String>,
    /// Bytes of feature data (all shards).
    pub bytes: u64,
}

impl EncodedManifest {
    /// Bytes one image takes: every hidden state, f32.
    pub fn row_bytes(hidden_states: usize, tokens: usize, width: usize) -> u64 {
        (hidden_states * tokens * width * 4) as u64
    }

    /// Rows of shard `i`.
    pub fn shard_rows(&self, i: usize) -> usize {
        let start = i * self.rows_per_shard;
        self.rows_per_shard.min(self.images.saturating_sub(start))
    }
}

/// `index.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodedIndex {
    /// Image paths relative to the dataset's image folder, in row order.
    pub images: Vec<String>,
}

/// An opened encode output: every shard memory-mapped, rows found by image path.
pub struct EncodedFeatures {
    dir: PathBuf,
    manifest: EncodedManifest,
    aspect: ImageAspect,
    rows: HashMap<PathBuf, usize>,
    shards: Vec<MmapedSafetensors>,
}

impl std::fmt::Debug for EncodedFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedFeatures")
            .field("dir", &self.dir)
            .field("images", &self.manifest.images)
            .finish()
    }
}

fn corrupt(dir: &Path, what: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "the encode output {} is unusable: {what}; remove that task directory (`mlvf gc` or rm) \
         and rerun the sweep to encode again",
        dir.display()
    )
}

impl EncodedFeatures {
    /// Opens the encode output in `dir` for a dataset whose images live under `image_folder`,
    /// checking the manifest, the index and every shard's header (names, shapes, dtype).
    pub fn open(dir: &Path, image_folder: &Path) -> Result<EncodedFeatures> {
        let mpath = dir.join(ENCODED_FILE);
        let text = std::fs::read_to_string(&mpath)
            .map_err(|e| corrupt(dir, format!("cannot read {}: {e}", mpath.display())))?;
        let manifest: EncodedManifest = serde_json::from_str(&text).map_err(|e| {
            corrupt(
                dir,
                format!("{} is not an encode manifest: {e}", mpath.display()),
            )
        })?;
        if manifest.format != ENCODED_FORMAT {
            return Err(corrupt(
                dir,
                format!(
                    "{} has format `{}`, this build reads `{ENCODED_FORMAT}`",
                    mpath.display(),
                    manifest.format
                ),
            ));
        }
        let Ok(aspect) = ImageAspect::parse(&manifest.image_aspect) else {
            let other = &manifest.image_aspect;
            return Err(corrupt(dir, format!("unknown image_aspect `{other}`")));
        };
        let ipath = dir.join(INDEX_FILE);
        let index: EncodedIndex = std::fs::read(&ipath)
            .map_err(|e| corrupt(dir, format!("cannot read {}: {e}", ipath.display())))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| {
                    corrupt(
                        dir,
                        format!("{} is not an encode index: {e}", ipath.display()),
                    )
                })
            })?;
        if index.images.len() != manifest.images {
            return Err(corrupt(
                dir,
                format!(
                    "{} lists {} images, {} says {}",
                    ipath.display(),
                    index.images.len(),
                    mpath.display(),
                    manifest.images
                ),
            ));
        }
        if manifest.rows_per_shard == 0
            || manifest.shards.len() != manifest.images.div_ceil(manifest.rows_per_shard)
        {
            return Err(corrupt(dir, "the shard list does not cover the images"));
        }
        let mut shards = Vec::with_capacity(manifest.shards.len());
        for (i, name) in manifest.shards.iter().enumerate() {
            let path = dir.join(name);
            // SAFETY: published task outputs are never modified in place.
            let st = unsafe { MmapedSafetensors::new(&path) }
                .map_err(|e| corrupt(dir, format!("shard {}: {e}", path.display())))?;
            let want = [manifest.shard_rows(i), manifest.tokens, manifest.width];
            for k in 0..manifest.hidden_states {
                let view = st.get(&tensor_name(k)).map_err(|e| {
                    corrupt(
                        dir,
                        format!("shard {}: {}: {e}", path.display(), tensor_name(k)),
                    )
                })?;
                if view.shape() != want || view.dtype() != safetensors::Dtype::F32 {
                    return Err(corrupt(
                        dir,
                        format!(
                            "shard {}: {} is {:?} {:?}, expected F32 {want:?}",
                            path.display(),
                            tensor_name(k),
                            view.dtype(),
                            view.shape()
                        ),
                    ));
                }
            }
            shards.push(st);
        }
        let rows = index
            .images
            .iter()
            .enumerate()
            .map(|(r, rel)| (image_folder.join(rel), r))
            .collect();
        Ok(EncodedFeatures {
            dir: dir.to_path_buf(),
            manifest,
            aspect,
            rows,
            shards,
        })
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `encoded.json` says.
    pub fn manifest(&self) -> &EncodedManifest {
        &self.manifest
    }

    /// The preprocessing the features were computed with.
    pub fn aspect(&self) -> ImageAspect {
        self.aspect
    }

    /// Fails unless these features fit a model reading hidden states `indices` of a tower with
    /// `tokens` patch tokens of width `width`, preprocessed with `aspect`.
    pub fn check_fits(
        &self,
        indices: &[usize],
        tokens: usize,
        width: usize,
        aspect: ImageAspect,
    ) -> Result<()> {
        let m = &self.manifest;
        if aspect != self.aspect {
            bail!(
                "the encode output {} holds `{}` images, this stage trains on `{}` ones (re-plan \
                 the sweep)",
                self.dir.display(),
                self.aspect.as_str(),
                aspect.as_str()
            );
        }
        if (m.tokens, m.width) != (tokens, width) {
            bail!(
                "the encode output {} holds {} tokens of width {}, the model's tower makes {tokens} \
                 of width {width} (re-plan the sweep)",
                self.dir.display(),
                m.tokens,
                m.width
            );
        }
        if let Some(&k) = indices.iter().find(|&&k| k >= m.hidden_states) {
            bail!(
                "the model reads hidden state {k}, the encode output {} holds 0..{}",
                self.dir.display(),
                m.hidden_states
            );
        }
        Ok(())
    }

    /// The features of the image at `path` (as the dataset names it: image folder joined with
    /// the record's path): one `[1, tokens, width]` tensor per entry of `indices`, on `device`
    /// in `dtype`. An image the output does not hold is an error naming both.
    pub fn features(
        &self,
        path: &Path,
        indices: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Vec<Tensor>> {
        let Some(&row) = self.rows.get(path) else {
            bail!(
                "image {} is not in the encode output {} ({} images); the dataset changed since \
                 it was encoded: remove that task directory and rerun the sweep",
                path.display(),
                self.dir.display(),
                self.manifest.images
            );
        };
        let m = &self.manifest;
        let (shard, local) = (row / m.rows_per_shard, row % m.rows_per_shard);
        let per_row = m.tokens * m.width * 4;
        indices
            .iter()
            .map(|&k| {
                let view = self.shards[shard].get(&tensor_name(k))?;
                let bytes = &view.data()[local * per_row..(local + 1) * per_row];
                let t =
                    Tensor::from_raw_buffer(bytes, DType::F32, &[1, m.tokens, m.width], device)?;
                Ok(if dtype == DType::F32 {
                    t
                } else {
                    t.to_dtype(dtype)?
                })
            })
            .collect()
    }
}
