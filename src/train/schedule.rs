//! Learning-rate schedule: cosine decay with linear warmup, HF's
//! `get_cosine_schedule_with_warmup` (num_cycles = 0.5).
//!
//! `multiplier(step)` takes the number of optimiser steps already taken (0 for the first
//! update), like HF's `LambdaLR` after `step` calls: with warmup the first update therefore
//! uses lr 0, exactly as HF's Trainer does. Warmup given as a ratio is `ceil(total · ratio)`
//! steps (`TrainingArguments.get_warmup_steps`); explicit steps win over a ratio.

use anyhow::{bail, Result};

/// How long the linear warmup lasts.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Warmup {
    /// A number of optimiser steps (`--warmup_steps`).
    Steps(u64),
    /// A fraction of the total steps (`--warmup_ratio`), rounded up.
    Ratio(f64),
}

/// Cosine schedule with linear warmup, as a multiplier of each parameter group's base lr.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineSchedule {
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl CosineSchedule {
    pub fn new(total_steps: u64, warmup: Warmup) -> Result<Self> {
        if total_steps == 0 {
            bail!("the schedule needs at least one training step");
        }
        let warmup_steps = match warmup {
            Warmup::Steps(s) => s,
            Warmup::Ratio(r) => {
                if !(0.0..=1.0).contains(&r) {
                    bail!("warmup_ratio must lie in [0, 1], got {r}");
                }
                (total_steps as f64 * r).ceil() as u64
            }
        };
        Ok(Self {
            warmup_steps,
            total_steps,
        })
    }

    /// lr multiplier after `step` optimiser steps.
    pub fn multiplier(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let progress = (step - self.warmup_steps) as f64
            / (self.total_steps.saturating_sub(self.warmup_steps)).max(1) as f64;
        (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
    }
}
