//! `mlvf gc`: remove task directories that no registered sweep reaches.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct GcArgs {}

pub fn run(_args: GcArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf gc` is not implemented yet")
}
