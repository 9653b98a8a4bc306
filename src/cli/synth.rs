//! `mlvf synth`: generate the offline synthetic world.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SynthArgs {}

pub fn run(_args: SynthArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mlvf synth` is not implemented yet")
}
