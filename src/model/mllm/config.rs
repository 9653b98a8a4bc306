//! `mllm.json`: what a trained multimodal model is made of, written next to its weights by the
//! pretrain and finetune stages and read back by the next stage (finetune, eval).

use crate::data::TemplateKind;
use crate::model::fusion::FusionConfig;
use crate::model::llm::CrossAttnConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file name of the model description in a stage's output directory.
pub const MLLM_CONFIG_FILE: &str = "mllm.json";
/// The trainable fusion weights (fusion module, projectors and I_M sub-blocks).
pub const FUSION_WEIGHTS_FILE: &str = "mm_fusion.safetensors";
/// The sub-directory holding a fine-tuned LLM in HF layout.
pub const LLM_DIR: &str = "llm";
/// Format tag of [`MllmConfig`].
pub const MLLM_FORMAT: &str = "mlvf-mllm-1";

/// Where a foundation model comes from: the reference the manifest gave and the directory it
/// resolved to when the stage ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPointer {
    /// `hf:org/name[@rev]`, an absolute path, `synth:<what>` or `output` (this directory).
    pub source: String,
    /// The HF-layout directory; relative paths are relative to the directory holding
    /// `mllm.json`.
    pub dir: PathBuf,
}

impl ModelPointer {
    /// The directory, resolved against `base` (the directory holding `mllm.json`). A Hub
    /// snapshot that vanished from the cache is resolved again from `source`.
    pub fn resolve_dir(&self, base: &Path) -> Result<PathBuf> {
        let dir = if self.dir.is_absolute() {
            self.dir.clone()
        } else {
            base.join(&self.dir)
        };
        if dir.is_dir() {
            return Ok(dir);
        }
        if self.source.starts_with("hf:") {
            return Ok(crate::model::hub::resolve(&self.source)?.dir);
        }
        bail!(
            "model directory {} (source `{}`) does not exist any more; re-run the task that \
             produced it",
            dir.display(),
            self.source
        )
    }
}

/// Everything that fixes the shapes and wiring of a multimodal model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MllmConfig {
    /// [`MLLM_FORMAT`].
    pub format: String,
    /// The stage that wrote it (`pretrain` or `finetune`).
    pub stage: String,
    /// Paradigm, resolved layers, widths and MMFuser settings.
    pub fusion: FusionConfig,
    /// I_M only: placement, visibility and init of the gated cross-attention sub-blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattn: Option<CrossAttnConfig>,
    /// The frozen vision tower (never copied: it is never trained).
    pub vision: ModelPointer,
    /// The LLM: the frozen base model after pretraining, `llm/` after finetuning.
    pub llm: ModelPointer,
    /// Visual tokens per image (patch tokens of the base layer).
    pub image_tokens: usize,
    /// How images were made square in training (`square` or `pad`); eval should match it.
    pub image_aspect: String,
    /// The conversation template the stage trained with; eval asks in it. Absent in outputs of
    /// older versions: then `plain` after pretraining, `vicuna_v1` after finetuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateKind>,
}

impl MllmConfig {
    /// The LLM layers that get an I_M sub-block (ascending, unique).
    pub fn xattn_layers(&self) -> Vec<usize> {
        use crate::layers::ResolvedLayers;
        match (&self.xattn, &self.fusion.layers) {
            (Some(_), ResolvedLayers::Internal { injections, .. }) => {
                let mut v: Vec<usize> = injections.iter().map(|i| i.llm).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            _ => vec![],
        }
    }

    /// Reads `dir/mllm.json`.
    pub fn read(dir: &Path) -> Result<MllmConfig> {
        let path = dir.join(MLLM_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} the output of a pretrain or finetune task?)",
                path.display(),
                dir.display()
            )
        })?;
        let cfg: MllmConfig =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if cfg.format != MLLM_FORMAT {
            bail!(
                "{}: format `{}` is not `{MLLM_FORMAT}`; re-run the stage with this mlvf",
                path.display(),
                cfg.format
            );
        }
        cfg.fusion
            .validate()
            .with_context(|| format!("{}: invalid fusion config", path.display()))?;
        Ok(cfg)
    }

    /// Writes `dir/mllm.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::atomic::write_atomic(&dir.join(MLLM_CONFIG_FILE), text.as_bytes())
    }
}
