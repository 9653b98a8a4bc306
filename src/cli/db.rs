//! `mlvf db`: database maintenance (rebuild from the store).

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DbArgs {}

pub fn run(_args: DbArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf db` is not implemented yet")
}
