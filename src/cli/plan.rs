//! `mlvf plan`: show every task of a sweep, what is shared and what is already done.

use crate::plan::{self, render};
use clap::{Args, ValueEnum};
use std::io::Write;
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
    let cached = crate::store::done::cached_states(&plan);
    let out = match args.format {
        PlanFormat::Text => render::text(&plan, &cached, !args.summary),
        PlanFormat::Json => serde_json::to_string_pretty(&render::json(&plan, &cached))? + "\n",
        PlanFormat::Dot => render::dot(&plan, &cached)?,
    };
    // `mlvf plan big.toml | head` closes the pipe early: that is not an error.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
