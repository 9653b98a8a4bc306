//! Shared helpers of the `mllm_*` and `stage_*` tests (included with `#[path]`): the committed
//! tiny CLIP tower and LLaMA fixtures, layer resolution for them, toy batches and datasets.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use mlvf::data::{load_llava_json, ImageAspect, LlavaDataset, LoadOptions};
use mlvf::layers::{resolve, EncoderDepth, Fusion, LayerSet, ResolvedLayers};
use mlvf::manifest::stages::{Scheduler, Template, TrainSettings};
use mlvf::manifest::ImageAspect as ManifestAspect;
use mlvf::model::fusion::MmFuserConfig;
use mlvf::model::llm::CrossAttnConfig;
use mlvf::model::mllm::{Mllm, MllmBatch, MllmSpec, ModelPointer};
use mlvf::plan::config::{DataSpec, ModelSpec};
use std::path::{Path, PathBuf};

/// A manifest model entry for a fixture directory: the 4-layer tower or the 2-layer LLM.
pub fn model_spec(kind: &str, family: &str, dir: &Path) -> ModelSpec {
    ModelSpec {
        kind: kind.into(),
        family: family.into(),
        source: dir.display().to_string(),
        depth: (kind == "vision").then_some(4),
        drop_last_layer: (kind == "vision").then_some(false),
        layers: (kind == "llm").then_some(2),
        params: Default::default(),
    }
}

/// A manifest data entry for one of the fixture LLaVA JSON files.
pub fn data_spec(json: &str) -> DataSpec {
    let f = fixtures().join("llava");
    DataSpec {
        format: Some("llava-json".into()),
        json: Some(f.join(json).display().to_string()),
        images: Some(f.join("images").display().to_string()),
        source: None,
        params: Default::default(),
        on_error: None,
    }
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn vision_dir() -> PathBuf {
    fixtures().join("vision/clip_vision")
}

pub fn llm_dir() -> PathBuf {
    fixtures().join("llm/tiny-tied")
}

/// The fixture tower: 4 CLIP layers, nothing dropped. The fixture LLM has 2 layers.
pub const DEPTH: EncoderDepth = EncoderDepth {
    layers: 4,
    drop_last: false,
};
pub const LLM_LAYERS: usize = 2;

pub fn layers(fusion: Fusion, set: &str) -> ResolvedLayers {
    let set = (fusion != Fusion::Baseline).then(|| LayerSet::parse(set).unwrap());
    resolve(fusion, set.as_ref(), DEPTH, LLM_LAYERS).unwrap()
}

pub fn spec(fusion: Fusion, set: &str) -> MllmSpec {
    MllmSpec {
        fusion,
        layers: layers(fusion, set),
        vision: ModelPointer {
            source: vision_dir().display().to_string(),
            dir: vision_dir(),
        },
        llm: ModelPointer {
            source: llm_dir().display().to_string(),
            dir: llm_dir(),
        },
        vision_depth: Some(4),
        drop_last_layer: Some(false),
        llm_layers: Some(2),
        mmfuser: MmFuserConfig {
            heads: 4,
            points: 2,
            eps: 1e-6,
        },
        xattn: CrossAttnConfig::default(),
        image_aspect: ImageAspect::Square,
    }
}

/// The paradigms with a layer set that exercises them on the 4-layer tower.
pub fn paradigms() -> Vec<(Fusion, &'static str)> {
    vec![
        (Fusion::Baseline, ""),
        (Fusion::ExternalDirect, "idx:1-2-3"),
        (Fusion::ExternalModular, "idx:1-2-3"),
        (Fusion::InternalDirect, "idx:1-2-3"),
        (Fusion::InternalModular, "idx:1-2-3"),
    ]
}

pub fn image(name: &str) -> image::RgbImage {
    image::open(fixtures().join("llava/images/00000").join(name))
        .unwrap()
        .to_rgb8()
}

/// Two rows: one with an image in the middle of its text, one text-only (shorter: padded).
pub fn toy_batch(model: &Mllm) -> MllmBatch {
    let pixels = model.pixels(&image("000000001.png")).unwrap();
    let feats = model.image_features(&pixels).unwrap();
    let zeros = model.zero_features(1).unwrap();
    let features = feats
        .iter()
        .zip(&zeros)
        .map(|(a, z)| Tensor::cat(&[a, z], 0).unwrap())
        .collect();
    MllmBatch {
        ids: vec![vec![1, 67, -200, 223, 259, 70, 299], vec![1, 80, 261, 291]],
        labels: vec![
            vec![-100, -100, -100, 223, 259, 70, 299],
            vec![-100, 80, 261, 291],
        ],
        features,
        has_image: vec![true, false],
    }
}

pub fn pretrain_data() -> LlavaDataset {
    let f = fixtures().join("llava");
    load_llava_json(
        &f.join("pretrain.json"),
        &f.join("images"),
        &LoadOptions::default(),
    )
    .unwrap()
}

pub fn finetune_data() -> LlavaDataset {
    let f = fixtures().join("llava");
    load_llava_json(
        &f.join("finetune.json"),
        &f.join("images"),
        &LoadOptions::default(),
    )
    .unwrap()
}

pub fn hparams(lr: f64, steps: u64, batch: u64, accum: u64, template: Template) -> TrainSettings {
    TrainSettings {
        lr,
        weight_decay: 0.0,
        warmup_steps: Some(2),
        warmup_ratio: None,
        scheduler: Scheduler::Cosine,
        batch,
        grad_accum: accum,
        epochs: 1000,
        max_steps: Some(steps),
        max_len: 256,
        template,
        image_aspect: ManifestAspect::Square,
        mm_projector_lr: None,
        freeze_llm: false,
    }
}

pub fn cpu() -> Device {
    Device::Cpu
}
