//! `mlvf run`: run what is missing of a sweep.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf run` is not implemented yet")
}
