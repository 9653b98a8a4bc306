//! `mlvf score`: re-score predictions of a benchmark.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ScoreArgs {}

pub fn run(_args: ScoreArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf score` is not implemented yet")
}
