//! The typed configs each stage reads: `Task::config` is one of these, serialised. A stage
//! adapter deserialises its task's config (`serde_json::from_value::<PretrainConfig>(…)`) and
//! sees exactly the fields the key hashed, nothing else.

use crate::data::OnError;
use crate::eval::Control;
use crate::layers::{Fusion, ResolvedLayers};
use crate::manifest::entries::{BenchmarkEntry, DataEntry, ModelEntry, Source};
use crate::manifest::{EvalSettings, ImageAspect, TrainSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::path::Path;

fn is_empty(m: &Map<String, Json>) -> bool {
    m.is_empty()
}

/// A model entry's content (never its name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// `vision` or `llm`.
    pub kind: String,
    /// `clip`, `siglip` or `llama`.
    pub family: String,
    /// `hf:org/name[@revision]`, an absolute path, or `synth:<what>` (then the weights are the
    /// output of the `prepare` task among the deps).
    pub source: String,
    /// Vision: `num_hidden_layers` the manifest declared (verify against config.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Vision: whether the tower's last layer is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_last_layer: Option<bool>,
    /// LLM: decoder layers the manifest declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// Free-form settings of a `synth:` model.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub params: Map<String, Json>,
}

/// A dataset entry's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// `llava-json` for file datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Absolute path of the conversations JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    /// Absolute path of the image root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    /// `synth:<what>` for a generated dataset (its files are the `prepare` dep's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub params: Map<String, Json>,
    /// `Some(Skip)` when the entry sets `on_error = "skip"` (which records train, so it is in
    /// the key); `None` for the default `fail`, so writing `on_error = "fail"` changes no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

impl DataSpec {
    /// What to do with malformed records and unusable samples.
    pub fn on_error(&self) -> OnError {
        self.on_error.unwrap_or_default()
    }
}

/// A benchmark entry's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkSpec {
    /// Absolute path of the benchmark directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `synth:<what>` for a generated benchmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub params: Map<String, Json>,
}

/// `prepare`: generate a synthetic world, or train a tiny foundation model on one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepareConfig {
    /// `world` (`entry` = `{source: "synth:world", params: <full SynthConfig>}`) or `model`
    /// (`entry` = the [`ModelSpec`], its `params.world` the full world config; the world's task
    /// is the only dep). See `crate::plan::synth` for the manifest spelling.
    pub kind: String,
    pub entry: Json,
}

/// `encode`: every hidden state of a frozen tower over one dataset, preprocessed one way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeConfig {
    pub encoder: ModelSpec,
    pub data: DataSpec,
    pub image_aspect: ImageAspect,
}

/// `pretrain`: the fusion modules and projector, LLM and tower frozen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub fusion: Fusion,
    /// The layer set resolved for this encoder and LLM (what the model is built from).
    pub layers: ResolvedLayers,
    pub encoder: ModelSpec,
    pub llm: ModelSpec,
    pub data: DataSpec,
    pub hparams: TrainSettings,
    pub seed: u64,
    /// I_M cells only, and only when `[i_m]` differs from the default (pre-placement, full
    /// visibility, init std 0.02), so the keys of every other pretrain stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i_m: Option<crate::model::llm::CrossAttnConfig>,
}

/// `finetune`: everything but the tower. The model (fusion, layers, encoder, LLM) is its
/// pretrain dep's (`deps[0]`; read that task's spec).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub data: DataSpec,
    pub hparams: TrainSettings,
    pub seed: u64,
}

/// `eval`: generate and score one benchmark with the finetuned model (`deps[0]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub benchmark: BenchmarkSpec,
    pub settings: EvalSettings,
    /// A grounding control (`[eval] controls`): answer with blank, shuffled or no images. Set
    /// only on the control tasks, which also depend on the cell's with-image eval (its score is
    /// the S_v of their gain metrics); left out while unset, so the with-image evals keep the
    /// keys they had before controls existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
}

impl ModelSpec {
    /// The parsed source (paths in specs are already absolute).
    pub fn source(&self) -> Result<Source, String> {
        Source::parse(&self.source, Path::new("/"))
    }
}

impl From<&ModelEntry> for ModelSpec {
    fn from(e: &ModelEntry) -> Self {
        let vision = e.kind == crate::manifest::ModelKind::Vision;
        ModelSpec {
            kind: e.kind.as_str().to_string(),
            family: e.family.clone(),
            source: e.source.canonical(),
            depth: if vision { e.depth } else { None },
            drop_last_layer: vision.then_some(e.drop_last_layer),
            layers: if vision { None } else { e.layers },
            params: e.params.clone(),
        }
    }
}

impl From<&DataEntry> for DataSpec {
    fn from(e: &DataEntry) -> Self {
        DataSpec {
            format: e.format.clone(),
            json: e.json.as_ref().map(|p| p.display().to_string()),
            images: e.images.as_ref().map(|p| p.display().to_string()),
            source: e.source.as_ref().map(Source::canonical),
            params: e.params.clone(),
            on_error: e.skip_malformed.then_some(OnError::Skip),
        }
    }
}

impl From<&BenchmarkEntry> for BenchmarkSpec {
    fn from(e: &BenchmarkEntry) -> Self {
        BenchmarkSpec {
            path: e.path.as_ref().map(|p| p.display().to_string()),
            source: e.source.as_ref().map(Source::canonical),
            params: e.params.clone(),
        }
    }
}

/// Serialises a config (these types cannot fail to serialise).
pub fn to_json<T: Serialize>(c: &T) -> Json {
    serde_json::to_value(c).expect("stage configs serialise")
}
