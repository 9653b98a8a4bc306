//! `mlvf inspect vision`: write every hidden state of a vision tower for one image.
//!
//! The image goes through the model's own HF image processor (preprocessor_config.json, or the
//! CLIP/SigLIP default) and the tower; the output safetensors holds `hidden_states.0` …
//! `hidden_states.N` as `[tokens, dim]` f32, the same indices as transformers'
//! `output_hidden_states=True` (batch 1 squeezed), so the file compares directly with Python.

use crate::device::DeviceSpec;
use crate::model::preprocess::{load_rgb, ImageAspect, ImageProcessor};
use crate::model::vision::VisionTower;
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct InspectVisionArgs {
    /// Model directory in HF layout: config.json, *.safetensors, optional preprocessor_config.json.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Image file (PNG or JPEG).
    #[arg(long, value_name = "IMG")]
    pub image: PathBuf,
    /// Output safetensors file.
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
    /// `square`: the processor's resize/crop; `pad`: LLaVA's expand-to-square with the mean colour first.
    #[arg(long, default_value = "square", value_parser = ["square", "pad"])]
    pub aspect: String,
    /// Stop after this hidden-state index (default: all layers).
    #[arg(long, value_name = "N")]
    pub upto: Option<usize>,
    /// Compute dtype of the tower; the file is always f32.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "f16"])]
    pub dtype: String,
    /// `cpu`, `cuda:N` or `auto` (CUDA 0 if built with `--features cuda` and present, else CPU).
    #[arg(long, default_value = "cpu", value_parser = DeviceSpec::parse_arg)]
    pub device: DeviceSpec,
}

pub fn run(args: InspectVisionArgs) -> Result<ExitCode> {
    let device = args.device.open()?;
    let aspect = ImageAspect::parse(&args.aspect).map_err(anyhow::Error::msg)?;
    let dtype = match args.dtype.as_str() {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        _ => DType::F32,
    };
    let tower = VisionTower::from_dir_with_layers(&args.model, &device, dtype, args.upto)?;
    let processor = ImageProcessor::for_model_dir(&args.model, tower.config())?;
    let img = load_rgb(&args.image)?;
    let pixels = processor.preprocess(&img, aspect, &device)?.unsqueeze(0)?;
    let states = tower.forward_hidden_states(&pixels)?;
    let named = states
        .iter()
        .enumerate()
        .map(|(i, h)| {
            Ok((
                format!("hidden_states.{i}"),
                h.squeeze(0)?
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    crate::model::vision::checkpoint::write_safetensors_atomic(&named, &args.out)?;
    let cfg = tower.config();
    println!(
        "{}: {} hidden states (0 = embeddings … {} = layer {}), each [{}, {}] f32 -> {}",
        cfg.arch.hf_class(),
        states.len(),
        states.len() - 1,
        states.len() - 1,
        cfg.num_tokens(),
        cfg.hidden_size,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
