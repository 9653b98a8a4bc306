//! `pretrain`: trains the fusion module and its projectors (+ I_M sub-blocks) with the tower and
//! the LLM frozen (paper.md §1.6, stage 1), and publishes `mllm.json` + `mm_fusion.safetensors`
//! (layout: `crate::model::mllm`).

use super::common::{
    encoded_features, load_dataset, resolve_model, train_and_publish, trainer_options,
};
use super::{Stage, StageContext};
use crate::model::fusion::MmFuserConfig;
use crate::model::mllm::{Mllm, MllmSpec};
use crate::plan::config::PretrainConfig;
use crate::task::Task;
use crate::train::trainer::training_device;
use anyhow::Context;

/// The pretrain stage.
pub struct PretrainStage;

impl Stage for PretrainStage {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> anyhow::Result<()> {
        let cfg: PretrainConfig = serde_json::from_value(task.config.clone())
            .context("the task's config is not a pretrain config (re-plan the sweep)")?;
        let mut spec = MllmSpec {
            fusion: cfg.fusion,
            layers: cfg.layers.clone(),
            vision: resolve_model(ctx, &cfg.encoder)?,
            llm: resolve_model(ctx, &cfg.llm)?,
            vision_depth: cfg.encoder.depth,
            drop_last_layer: cfg.encoder.drop_last_layer,
            llm_layers: cfg.llm.layers,
            mmfuser: MmFuserConfig::default(),
            xattn: cfg.i_m.unwrap_or_default(),
            image_aspect: cfg.hparams.image_aspect,
        };
        spec.mmfuser = mmfuser_for(&spec.vision.dir)?;
        let device = training_device()?;
        let (model, trainable) = Mllm::pretrain(&spec, cfg.seed, &device)?;
        let data = load_dataset(ctx, &cfg.data)?;
        let mut opts = trainer_options()?;
        opts.encoded = encoded_features(ctx, &model, &data, spec.image_aspect)?;
        opts.on_error = cfg.data.on_error();
        opts.fusion_lr = cfg.hparams.mm_projector_lr;
        train_and_publish(
            ctx,
            &model,
            &trainable,
            &data,
            &cfg.hparams,
            cfg.seed,
            &opts,
            false,
        )
    }
}

/// The paper's MMFuser (16 heads), or for a tower whose width 16 does not divide (tiny
/// `synth:` towers) the largest head count below 16 that does; `mllm.json` records the choice.
fn mmfuser_for(vision_dir: &std::path::Path) -> anyhow::Result<MmFuserConfig> {
    let cfg = crate::model::vision::VisionConfig::from_file(&vision_dir.join("config.json"))?;
    let mut m = MmFuserConfig::default();
    m.heads = (1..=m.heads)
        .rev()
        .find(|h| cfg.hidden_size % h == 0)
        .unwrap_or(1);
    Ok(m)
}
