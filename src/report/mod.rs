//! Reports: long and pivoted result tables, CSV/Markdown/JSON/text.
//!
//! The long table has one row per grid cell × final metric with every axis value
//! ([`long::long_table`]); [`pivot::pivot`] turns it into a paper-style table (rows and columns
//! labelled by axes, seeds aggregated as mean ± std, best cell per column marked, optional
//! difference to the baseline cell); [`render`] writes either as CSV, Markdown, JSON or text;
//! [`heatmap`] draws a pivoted table as a PNG; [`publish`] writes a sweep's tables to its store.

pub mod heatmap;
pub mod long;
pub mod pivot;
pub mod publish;
pub mod render;

pub use long::{long_table, CellState, LongRow, LongTable, MetricSel};
pub use pivot::{pivot, PivotSpec, WideTable};

/// Whether a smaller value of `metric` is better (losses, perplexities, error rates). Every
/// other metric (accuracy, scores) is better when larger.
pub fn lower_is_better(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    ["loss", "perplexity", "ppl", "error", "wer", "cer"]
        .iter()
        .any(|s| m.contains(s))
}
