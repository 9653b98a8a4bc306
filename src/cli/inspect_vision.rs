//! `mlvf inspect vision`: write every hidden state of a vision tower for one image.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct InspectVisionArgs {}

pub fn run(_args: InspectVisionArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf inspect vision` is not implemented yet")
}
