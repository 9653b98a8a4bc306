//! The LLaMA LLM, written for training and for the fusion paradigms (candle-transformers' own
//! Llama returns only last-position logits, hides its blocks and cuts gradients in fused ops).
//!
//! * [`Llama`]: HF weight names, all-position logits from embeddings, KV cache, padding masks.
//! * Fusion hooks passed per call in [`ForwardOptions`]: [`Injections`] (I_D) and
//!   [`CrossAttn`] = [`CrossAttnBlocks`] + [`CrossAttnInputs`] (I_M).
//! * [`generate_greedy`] for evaluation.

pub mod attention;
pub mod cache;
pub mod config;
pub mod cross_attn;
pub mod generate;
pub mod injection;
pub mod layer;
pub mod mlp;
pub mod model;
pub mod rope;

pub use cache::KvCache;
pub use config::{LlamaConfig, RopeScaling};
pub use cross_attn::{
    CrossAttn, CrossAttnBlock, CrossAttnBlocks, CrossAttnConfig, CrossAttnInputs, XAttnPlacement,
    XAttnVisibility,
};
pub use generate::{
    generate_from_ids, generate_greedy, generate_greedy_batch, left_pad, GenerateConfig,
};
pub use injection::{Injections, VisualSpans};
pub use model::{ForwardOptions, Llama, LlmOutput};
pub use rope::Positions;
