//! Training: optimiser and schedule, the loop, checkpoints (the data it reads is [`crate::data`]).

pub mod checkpoint;
pub mod grad;
pub mod optim;
pub mod schedule;
pub mod trainer;
