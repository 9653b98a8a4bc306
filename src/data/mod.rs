//! LLaVA training data: JSON datasets, conversation templates, tokenisation with label masking,
//! sampling and batching, and the encode stage's cached features. Below the models and the
//! trainer, which both read it; it imports neither.
//!
//! The path of a sample: [`load_llava_json`] (validated [`Record`]s) → [`Template::render_training`]
//! (LLaVA's prompt text + supervised byte ranges) → [`tokenize_conversation`] (ids with the
//! `-200` image sentinel, labels masked to the answers, fitted to a [`TokenBudget`]) →
//! [`Sampler`] (seeded order per epoch, optional modality grouping) → [`Batch`] (right-padded,
//! attention mask, each row's [`ImageSpec`] for the vision preprocessor). [`DataLoader`] ties
//! these together and keeps the resumable [`DataPosition`].

pub mod batch;
pub mod encoded;
pub mod json;
pub mod loader;
pub mod sampler;
pub mod template;
pub mod tokenize;

pub use batch::{Batch, ImageAspect, ImagePreprocessor, ImageSpec, Sample, SkippedSample};
pub use json::{
    load_llava_json, write_llava_json, DataError, LlavaDataset, LoadOptions, OnError, Record, Role,
    SkippedRecord, Turn, IMAGE_PLACEHOLDER,
};
pub use loader::{DataAudit, DataLoader, LoaderConfig, SampleError};
pub use sampler::{DataPosition, Sampler, SamplerConfig};
pub use template::{Rendered, Template, TemplateKind};
pub use tokenize::{
    tokenize_conversation, TextTokenizer, TokenBudget, TokenizeError, Tokenized, IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
};
