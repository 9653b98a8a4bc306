//! `mlvf task`: run one task by key (the worker entry point executors spawn).

use crate::exec::worker::{run_task, WorkerOutcome};
use crate::stages::StageRegistry;
use crate::task::TaskKey;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub command: TaskCommand,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Run one task whose spec the controller wrote to <store>/specs/<KEY>.json, and publish it.
    Run {
        /// Store root.
        #[arg(long, default_value = "results")]
        store: PathBuf,
        /// Attempt number (default: one more than any attempt the store remembers).
        #[arg(long)]
        attempt: Option<u32>,
        /// The task's key (64 hex digits).
        key: String,
    },
}

pub fn run(args: TaskArgs, registry: &StageRegistry) -> anyhow::Result<ExitCode> {
    match args.command {
        TaskCommand::Run {
            store,
            attempt,
            key,
        } => {
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(super::UserError(format!(
                    "{key:?} is not a task key (64 hex digits; `mlvf plan` and `mlvf status` show them)"
                ))
                .into());
            }
            // Near a Slurm time limit the job script forwards USR1: raise a flag, don't die.
            crate::exec::slurm::preempt::install();
            match run_task(&store, &TaskKey(key), attempt, registry)? {
                WorkerOutcome::Published(rec) => {
                    println!(
                        "published {} task {} (attempt {})",
                        rec.stage, rec.key, rec.attempt
                    );
                }
                WorkerOutcome::AlreadyDone(rec) => {
                    println!(
                        "{} task {} is already done (attempt {}); nothing ran",
                        rec.stage, rec.key, rec.attempt
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
