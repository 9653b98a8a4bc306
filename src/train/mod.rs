//! Training: LLaVA data and templates, optimiser and schedule, the loop, checkpoints.

pub mod data;
