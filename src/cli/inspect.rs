//! `mlvf inspect`: look inside models (hidden states, logits, greedy generations).

use crate::device::{compute_dtype, describe, DeviceSpec};
use crate::model::hub;
use crate::model::llm::{generate_from_ids, GenerateConfig, Llama};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// `mlvf inspect …`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectCommand,
}

/// What to inspect.
#[derive(Subcommand, Debug)]
pub enum InspectCommand {
    /// Every hidden state of a vision tower for one image, as safetensors.
    Vision(super::inspect_vision::InspectVisionArgs),
    /// The LLM's logits for every position of a tokenized prompt, as safetensors.
    Llm(InspectLlmArgs),
    /// The LLM's greedy completion of a prompt.
    Generate(GenerateArgs),
}

/// Which LLM, on which device (shared by `inspect llm` and `inspect generate`).
#[derive(Args, Debug)]
pub struct LlmModelArgs {
    /// A model directory (config.json, model.safetensors, tokenizer.json) or a Hub id `org/name[@revision]`.
    #[arg(long)]
    pub model: String,
    /// The prompt; the tokenizer adds BOS as the model expects.
    #[arg(long)]
    pub prompt: String,
    /// `auto` (CUDA 0 if built with `--features cuda` and present, else CPU), `cpu` or `cuda:N`.
    #[arg(long, default_value = "auto", value_parser = DeviceSpec::parse_arg)]
    pub device: DeviceSpec,
}

/// `mlvf inspect llm`.
#[derive(Args, Debug)]
pub struct InspectLlmArgs {
    #[command(flatten)]
    pub common: LlmModelArgs,
    /// Output file: `logits` [tokens, vocab] f32 and `input_ids` [tokens] u32.
    #[arg(long)]
    pub out: PathBuf,
}

/// `mlvf inspect generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub common: LlmModelArgs,
    /// Stop after this many new tokens (or at the model's EOS).
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
}

/// Dispatches to the chosen subcommand.
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        InspectCommand::Vision(a) => super::inspect_vision::run(a),
        InspectCommand::Llm(a) => inspect_llm(a),
        InspectCommand::Generate(a) => generate(a),
    }
}

/// The loaded model, its tokenizer and the prompt's token ids.
fn load(args: &LlmModelArgs) -> Result<(Llama, tokenizers::Tokenizer, Vec<u32>)> {
    let files = hub::resolve(&args.model)?;
    let tokenizer = files.load_tokenizer()?;
    let device = args.device.open()?;
    let model = Llama::load(&files, compute_dtype(&device), &device)?;
    tracing::info!("loaded {} on {}", files.dir.display(), describe(&device));
    let enc = tokenizer
        .encode(args.prompt.as_str(), true)
        .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
    let ids = enc.get_ids().to_vec();
    if ids.is_empty() {
        bail!("the prompt tokenizes to nothing");
    }
    if let Some(&bad) = ids
        .iter()
        .find(|&&i| i as usize >= model.config().vocab_size)
    {
        bail!(
            "token id {bad} is outside the model's vocabulary ({}): tokenizer.json does not belong to this model",
            model.config().vocab_size
        );
    }
    Ok((model, tokenizer, ids))
}

fn inspect_llm(args: InspectLlmArgs) -> Result<ExitCode> {
    let (model, _, ids) = load(&args.common)?;
    let input = Tensor::new(ids.as_slice(), model.device())?.unsqueeze(0)?;
    let logits = model
        .forward_ids(&input, None)?
        .squeeze(0)?
        .to_dtype(DType::F32)?;
    let tensors = std::collections::HashMap::from([
        (
            "logits".to_string(),
            logits.to_device(&candle_core::Device::Cpu)?,
        ),
        (
            "input_ids".to_string(),
            Tensor::new(ids.as_slice(), &candle_core::Device::Cpu)?,
        ),
    ]);
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    candle_core::safetensors::save(&tensors, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote logits [{}, {}] for {} tokens to {}",
        ids.len(),
        model.config().vocab_size,
        ids.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let (model, tokenizer, ids) = load(&args.common)?;
    let cfg = GenerateConfig::for_model(&model, args.max_new_tokens);
    let out = generate_from_ids(&model, &ids, &cfg)?;
    let text = tokenizer
        .decode(&out, true)
        .map_err(|e| anyhow::anyhow!("cannot decode the completion: {e}"))?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
