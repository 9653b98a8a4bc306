//! The data loader a training loop pulls batches from: sampler order → tokenised samples →
//! padded batches, with a [`DataPosition`] that resumes a killed run at the same sample.

use super::batch::{Batch, ImageAspect, ImageSpec, Sample, SkippedSample};
use super::json::{LlavaDataset, OnError};
use super::sampler::{DataPosition, Sampler, SamplerConfig};
use super::template::{Template, TemplateKind};
use super::tokenize::{tokenize_conversation, TextTokenizer, TokenBudget, TokenizeError};
use serde::{Deserialize, Serialize};

/// Everything that decides which batches a loader produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// `plain` for pretraining, `vicuna_v1` for finetuning.
    pub template: TemplateKind,
    pub budget: TokenBudget,
    /// `square` (pretraining) or `pad` (finetuning), handed to the image preprocessor.
    pub aspect: ImageAspect,
    pub sampler: SamplerConfig,
    /// Drop a last batch smaller than `batch_size` (HF Trainer's default keeps it).
    pub drop_last: bool,
    /// A sample that cannot be trained on (template mismatch, answer truncated away): fail, or
    /// skip it, record it in the batch's `skipped`, and fill the batch from the next sample.
    pub on_error: OnError,
}

/// A sample that cannot be trained on, under [`OnError::Fail`].
#[derive(Debug, thiserror::Error)]
#[error("{json}: record {index} (id \"{id}\"): {source} (or set on_error = \"skip\" to leave such samples out)")]
pub struct SampleError {
    pub json: String,
    pub index: usize,
    pub id: String,
    #[source]
    pub source: TokenizeError,
}

/// What [`DataLoader::audit`] found in a whole dataset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DataAudit {
    /// Records checked.
    pub records: usize,
    /// Records that become training samples.
    pub usable: usize,
    /// Usable records cut on the right to fit the budget.
    pub truncated: usize,
    /// Supervised (label) positions over all usable samples.
    pub supervised_tokens: usize,
    /// Records that cannot be trained on, and why (in dataset order).
    pub unusable: Vec<SkippedSample>,
}

/// Produces batches from a dataset, one epoch at a time.
pub struct DataLoader<'a> {
    dataset: &'a LlavaDataset,
    tokenizer: &'a TextTokenizer,
    template: Template,
    cfg: LoaderConfig,
    sampler: Sampler,
    position: DataPosition,
    /// The order of `position.epoch`.
    order: Vec<usize>,
    skipped_total: usize,
}

impl<'a> DataLoader<'a> {
    /// A loader at the start of epoch 0.
    pub fn new(
        dataset: &'a LlavaDataset,
        tokenizer: &'a TextTokenizer,
        cfg: LoaderConfig,
    ) -> DataLoader<'a> {
        let lengths = dataset
            .records
            .iter()
            .map(|r| r.modality_length())
            .collect();
        let sampler = Sampler::new(cfg.sampler, lengths);
        let order = sampler.epoch_order(0);
        DataLoader {
            dataset,
            tokenizer,
            template: cfg.template.template(),
            cfg,
            sampler,
            position: DataPosition::default(),
            order,
            skipped_total: 0,
        }
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Where the next batch starts. Save it with a checkpoint *after* the batch was trained on.
    pub fn position(&self) -> DataPosition {
        self.position
    }

    /// Samples skipped so far by this loader (not counting records the dataset loader skipped).
    pub fn skipped_total(&self) -> usize {
        self.skipped_total
    }

    /// Batches in a full epoch if no sample is skipped.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.cfg.sampler.batch_size.max(1));
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Moves to `pos` (e.g. from a checkpoint). The next batch starts with the sample at
    /// `pos.offset` of epoch `pos.epoch`'s order.
    pub fn seek(&mut self, pos: DataPosition) -> anyhow::Result<()> {
        anyhow::ensure!(
            pos.offset <= self.dataset.len(),
            "data position {pos:?} is past the end of {} ({} records); the checkpoint belongs to another dataset",
            self.dataset.json.display(),
            self.dataset.len()
        );
        if pos.epoch != self.position.epoch {
            self.order = self.sampler.epoch_order(pos.epoch);
        }
        self.position = pos;
        Ok(())
    }

    /// Tokenises every record (in parallel) and reports what training would see: how many
    /// samples are usable, truncated or unusable (with the reasons), before a step is run.
    pub fn audit(&self) -> DataAudit {
        use rayon::prelude::*;
        let outcomes: Vec<Result<(bool, usize), SkippedSample>> = (0..self.dataset.len())
            .into_par_iter()
            .map(|index| match self.sample(index) {
                Ok(s) => Ok((s.tokens.truncated > 0, s.tokens.supervised())),
                Err(e) => Err(SkippedSample {
                    index,
                    id: self.dataset.records[index].id.to_string(),
                    reason: e.to_string(),
                }),
            })
            .collect();
        let mut audit = DataAudit {
            records: outcomes.len(),
            ..DataAudit::default()
        };
        for outcome in outcomes {
            match outcome {
                Ok((truncated, supervised)) => {
                    audit.usable += 1;
                    audit.truncated += truncated as usize;
                    audit.supervised_tokens += supervised;
                }
                Err(skip) => audit.unusable.push(skip),
            }
        }
        audit
    }

    /// The training sample for dataset record `index`.
    pub fn sample(&self, index: usize) -> Result<Sample, TokenizeError> {
        let record = &self.dataset.records[index];
        let tokens = tokenize_conversation(
            self.tokenizer,
            &self.template,
            &record.turns,
            record.has_image(),
            &self.cfg.budget,
        )?;
        Ok(Sample {
            index,
            id: record.id.clone(),
            tokens,
            image: self.dataset.image_path(record).map(|path| ImageSpec {
                path,
                aspect: self.cfg.aspect,
            }),
        })
    }

    /// The next batch of the current epoch, or `None` once the epoch is done (then
    /// `seek(position().next_epoch())` starts the next one). Under [`OnError::Skip`] a batch is
    /// refilled from the following samples, and what was left out is listed in `Batch::skipped`.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, SampleError> {
        let want = self.cfg.sampler.batch_size.max(1);
        let mut samples = Vec::with_capacity(want);
        let mut skipped = Vec::new();
        let mut offset = self.position.offset;
        while samples.len() < want && offset < self.order.len() {
            let index = self.order[offset];
            offset += 1;
            match self.sample(index) {
                Ok(s) => samples.push(s),
                Err(source) => {
                    let id = self.dataset.records[index].id.to_string();
                    match self.cfg.on_error {
                        OnError::Fail => {
                            return Err(SampleError {
                                json: self.dataset.json.display().to_string(),
                                index,
                                id,
                                source,
                            })
                        }
                        OnError::Skip => skipped.push(SkippedSample {
                            index,
                            id,
                            reason: source.to_string(),
                        }),
                    }
                }
            }
        }
        self.skipped_total += skipped.len();
        self.position.offset = offset;
        if samples.is_empty() || (self.cfg.drop_last && samples.len() < want) {
            return Ok(None);
        }
        let mut batch = Batch::collate(samples, self.tokenizer.pad_id());
        batch.skipped = skipped;
        Ok(Some(batch))
    }
}
