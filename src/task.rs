//! The task vocabulary: what the planner builds and the executor, stages, store, database and
//! reports consume. It lives below all of them (it names no module but the manifest's settings a
//! plan carries), so each of them can read a task without reaching into another's code.

use crate::manifest::{ExecutorSettings, TableSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The kinds of stage a study is made of, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Builds an input: the synthetic world, a tiny foundation model, a tokenizer.
    Prepare,
    /// Runs the frozen vision tower once over a dataset and caches the selected hidden states.
    Encode,
    /// Stage 1: trains the fusion modules and projectors with the LLM frozen.
    Pretrain,
    /// Stage 2: trains everything but the vision tower on instruction data.
    Finetune,
    /// Generates answers for one benchmark and scores them.
    Eval,
}

impl StageKind {
    pub const ALL: [StageKind; 5] = [
        StageKind::Prepare,
        StageKind::Encode,
        StageKind::Pretrain,
        StageKind::Finetune,
        StageKind::Eval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Prepare => "prepare",
            StageKind::Encode => "encode",
            StageKind::Pretrain => "pretrain",
            StageKind::Finetune => "finetune",
            StageKind::Eval => "eval",
        }
    }

    pub fn parse(s: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's content key: the hex blake3 hash of its pre-image (stage kind, stage version,
/// canonical config the stage reads, upstream keys). Same inputs, same key, one task.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskKey(pub String);

impl TaskKey {
    /// The first 12 hex digits: what humans read in tables and logs (unique in practice).
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One unit of work: a stage applied to exactly the configuration it reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub key: TaskKey,
    pub stage: StageKind,
    /// The stage's code version, part of the key: bump it when a stage's outputs change meaning.
    pub version: u32,
    /// The canonical resolved configuration this stage reads (no paths of temporary files, no
    /// times, no host names). Together with `stage`, `version` and `deps` it is the key's pre-image.
    pub config: serde_json::Value,
    /// Upstream tasks whose published outputs this task reads, in a stable order.
    pub deps: Vec<TaskKey>,
    /// Indices into [`Plan::cells`] of the grid cells this task serves.
    pub cells: Vec<usize>,
    /// Labels, not part of the key: the values of the axes this stage reads, shared by its cells
    /// (an array where they differ, e.g. `layers = ["3-18", "3-18-23"]` for one external-fusion
    /// pretrain); for `prepare`/`encode`, the entry names. `mlvf explain` matches an old spec to
    /// the current plan by stage + these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub axes: BTreeMap<String, serde_json::Value>,
    /// Run-time options, not part of the key: settings that bound how a stage runs without
    /// changing what it publishes (`[encode] budget_gb` on encode tasks). The spec is the
    /// worker's only input, so they travel here; a changed value rewrites the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runtime: BTreeMap<String, serde_json::Value>,
}

/// The names of [`Task::runtime`] options, shared by the planner that sets them and the stages
/// that read them.
pub mod runtime {
    /// Encode tasks: the manifest's `[encode] budget_gb`, the cache's disk budget in GB.
    pub const ENCODE_BUDGET_GB: &str = "budget_gb";
    /// Eval tasks: how many prompts one generation batch holds (the manifest's `[eval] batch`
    /// or the stage's default).
    pub const EVAL_BATCH: &str = "batch";
}

/// One point of the grid: the value of every axis that applies to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Axis name → value as written in the manifest (e.g. "fusion" → "E_D", "finetune.lr" → 2e-5).
    pub axes: BTreeMap<String, serde_json::Value>,
}

/// A whole sweep, planned: what the executor runs and the reports read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// `[sweep] name`.
    pub sweep: String,
    /// The manifest the plan came from.
    pub manifest: PathBuf,
    /// Store root (the manifest's, or `--store`).
    pub store: PathBuf,
    pub cells: Vec<Cell>,
    /// Tasks in a topological order (every task after its deps).
    pub tasks: Vec<Task>,
    pub tables: Vec<TableSpec>,
    /// The manifest's `[executor]` (left out of the JSON while it is the default, so plans
    /// written before it existed read the same).
    #[serde(default, skip_serializing_if = "is_default")]
    pub executor: ExecutorSettings,
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}
