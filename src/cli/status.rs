//! `mlvf status`: the state of a sweep's tasks and attempts.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct StatusArgs {}

pub fn run(_args: StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf status` is not implemented yet")
}
