//! Evaluation: the benchmark format, generation, scorers and lmms-eval-shaped outputs.
//!
//! The pieces, in the order data flows through them:
//! - [`format`]: load and validate a benchmark directory (`mmeval-jsonl/1`).
//! - [`prompt`]: the LLaVA conversation template around a sample's context string.
//! - [`runner`]: the [`runner::Generator`] trait the MLLM implements, and [`runner::run_benchmark`],
//!   which generates in batches into an append-only prediction cache and resumes where it stopped.
//! - [`control`]: grounding controls (blank, shuffled or no images) the runner can answer under.
//! - [`predictions`]: read our prediction caches and lmms-eval `--log_samples` files.
//! - [`scorers`]: per-sample judgement and aggregation, by scorer name.
//! - [`scoring`]: score a benchmark from predictions (generation and scoring are separate, so a
//!   changed scorer re-scores cached predictions without regenerating).
//! - [`breakdown`]: accuracy per question type and the majority-answer baseline beside a score.
//! - [`output`]: samples JSONL and results JSON in lmms-eval's shapes.

pub mod breakdown;
pub mod control;
pub mod format;
pub mod output;
pub mod predictions;
pub mod prompt;
pub mod pyrandom;
pub mod runner;
pub mod scorers;
pub mod scoring;
pub mod sha256;
pub mod text;

pub use control::Control;
pub use format::{Benchmark, BenchmarkManifest, BenchmarkWriter, Sample};
pub use output::RunInfo;
pub use predictions::{load_predictions, Prediction, PredictionSet};
pub use prompt::TemplateKind;
pub use runner::{evaluate, run_benchmark, Generator, Request, RunOptions, RunSummary};
pub use scorers::{Metrics, Scorer};
pub use scoring::{score_benchmark, ScoreReport};
