//! `mlvf plan`: show every task of a sweep, what is shared and what is already done.

use crate::plan::{self, render};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Counts per stage, sharing, cached/missing and the task tree.
    Text,
    /// A stable object: {sweep, store, stages, tasks} (see the README).
    Json,
    /// A graphviz digraph (`mlvf plan m.toml --format dot | dot -Tsvg > plan.svg`).
    Dot,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The sweep manifest (TOML).
    pub manifest: PathBuf,
    /// Store root (default: the manifest's `[sweep] store`).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Text format: only counts and sharing, no task tree.
    #[arg(long)]
    pub summary: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (plan, warnings) = plan::load_with_warnings(&args.manifest, args.store.as_deref())?;
    for w in &warnings {
        eprintln!("{w}");
    }
    let cached = render::states(&plan);
    match args.format {
        PlanFormat::Text => print!("{}", render::text(&plan, &cached, !args.summary)),
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render::json(&plan, &cached))?
        ),
        PlanFormat::Dot => print!("{}", render::dot(&plan, &cached)?),
    }
    Ok(ExitCode::SUCCESS)
}
