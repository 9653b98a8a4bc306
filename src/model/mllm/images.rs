//! Images into the frozen tower: the data pipeline's [`ImagePreprocessor`] for the HF image
//! processors, and a per-image cache of the tower's selected hidden states (the tower is frozen,
//! so an image's features never change across epochs).

use crate::data::encoded::EncodedFeatures;
use crate::data::{ImageAspect, ImagePreprocessor};
use crate::model::preprocess::{load_rgb, ImageProcessor, ResizeTarget};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl ImagePreprocessor for ImageProcessor {
    fn pixel_values(&self, path: &Path, aspect: ImageAspect) -> Result<Tensor> {
        let img = load_rgb(path)?;
        self.preprocess(&img, aspect, &Device::Cpu)
            .with_context(|| format!("preprocessing {}", path.display()))
    }

    fn zero_image(&self) -> Result<Tensor> {
        let (h, w) = match (self.center_crop, self.resize) {
            (Some(hw), _) => hw,
            (None, Some(ResizeTarget::Exact { height, width })) => (height, width),
            _ => bail!(
                "the image processor has neither a crop size nor an exact resize, so a text-only \
                 sample's zero image has no size; set crop_size in preprocessor_config.json"
            ),
        };
        Ok(Tensor::zeros(
            (3, h, w),
            candle_core::DType::F32,
            &Device::Cpu,
        )?)
    }
}

/// Selected hidden states per image (`[1, n, dv]` each), up to a byte budget: once full, new
/// images are computed every time instead of cached. When backed by an `encode` stage's output
/// ([`FeatureCache::backed_by`]), a miss reads that output instead of running the tower.
#[derive(Debug, Default)]
pub struct FeatureCache {
    entries: HashMap<(PathBuf, ImageAspect), Vec<Tensor>>,
    bytes: usize,
    limit: usize,
    encoded: Option<Arc<EncodedFeatures>>,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that missed the cache (answered by the encode output when backed, else the tower).
    pub misses: u64,
}

impl FeatureCache {
    /// A cache holding at most `limit_bytes` of features (0 disables caching).
    pub fn new(limit_bytes: usize) -> Self {
        FeatureCache {
            limit: limit_bytes,
            ..Default::default()
        }
    }

    /// Misses are answered from `encoded` (an encode stage's output) instead of the tower.
    /// Those features are not copied into the cache: the shards are memory-mapped, so the OS
    /// page cache already holds what is read often.
    pub fn backed_by(mut self, encoded: Option<Arc<EncodedFeatures>>) -> Self {
        self.encoded = encoded;
        self
    }

    /// The encode output behind the cache, if any.
    pub fn encoded(&self) -> Option<&EncodedFeatures> {
        self.encoded.as_deref()
    }

    /// The cached features of `(path, aspect)`, if any.
    pub fn get(&mut self, path: &Path, aspect: ImageAspect) -> Option<Vec<Tensor>> {
        let hit = self.entries.get(&(path.to_path_buf(), aspect)).cloned();
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }

    /// Stores features if the budget allows.
    pub fn insert(&mut self, path: &Path, aspect: ImageAspect, features: Vec<Tensor>) {
        let size: usize = features
            .iter()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum();
        if self.bytes + size <= self.limit {
            self.bytes += size;
            self.entries.insert((path.to_path_buf(), aspect), features);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
