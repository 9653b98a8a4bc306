//! Samples and batches: right-padding with an attention mask, labels padded with `IGNORE_INDEX`,
//! and the image of each row described (path + aspect mode) for the vision preprocessor.

use super::tokenize::{Tokenized, IGNORE_INDEX};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// How an image is made square before the vision processor (LLaVA's `image_aspect_ratio`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageAspect {
    /// The processor's own resize (CLIP: shortest side + centre crop; SigLIP: resize). LLaVA's
    /// default, used for pretraining.
    #[default]
    Square,
    /// `expand2square`: pad to a square with the processor's mean colour, then process. Used for
    /// finetuning and by LLaVA-1.5 at eval.
    Pad,
}

impl ImageAspect {
    pub fn parse(s: &str) -> Result<ImageAspect, String> {
        match s {
            "square" => Ok(ImageAspect::Square),
            "pad" => Ok(ImageAspect::Pad),
            other => Err(format!(
                "unknown image aspect \"{other}\"; expected \"square\" or \"pad\" (anyres is not supported)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImageAspect::Square => "square",
            ImageAspect::Pad => "pad",
        }
    }
}

impl std::str::FromStr for ImageAspect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ImageAspect::parse(s)
    }
}

impl fmt::Display for ImageAspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The image of one sample, still on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub path: PathBuf,
    pub aspect: ImageAspect,
}

/// The boundary to the vision preprocessing (`crate::model::preprocess`: CLIP/SigLIP processors
/// and LLaVA's pad). The data pipeline only says *which* file and *which* aspect mode; an
/// implementation turns that into normalised pixels.
pub trait ImagePreprocessor {
    /// Pixel values `[3, H, W]` (f32) for the image at `path`, made square per `aspect`.
    fn pixel_values(&self, path: &Path, aspect: ImageAspect) -> anyhow::Result<Tensor>;
    /// The `[3, H, W]` tensor a text-only sample gets (LLaVA: zeros at the crop size).
    fn zero_image(&self) -> anyhow::Result<Tensor>;
}

/// One training sample: a tokenised record and its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Index of the record in the dataset.
    pub index: usize,
    /// The record's id (for logs and error messages).
    pub id: Box<str>,
    pub tokens: Tokenized,
    /// `None` for text-only records (they get [`ImagePreprocessor::zero_image`]).
    pub image: Option<ImageSpec>,
}

/// A sample taken from the epoch's order but left out of its batch, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedSample {
    pub index: usize,
    pub id: String,
    pub reason: String,
}

/// A right-padded batch, row-major `[batch_size, seq_len]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub batch_size: usize,
    /// Longest row's token count (before visual-token expansion).
    pub seq_len: usize,
    /// Token ids; padding is the tokenizer's pad id, image sentinels are `IMAGE_TOKEN_INDEX`.
    pub input_ids: Vec<i64>,
    /// Labels; padding and masked positions are [`IGNORE_INDEX`].
    pub labels: Vec<i64>,
    /// 1 for real tokens, 0 for padding (explicit lengths, not `ids != pad` as LLaVA computes it,
    /// so a real `<unk>` inside a text is never masked out).
    pub attention_mask: Vec<u8>,
    /// Real tokens per row.
    pub lengths: Vec<usize>,
    /// Each row's image (`None` for text-only rows).
    pub images: Vec<Option<ImageSpec>>,
    /// Dataset index of each row.
    pub indices: Vec<usize>,
    /// Record id of each row.
    pub ids: Vec<Box<str>>,
    /// Samples taken from the order for this batch but left out (reported, never trained on).
    pub skipped: Vec<SkippedSample>,
}

impl Batch {
    /// Pads `samples` on the right into one batch.
    pub fn collate(samples: Vec<Sample>, pad_id: u32) -> Batch {
        let batch_size = samples.len();
        let seq_len = samples
            .iter()
            .map(|s| s.tokens.input_ids.len())
            .max()
            .unwrap_or(0);
        let mut batch = Batch {
            batch_size,
            seq_len,
            input_ids: Vec::with_capacity(batch_size * seq_len),
            labels: Vec::with_capacity(batch_size * seq_len),
            attention_mask: Vec::with_capacity(batch_size * seq_len),
            lengths: Vec::with_capacity(batch_size),
            images: Vec::with_capacity(batch_size),
            indices: Vec::with_capacity(batch_size),
            ids: Vec::with_capacity(batch_size),
            skipped: Vec::new(),
        };
        for s in samples {
            let n = s.tokens.input_ids.len();
            let pad = seq_len - n;
            batch.input_ids.extend_from_slice(&s.tokens.input_ids);
            batch
                .input_ids
                .extend(std::iter::repeat_n(pad_id as i64, pad));
            batch.labels.extend_from_slice(&s.tokens.labels);
            batch.labels.extend(std::iter::repeat_n(IGNORE_INDEX, pad));
            batch.attention_mask.extend(std::iter::repeat_n(1u8, n));
            batch.attention_mask.extend(std::iter::repeat_n(0u8, pad));
            batch.lengths.push(n);
            batch.images.push(s.image);
            batch.indices.push(s.index);
            batch.ids.push(s.id);
        }
        batch
    }

    /// One row's ids (padding included).
    pub fn row_ids(&self, row: usize) -> &[i64] {
        &self.input_ids[row * self.seq_len..(row + 1) * self.seq_len]
    }

    /// One row's labels (padding included).
    pub fn row_labels(&self, row: usize) -> &[i64] {
        &self.labels[row * self.seq_len..(row + 1) * self.seq_len]
    }

    /// Positions that contribute to the loss, over the whole batch.
    pub fn supervised(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// `input_ids` as an i64 tensor `[batch_size, seq_len]`.
    pub fn input_ids_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.input_ids, (self.batch_size, self.seq_len), device)
    }

    /// `labels` as an i64 tensor `[batch_size, seq_len]`.
    pub fn labels_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.labels, (self.batch_size, self.seq_len), device)
    }

    /// `attention_mask` as a u8 tensor `[batch_size, seq_len]`.
    pub fn attention_mask_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(
            &self.attention_mask,
            (self.batch_size, self.seq_len),
            device,
        )
    }

    /// Pixel values `[batch_size, 3, H, W]`: each row's image through `pre` with its aspect
    /// mode, or `pre`'s zero image for text-only rows (as LLaVA does for its multimodal model).
    pub fn pixel_values(
        &self,
        pre: &dyn ImagePreprocessor,
        device: &Device,
    ) -> anyhow::Result<Tensor> {
        let mut rows = Vec::with_capacity(self.batch_size);
        for (row, image) in self.images.iter().enumerate() {
            let t = match image {
                Some(spec) => pre.pixel_values(&spec.path, spec.aspect).map_err(|e| {
                    anyhow::anyhow!(
                        "image {} of record {} (row {row}): {e:#}",
                        spec.path.display(),
                        self.ids[row]
                    )
                })?,
                None => pre.zero_image()?,
            };
            rows.push(t.to_device(device)?);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }
}
