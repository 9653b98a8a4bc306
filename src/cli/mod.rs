//! The command line: one file per command, each a thin layer over the library.

pub mod db;
pub mod explain;
pub mod gc;
pub mod inspect;
pub mod inspect_vision;
pub mod plan;
pub mod results;
pub mod run;
pub mod run_slurm;
pub mod score;
pub mod status;
pub mod synth;
pub mod task;

pub use crate::error::UserError;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "mlvf",
    version,
    about = "Run multi-layer visual feature fusion (MLLM) ablation studies from one TOML manifest",
    long_about = "mlvf turns a grid of fusion paradigms × layer sets × encoders × LLMs × data into a DAG of \
                  tasks keyed by exactly what each stage reads, runs what is missing (locally or on Slurm), \
                  resumes after any interruption, keeps results in SQLite and prints paper-style tables.\n\n\
                  Typical session:\n  mlvf plan experiments/quickstart.toml\n  mlvf run experiments/quickstart.toml --jobs 2\n  \
                  mlvf results experiments/quickstart.toml --format md"
)]
pub struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show every task of a sweep: counts per stage, sharing, what is cached and what is missing.
    Plan(plan::PlanArgs),
    /// Run what is missing of a sweep (resumable: kill it and run it again).
    Run(run::RunArgs),
    /// The state of a sweep's tasks and attempts.
    Status(status::StatusArgs),
    /// Result tables: long, or pivoted by axes; CSV, Markdown or JSON.
    Results(results::ResultsArgs),
    /// Print a task's key pre-image, and why it would rerun after a manifest edit.
    Explain(explain::ExplainArgs),
    /// Remove task directories that no registered sweep reaches (dry run by default).
    Gc(gc::GcArgs),
    /// Re-score predictions of a benchmark and print every metric.
    Score(score::ScoreArgs),
    /// Look inside models: hidden states, logits, greedy generations.
    Inspect(inspect::InspectArgs),
    /// Generate the offline synthetic world (images, captions, instructions, benchmarks).
    Synth(synth::SynthArgs),
    /// Run one task by key (what executors spawn; rarely typed by hand).
    Task(task::TaskArgs),
    /// Database maintenance: rebuild it from the store.
    Db(db::DbArgs),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The mlvf command line with the stages this build ships.
pub fn main() -> ExitCode {
    main_with(crate::stages::StageRegistry::product())
}

/// The mlvf command line with the given stage implementations (what `mlvf task run` runs).
/// Tests pass a registry of fake stages and run their own binary as the mlvf CLI.
pub fn main_with(registry: crate::stages::StageRegistry) -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Plan(a) => plan::run(a),
        Command::Run(a) => run::run(a),
        Command::Status(a) => status::run(a),
        Command::Results(a) => results::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Gc(a) => gc::run(a),
        Command::Score(a) => score::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Task(a) => task::run(a, &registry),
        Command::Db(a) => db::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(user) = err.downcast_ref::<UserError>() {
                eprintln!("error: {user}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {err:#}");
                ExitCode::from(1)
            }
        }
    }
}
