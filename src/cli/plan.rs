//! `mlvf plan`: show every task of a sweep, what is shared and what is already done.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PlanArgs {}

pub fn run(_args: PlanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf plan` is not implemented yet")
}
