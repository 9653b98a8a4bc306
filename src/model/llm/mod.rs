//! The LLaMA LLM, written for training and for the fusion paradigms (candle-transformers' own
//! Llama returns only last-position logits, hides its blocks and cuts gradients in fused ops).
//!
//! * [`Llama`]: HF weight names, all-position logits from embeddings, KV cache, padding masks.
//! * Fusion hooks passed per call in [`ForwardOptions`]: [`Injections`] (I_D) and
//!   [`CrossAttn`] = [`CrossAttnBlocks`] + [`CrossAttnInputs`] (I_M).
//! * [`generate_greedy`] / [`generate_greedy_batch`] for evaluation.
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use mlvf::model::{hub, llm::*};
//! # fn main() -> anyhow::Result<()> {
//! let dev = Device::Cpu;
//! let files = hub::resolve("tests/fixtures/llm/tiny-tied")?;
//! let llm = Llama::load(&files, DType::F32, &dev)?; // frozen: plain tensors, no weight grads
//! let h = llm.config().hidden_size;
//! // Fusion modules live in their own trainable VarMap.
//! let trainable = VarMap::new();
//! let vb = VarBuilder::from_varmap(&trainable, DType::F32, &dev);
//! let xattn = CrossAttnBlocks::new(llm.config(), &[0], CrossAttnConfig::default(), vb)?;
//! // A batch of 1: 4 visual tokens at positions 2..6 of a 10-token sequence.
//! let embeds = Tensor::randn(0f32, 1.0, (1, 10, h), &dev)?;
//! let id_feats = Tensor::randn(0f32, 1.0, (1, 4, h), &dev)?; // an I_D projector's output
//! let im_feats = Tensor::randn(0f32, 1.0, (1, 4, h), &dev)?; // an I_M projector's output
//! let mut injections = Injections::new(VisualSpans::uniform(1, 2, 4));
//! injections.add(1, id_feats)?;
//! let mut inputs = CrossAttnInputs::new();
//! inputs.insert(0, im_feats);
//! let opts = ForwardOptions {
//!     injections: Some(&injections),
//!     cross_attn: Some(CrossAttn { blocks: &xattn, inputs: &inputs }),
//!     ..Default::default()
//! };
//! let logits = llm.forward_embeds(&embeds, &opts, None)?; // [1, 10, vocab], f32
//! let completion = generate_greedy(&llm, &embeds, &opts, &GenerateConfig::for_model(&llm, 16))?;
//! # let _ = (logits, completion); Ok(()) }
//! ```

pub mod attention;
pub mod cache;
pub mod config;
pub mod cross_attn;
pub mod generate;
pub mod injection;
pub mod layer;
pub mod mlp;
pub mod model;
pub mod norm;
pub mod rope;

pub use cache::KvCache;
pub use config::{LlamaConfig, RopeScaling};
pub use cross_attn::{
    CrossAttn, CrossAttnBlock, CrossAttnBlocks, CrossAttnConfig, CrossAttnInputs, XAttnPlacement,
    XAttnVisibility,
};
pub use generate::{
    first_logits_batch, generate_from_ids, generate_greedy, generate_greedy_batch, left_pad,
    GenerateConfig,
};
pub use injection::{Injections, VisualSpans};
pub use model::{ForwardOptions, Llama, LlmOutput};
pub use rope::Positions;
