//! `VisionConfig`: the shape of a CLIP or SigLIP vision tower, read from an HF `config.json`.
//!
//! HF writes only the fields that differ from the class defaults (google/siglip-so400m-patch14-384
//! omits `layer_norm_eps` and `hidden_act`), so every missing field takes the default of the
//! transformers config class for that architecture, exactly as `from_pretrained` would.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Which vision transformer family a checkpoint belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VisionArch {
    /// CLIP ViT: bias-free patch conv, class token, `pre_layrnorm`, quick-GELU.
    Clip,
    /// SigLIP ViT: patch conv with bias, no class token, GELU-tanh, no pre-norm.
    Siglip,
}

impl VisionArch {
    /// The `model_type` of the HF vision-only config class.
    pub fn vision_model_type(self) -> &'static str {
        match self {
            VisionArch::Clip => "clip_vision_model",
            VisionArch::Siglip => "siglip_vision_model",
        }
    }

    /// The HF class a saved tower loads into.
    pub fn hf_class(self) -> &'static str {
        match self {
            VisionArch::Clip => "CLIPVisionModel",
            VisionArch::Siglip => "SiglipVisionModel",
        }
    }

    /// Parses an HF `model_type` (vision-only or full dual-tower model).
    pub fn from_model_type(s: &str) -> Option<VisionArch> {
        match s {
            "clip_vision_model" | "clip" => Some(VisionArch::Clip),
            "siglip_vision_model" | "siglip" => Some(VisionArch::Siglip),
            _ => None,
        }
    }
}

/// The MLP activation (`hidden_act` in config.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VisionActivation {
    /// `quick_gelu`: x·σ(1.702x), CLIP's.
    QuickGelu,
    /// `gelu_pytorch_tanh` / `gelu_new`: the tanh approximation, SigLIP's.
    GeluTanh,
    /// `gelu`: the exact erf form.
    Gelu,
}

impl VisionActivation {
    /// Parses HF's `hidden_act` string.
    pub fn parse(s: &str) -> Option<VisionActivation> {
        match s {
            "quick_gelu" => Some(VisionActivation::QuickGelu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Some(VisionActivation::GeluTanh),
            "gelu" => Some(VisionActivation::Gelu),
            _ => None,
        }
    }

    /// The canonical HF name.
    pub fn hf_name(self) -> &'static str {
        match self {
            VisionActivation::QuickGelu => "quick_gelu",
            VisionActivation::GeluTanh => "gelu_pytorch_tanh",
            VisionActivation::Gelu => "gelu",
        }
    }
}

/// Everything needed to build a vision tower of any depth, width, image or patch size.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    pub arch: VisionArch,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: VisionActivation,
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// transformers' `CLIPVisionConfig()` / `SiglipVisionConfig()` defaults.
    pub fn hf_defaults(arch: VisionArch) -> VisionConfig {
        let (patch_size, hidden_act, layer_norm_eps) = match arch {
            VisionArch::Clip => (32, VisionActivation::QuickGelu, 1e-5),
            VisionArch::Siglip => (16, VisionActivation::GeluTanh, 1e-6),
        };
        VisionConfig {
            arch,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size,
            hidden_act,
            layer_norm_eps,
        }
    }

    /// openai/clip-vit-large-patch14-336, LLaVA-1.5's tower.
    pub fn clip_vit_large_patch14_336() -> VisionConfig {
        VisionConfig {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            image_size: 336,
            patch_size: 14,
            ..VisionConfig::hf_defaults(VisionArch::Clip)
        }
    }

    /// google/siglip-so400m-patch14-384.
    pub fn siglip_so400m_patch14_384() -> VisionConfig {
        VisionConfig {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_hidden_layers: 27,
            num_attention_heads: 16,
            image_size: 384,
            patch_size: 14,
            ..VisionConfig::hf_defaults(VisionArch::Siglip)
        }
    }

    /// Patches per side: the patch conv has stride = kernel, so a remainder is dropped.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patch tokens per image.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// Tokens in every hidden state: patches, plus the class token for CLIP.
    pub fn num_tokens(&self) -> usize {
        self.num_patches() + usize::from(self.arch == VisionArch::Clip)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The depth `crate::layers` resolves layer sets against. SigLIP drops its last layer, as
    /// the paper's official code does (paper.md §2.2); the tower still computes it if asked.
    pub fn encoder_depth(&self) -> crate::layers::EncoderDepth {
        crate::layers::EncoderDepth {
            layers: self.num_hidden_layers,
            drop_last: self.arch == VisionArch::Siglip,
        }
    }

    /// Multiply-add FLOPs (2 per MAC) of one image through the patch embedding and `layers`
    /// encoder layers: the matmuls only (norms, softmax and activations are a few percent).
    pub fn forward_flops(&self, layers: usize) -> u64 {
        let (t, d, f) = (
            self.num_tokens() as u64,
            self.hidden_size as u64,
            self.intermediate_size as u64,
        );
        let p = self.patch_size as u64;
        let patch = 2 * self.num_patches() as u64 * d * self.num_channels as u64 * p * p;
        let projections = 2 * 4 * t * d * d;
        let attention = 2 * 2 * t * t * d;
        let mlp = 2 * 2 * t * d * f;
        patch + layers as u64 * (projections + attention + mlp)
    }

    /// Reads `config.json` of a vision-only model, a CLIP/SigLIP dual model (`vision_config`)
    /// or a LLaVA-style model whose `vision_config` names its type.
    pub fn from_file(path: &Path) -> Result<VisionConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read vision config {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        VisionConfig::from_hf_json(&value).with_context(|| format!("in {}", path.display()))
    }

    /// Parses the JSON of an HF config (see [`VisionConfig::from_file`]).
    pub fn from_hf_json(value: &Value) -> Result<VisionConfig> {
        let top_type = value.get("model_type").and_then(Value::as_str);
        let (section, section_type) = match value.get("vision_config") {
            Some(v) if v.is_object() => (v, v.get("model_type").and_then(Value::as_str)),
            _ => (value, top_type),
        };
        let type_name = section_type.or(top_type).unwrap_or("<missing>");
        let Some(arch) = VisionArch::from_model_type(type_name)
            .or_else(|| top_type.and_then(VisionArch::from_model_type))
        else {
            bail!(
                "model_type `{type_name}` is not a supported vision tower; expected one of \
                 clip_vision_model, siglip_vision_model, clip, siglip (or a config with a \
                 `vision_config` of one of those types)"
            );
        };
        let mut cfg = VisionConfig::hf_defaults(arch);
        let get_usize = |key: &str, slot: &mut usize| -> Result<()> {
            if let Some(v) = section.get(key) {
                *slot = v
                    .as_u64()
                    .with_context(|| format!("`{key}` must be a positive integer, found {v}"))?
                    as usize;
            }
            Ok(())
        };
        get_usize("hidden_size", &mut cfg.hidden_size)?;
        get_usize("intermediate_size", &mut cfg.intermediate_size)?;
        get_usize("num_hidden_layers", &mut cfg.num_hidden_layers)?;
        get_usize("num_attention_heads", &mut cfg.num_attention_heads)?;
        get_usize("num_channels", &mut cfg.num_channels)?;
        get_usize("image_size", &mut cfg.image_size)?;
        get_usize("patch_size", &mut cfg.patch_size)?;
        if let Some(v) = section.get("hidden_act") {
            let name = v.as_str().unwrap_or("<not a string>");
            cfg.hidden_act = VisionActivation::parse(name).with_context(|| {
                format!("hidden_act `{name}` is not supported; use quick_gelu, gelu_pytorch_tanh or gelu")
            })?;
        }
        if let Some(v) = section.get("layer_norm_eps") {
            cfg.layer_norm_eps = v
                .as_f64()
                .with_context(|| format!("`layer_norm_eps` must be a number, found {v}"))?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the sizes fit together; the message names the offending fields.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.hidden_size == 0 || c.num_attention_heads == 0 || c.num_hidden_layers == 0 {
            bail!("hidden_size, num_attention_heads and num_hidden_layers must be positive");
        }
        if c.hidden_size % c.num_attention_heads != 0 {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        if c.patch_size == 0 || c.patch_size > c.image_size {
            bail!(
                "patch_size {} must be in 1..=image_size ({})",
                c.patch_size,
                c.image_size
            );
        }
        if c.num_channels == 0 || c.intermediate_size == 0 {
            bail!("num_channels and intermediate_size must be positive");
        }
        Ok(())
    }

    /// The config.json transformers needs to load a saved tower as `CLIPVisionModel` /
    /// `SiglipVisionModel` (SigLIP's attention-pooling head is not part of our tower).
    pub fn to_hf_json(&self, dtype: &str) -> Value {
        let mut v = json!({
            "architectures": [self.arch.hf_class()],
            "model_type": self.arch.vision_model_type(),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_channels": self.num_channels,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "hidden_act": self.hidden_act.hf_name(),
            "layer_norm_eps": self.layer_norm_eps,
            "attention_dropout": 0.0,
            "torch_dtype": dtype,
        });
        if self.arch == VisionArch::Siglip {
            v["vision_use_head"] = json!(false);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siglip_so400m_config_takes_class_defaults_for_missing_fields() {
        // The real google/siglip-so400m-patch14-384 config.json lists only these vision fields.
        let v = json!({"model_type": "siglip", "vision_config": {
            "hidden_size": 1152, "image_size": 384, "intermediate_size": 4304,
            "model_type": "siglip_vision_model", "num_attention_heads": 16,
            "num_hidden_layers": 27, "patch_size": 14}});
        let cfg = VisionConfig::from_hf_json(&v).unwrap();
        assert_eq!(cfg, VisionConfig::siglip_so400m_patch14_384());
        assert_eq!(cfg.num_tokens(), 729);
        assert_eq!(cfg.layer_norm_eps, 1e-6);
        assert_eq!(cfg.encoder_depth().base(), 25); // paper.md §2.2: SigLIP's base layer is 25
    }

    #[test]
    fn clip_dual_model_config_without_nested_type() {
        let v = json!({"model_type": "clip", "vision_config": {
            "hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
            "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14}});
        let cfg = VisionConfig::from_hf_json(&v).unwrap();
        assert_eq!(cfg, VisionConfig::clip_vit_large_patch14_336());
        assert_eq!(cfg.num_tokens(), 577);
        assert_eq!(cfg.encoder_depth().base(), 23);
    }

    #[test]
    fn unknown_type_and_bad_sizes_are_explained() {
        let err = VisionConfig::from_hf_json(&json!({"model_type": "llama"})).unwrap_err();
        assert!(format!("{err:#}").contains("llama"), "{err:#}");
        let err = VisionConfig::from_hf_json(&json!({"model_type": "clip_vision_model",
            "hidden_size": 30, "num_attention_heads": 4}))
        .unwrap_err();
        assert!(format!("{err:#}").contains("not divisible"), "{err:#}");
    }

    #[test]
    fn flop_count_of_clip_large_layer() {
        let cfg = VisionConfig::clip_vit_large_patch14_336();
        // 577 tokens, width 1024, MLP 4096: ≈ 15.9 GFLOP per layer, ≈ 0.69 GFLOP patch embedding.
        let one = cfg.forward_flops(1) as f64 / 1e9;
        assert!((one - 16.58).abs() < 0.05, "{one}");
    }

    #[test]
    fn saved_json_round_trips() {
        for cfg in [
            VisionConfig::clip_vit_large_patch14_336(),
            VisionConfig::siglip_so400m_patch14_384(),
        ] {
            let back = VisionConfig::from_hf_json(&cfg.to_hf_json("float32")).unwrap();
            assert_eq!(back, cfg);
        }
    }
}
