//! Executors: the local worker pool (and Slurm), and the worker entry point `mlvf task run`.

pub mod local;
pub mod progress;
pub mod slurm;
pub mod worker;

pub use local::{run_sweep, RunOptions, RunSummary};
