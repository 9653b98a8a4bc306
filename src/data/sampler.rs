//! The order samples are visited in: a pure function of (seed, epoch, dataset), so a killed run
//! that saved its [`DataPosition`] resumes at exactly the sample it would have seen next.
//!
//! The permutation is our own Fisher–Yates over a ChaCha8 stream (`seed`, stream = epoch), not
//! `rand`'s `shuffle`, so the order cannot change under a `rand` upgrade and break a resume.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Where a training run is in its data: the epoch, and how many entries of that epoch's order
/// have been consumed. Saved with every checkpoint; [`super::DataLoader::seek`] resumes from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    /// Entries of the epoch's order already consumed (trained on or skipped).
    pub offset: usize,
}

impl DataPosition {
    /// The start of the next epoch.
    pub fn next_epoch(self) -> DataPosition {
        DataPosition {
            epoch: self.epoch + 1,
            offset: 0,
        }
    }
}

/// How to order samples each epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub seed: u64,
    /// Shuffle each epoch (HF Trainer's default); off means file order.
    pub shuffle: bool,
    /// LLaVA's `group_by_modality_length` (finetuning): batches hold only image records or only
    /// text-only records (except one mixed leftover batch at the end), with lengths sorted within
    /// each batch to reduce padding. Requires `shuffle`.
    pub group_by_modality: bool,
    /// Samples per batch (the grouping unit; LLaVA's megabatch with one process).
    pub batch_size: usize,
}

/// Orders a dataset's samples per epoch.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    /// LLaVA's `modality_lengths`: word counts, negative for text-only records.
    modality_lengths: Vec<i64>,
}

impl Sampler {
    /// `modality_lengths[i]` is record i's [`super::Record::modality_length`].
    pub fn new(cfg: SamplerConfig, modality_lengths: Vec<i64>) -> Sampler {
        Sampler {
            cfg,
            modality_lengths,
        }
    }

    pub fn len(&self) -> usize {
        self.modality_lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modality_lengths.is_empty()
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The order of record indices for `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let n = self.modality_lengths.len();
        if !self.cfg.shuffle {
            return (0..n).collect();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed);
        rng.set_stream(epoch);
        if !self.cfg.group_by_modality {
            return permutation(n, &mut rng);
        }
        modality_grouped(&self.modality_lengths, self.cfg.batch_size.max(1), &mut rng)
    }
}

/// A uniformly random permutation of `0..n` (Fisher–Yates; the multiply-shift bound has a bias
/// below 2^-32 for any dataset that fits in memory).
fn permutation(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
    }
    v
}

/// LLaVA's `get_length_grouped_indices` with one process: a random permutation cut into groups
/// of `group`, each sorted by length, longest first.
fn length_grouped(lengths: &[i64], group: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order = permutation(lengths.len(), rng);
    for chunk in order.chunks_mut(group) {
        // Stable sort: ties keep their random order.
        chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    }
    order
}

/// LLaVA's `get_modality_length_grouped_indices` with one process: image and text-only records
/// are length-grouped separately and cut into groups of `group`; the full groups of both kinds
/// are shuffled together; the two leftover groups form one last group, in index order.
fn modality_grouped(lengths: &[i64], group: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let (mm, lang): (Vec<usize>, Vec<usize>) = (0..lengths.len()).partition(|&i| lengths[i] > 0);
    if mm.is_empty() || lang.is_empty() {
        let abs: Vec<i64> = lengths.iter().map(|l| l.abs()).collect();
        return length_grouped(&abs, group, rng);
    }
    let split = |members: &[usize], rng: &mut ChaCha8Rng| -> Vec<Vec<usize>> {
        let lens: Vec<i64> = members.iter().map(|&i| lengths[i].abs()).collect();
        let order = length_grouped(&lens, group, rng);
        order
            .chunks(group)
            .map(|c| c.iter().map(|&k| members[k]).collect())
            .collect()
    };
    let mut mm_groups = split(&mm, rng);
    let mut lang_groups = split(&lang, rng);
    let mut leftover = mm_groups.pop().unwrap_or_default();
    leftover.extend(lang_groups.pop().unwrap_or_default());
    let mut groups = mm_groups;
    groups.append(&mut lang_groups);
    let perm = permutation(groups.len(), rng);
    let mut out = Vec::with_capacity(lengths.len());
    for g in perm {
        out.extend_from_slice(&groups[g]);
    }
    leftover.sort_unstable();
    out.extend(leftover);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(shuffle: bool, group: bool, batch: usize) -> SamplerConfig {
        SamplerConfig {
            seed: 7,
            shuffle,
            group_by_modality: group,
            batch_size: batch,
        }
    }

    fn is_permutation(order: &[usize], n: usize) -> bool {
        let mut seen = vec![false; n];
        order.len() == n
            && order
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
    }

    #[test]
    fn orders_are_deterministic_per_epoch_and_differ_between_epochs() {
        let s = Sampler::new(cfg(true, false, 4), vec![1; 100]);
        let e0 = s.epoch_order(0);
        assert_eq!(e0, s.epoch_order(0));
        assert!(is_permutation(&e0, 100));
        assert_ne!(e0, s.epoch_order(1));
        assert_ne!(e0, (0..100).collect::<Vec<_>>());
        let other_seed = Sampler::new(
            SamplerConfig {
                seed: 8,
                ..cfg(true, false, 4)
            },
            vec![1; 100],
        );
        assert_ne!(e0, other_seed.epoch_order(0));
    }

    #[test]
    fn unshuffled_is_file_order() {
        let s = Sampler::new(cfg(false, false, 4), vec![1; 5]);
        assert_eq!(s.epoch_order(3), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn modality_grouping_keeps_full_batches_single_modality() {
        // 23 image records (positive) and 14 text-only (negative), batch 4.
        let lengths: Vec<i64> = (0..37)
            .map(|i| {
                if i % 3 == 0 {
                    -(i as i64 + 1)
                } else {
                    i as i64 + 1
                }
            })
            .collect();
        let n_mm = lengths.iter().filter(|&&l| l > 0).count();
        let s = Sampler::new(cfg(true, true, 4), lengths.clone());
        let order = s.epoch_order(0);
        assert!(is_permutation(&order, 37));
        // As in LLaVA, the *last* group of each modality (full or not) goes to the leftover:
        // 24 image records → 5 shuffled groups + 4 left; 13 text → 3 groups + 1 left.
        assert_eq!(n_mm, 24);
        let full = (n_mm.div_ceil(4) - 1 + (37 - n_mm).div_ceil(4) - 1) * 4;
        assert_eq!(full, 32);
        for batch in order[..full].chunks(4) {
            let image = lengths[batch[0]] > 0;
            assert!(
                batch.iter().all(|&i| (lengths[i] > 0) == image),
                "{batch:?}"
            );
            let lens: Vec<i64> = batch.iter().map(|&i| lengths[i].abs()).collect();
            assert!(
                lens.windows(2).all(|w| w[0] >= w[1]),
                "sorted longest first: {lens:?}"
            );
        }
        let mut tail = order[full..].to_vec();
        let sorted = {
            tail.sort_unstable();
            tail.clone()
        };
        assert_eq!(
            order[full..],
            sorted[..],
            "leftover group is in index order"
        );
        assert_eq!(order, s.epoch_order(0));
    }
}
