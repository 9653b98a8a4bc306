//! `mlvf inspect`: look inside models (hidden states, logits, greedy generations).

use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectCommand,
}

#[derive(Subcommand, Debug)]
pub enum InspectCommand {
    /// Every hidden state of a vision tower for one image, as safetensors.
    Vision(super::inspect_vision::InspectVisionArgs),
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        InspectCommand::Vision(a) => super::inspect_vision::run(a),
    }
}
