//! `mlvf explain`: print a task's key pre-image and why it would rerun after a manifest edit.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ExplainArgs {}

pub fn run(_args: ExplainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf explain` is not implemented yet")
}
