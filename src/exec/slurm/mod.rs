//! The Slurm executor: submits a sweep's missing tasks as job arrays (one per stage and
//! resource class, chained by `afterok`/`aftercorr`), records the job ids, and reconciles later
//! controllers, `mlvf status` included, with what Slurm and the store say.
//!
//! The same worker runs every task (`mlvf task run --store S KEY`), so a Slurm job and a local
//! worker publish identically; the controller stays the only writer of the database.

pub mod arrays;
pub mod config;
pub mod controller;
pub mod jobs;
pub mod preempt;
pub mod queue;
pub mod script;

pub use config::{ExecutorKind, Resources, SlurmConfig};
pub use controller::{
    live_tasks, reconcile, refuse_if_in_slurm, run_slurm, SlurmOptions, SlurmSummary, TaskView,
};
pub use queue::JobState;
