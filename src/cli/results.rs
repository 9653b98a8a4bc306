//! `mlvf results`: result tables: long, pivoted, CSV/Markdown/JSON.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ResultsArgs {}

pub fn run(_args: ResultsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf results` is not implemented yet")
}
