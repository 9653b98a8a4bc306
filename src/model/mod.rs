//! Models in candle: vision towers, the LLaMA LLM with fusion hooks, fusion modules, loading.

pub mod fusion;
pub mod hub;
pub mod llm;
pub mod loss;
pub mod mllm;
pub mod ops;
pub mod preprocess;
pub mod vision;
