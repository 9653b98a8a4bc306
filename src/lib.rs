//! mlvf: multi-layer visual feature fusion ablation studies, from one TOML manifest.
//!
//! Data moves one way (see DESIGN.md):
//! manifest → grid cells → task DAG (content keys) → executor → `mlvf task run KEY` → stage →
//! published task dir → SQLite → tables.

pub mod atomic;
pub mod cli;
pub mod data;
pub mod db;
pub mod device;
pub mod error;
pub mod eval;
pub mod exec;
pub mod layers;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod report;
pub mod stages;
pub mod store;
pub mod synth;
pub mod task;
pub mod train;
