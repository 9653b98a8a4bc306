//! `mlvf task`: run one task by key (the worker entry point executors spawn).

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct TaskArgs {}

pub fn run(_args: TaskArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf task` is not implemented yet")
}
