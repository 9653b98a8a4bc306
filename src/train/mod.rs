//! Training: LLaVA data and templates, optimiser and schedule, the loop, checkpoints.

pub mod checkpoint;
pub mod data;
pub mod encoded;
pub mod grad;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod trainer;
