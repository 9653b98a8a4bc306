//! `[[table]]`: a results table a sweep asks for, carried by the plan to the reports.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A results table a sweep should produce (`[[table]]` in the manifest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: String,
    /// Axes whose values label the rows.
    pub rows: Vec<String>,
    /// Axes whose values label the columns (usually `benchmark`).
    pub cols: Vec<String>,
    /// Metric name, or `primary` for each benchmark's primary metric.
    pub metric: String,
    /// Add an `avg` column: each row's plain mean over its columns (the paper's convention, on
    /// the benchmarks' reporting scales).
    #[serde(default)]
    pub average: bool,
    /// Keep only the cells whose axis takes one of the listed values (`where = { benchmark =
    /// ["syn-textvqa", "syn-ocrbench"] }`): one table per benchmark family, per encoder, ….
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, Vec<String>>,
}
