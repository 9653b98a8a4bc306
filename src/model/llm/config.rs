//! `LlamaConfig`: the fields of a Hugging Face LLaMA `config.json` this engine reads.
//!
//! Both spellings transformers has used are accepted: `rope_theta` + `rope_scaling: {type|rope_type,
//! factor, …}` (transformers ≤ 4, e.g. MobileLLaMA) and `rope_parameters: {rope_type, rope_theta, …}`
//! (transformers 5). Anything the model would silently compute differently from transformers
//! (a non-LLaMA `model_type`, biases, another activation, an unknown RoPE type) is an error.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How RoPE frequencies are rescaled for longer contexts.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's wavelength-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// `eos_token_id` may be one id or a list of ids.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(i) => vec![*i],
            TokenIds::Many(v) => v.clone(),
        }
    }
}

/// The raw JSON, as transformers writes it; [`LlamaConfig`] is the validated form.
#[derive(Clone, Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Map<String, serde_json::Value>>,
    rope_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    vocab_size: usize,
    bos_token_id: Option<u32>,
    eos_token_id: Option<TokenIds>,
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}

/// A validated LLaMA configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: key/value heads (= `num_attention_heads` for plain MHA).
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub vocab_size: usize,
    pub bos_token_id: Option<u32>,
    /// Every id that ends generation.
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Parses a `config.json` text; `origin` names the file in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text)
            .with_context(|| format!("{origin}: not a LLaMA config.json"))?;
        Self::validate(raw).with_context(|| format!("{origin}: unsupported LLaMA config"))
    }

    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    fn validate(raw: RawConfig) -> Result<Self> {
        match raw.model_type.as_deref() {
            Some("llama") => {}
            Some(other) => bail!(
                "model_type `{other}` is not supported: the LLM must be a LLaMA (`model_type: \"llama\"`, \
                 e.g. MobileLLaMA, Vicuna, TinyLlama)"
            ),
            None if raw.architectures.iter().any(|a| a == "LlamaForCausalLM") => {}
            None => bail!("config has no `model_type`; expected \"llama\""),
        }
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" {
                bail!("hidden_act `{act}` is not supported (LLaMA uses `silu`)");
            }
        }
        if raw.attention_bias || raw.mlp_bias {
            bail!("attention_bias / mlp_bias = true is not supported (LLaMA projections have no bias)");
        }
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            bail!(
                "num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv_heads})"
            );
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None => {
                if raw.hidden_size % heads != 0 {
                    bail!(
                        "hidden_size {} is not divisible by num_attention_heads {heads}",
                        raw.hidden_size
                    );
                }
                raw.hidden_size / heads
            }
        };
        if head_dim % 2 != 0 {
            bail!("head_dim {head_dim} must be even for RoPE");
        }
        // transformers 5 keeps theta and scaling together in `rope_parameters`.
        let params = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let rope_theta = raw
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(|v| v.as_f64())
            .or(raw.rope_theta)
            .unwrap_or(10_000.0);
        let rope_scaling = match params {
            None => RopeScaling::None,
            Some(p) => parse_rope_scaling(p)?,
        };
        Ok(LlamaConfig {
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
            vocab_size: raw.vocab_size,
            bos_token_id: raw.bos_token_id,
            eos_token_ids: raw.eos_token_id.map(|e| e.to_vec()).unwrap_or_default(),
        })
    }

    /// The `config.json` transformers would write for this model (transformers-4 spelling, which
    /// both transformers 4 and 5 read).
    pub fn to_json(&self) -> serde_json::Value {
        let scaling = match &self.rope_scaling {
            RopeScaling::None => serde_json::Value::Null,
            RopeScaling::Linear { factor } => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                serde_json::json!({
                    "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                })
            }
        };
        let eos = match self.eos_token_ids.as_slice() {
            [] => serde_json::Value::Null,
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "vocab_size": self.vocab_size,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "attention_bias": false,
            "mlp_bias": false,
        })
    }

    /// Query heads per key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// A small configuration for tests and the offline world.
    pub fn tiny(vocab_size: usize) -> Self {
        LlamaConfig {
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            max_position_embeddings: 512,
            tie_word_embeddings: false,
            vocab_size,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }
}

fn parse_rope_scaling(p: &serde_json::Map<String, serde_json::Value>) -> Result<RopeScaling> {
    let kind = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        p.get(key)
            .and_then(|v| v.as_f64())
            .with_context(|| format!("rope scaling `{kind}` needs a numeric `{key}`"))
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        },
        other => bail!(
            "rope scaling type `{other}` is not supported (supported: default, linear, llama3)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_STYLE: &str = r#"{
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
        "num_hidden_layers": 24, "num_attention_heads": 16, "rms_norm_eps": 1e-6,
        "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 4.0},
        "max_position_embeddings": 2048, "vocab_size": 32000, "bos_token_id": 1,
        "eos_token_id": [2, 32000], "hidden_act": "silu"
    }"#;

    #[test]
    fn reads_transformers4_spelling() {
        let c = LlamaConfig::from_json_str(OLD_STYLE, "mobilellama/config.json").unwrap();
        assert_eq!(c.num_key_value_heads, 16, "defaults to MHA");
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 4.0 });
        assert_eq!(c.eos_token_ids, vec![2, 32000]);
        assert!(!c.tie_word_embeddings);
    }

    #[test]
    fn round_trips_through_to_json() {
        let mut c = LlamaConfig::tiny(300);
        c.rope_scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let back = LlamaConfig::from_json_str(&c.to_json().to_string(), "x").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_rope_type_and_foreign_models_are_named() {
        let bad = OLD_STYLE.replace(r#""type": "linear""#, r#""type": "yarn""#);
        let e = format!(
            "{:#}",
            LlamaConfig::from_json_str(&bad, "m/config.json").unwrap_err()
        );
        assert!(e.contains("yarn") && e.contains("m/config.json"), "{e}");
        let bad = OLD_STYLE.replace(r#""model_type": "llama""#, r#""model_type": "qwen2""#);
        let e = format!(
            "{:#}",
            LlamaConfig::from_json_str(&bad, "q/config.json").unwrap_err()
        );
        assert!(e.contains("qwen2"), "{e}");
    }
}
