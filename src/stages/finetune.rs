//! `finetune`: loads its pretrain dependency's model and trains everything but the vision tower
//! (paper.md §1.6, stage 2), then publishes the trained LLM under `llm/` with the fusion weights
//! and `mllm.json` (layout: `crate::model::mllm`). Eval loads the result with
//! `Mllm::load(task_dir)`.

use super::common::{encoded_features, load_dataset, train_and_publish, trainer_options};
use super::{Stage, StageContext};
use crate::model::mllm::Mllm;
use crate::plan::config::FinetuneConfig;
use crate::task::{StageKind, Task};
use crate::train::trainer::training_device;
use anyhow::Context;

/// The finetune stage. `[finetune] freeze_llm = true` trains the fusion only (an option, not the
/// paper's recipe).
pub struct FinetuneStage;

impl Stage for FinetuneStage {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> anyhow::Result<()> {
        let cfg: FinetuneConfig = serde_json::from_value(task.config.clone())
            .context("the task's config is not a finetune config (re-plan the sweep)")?;
        let pretrained = ctx
            .dep(StageKind::Pretrain)
            .context("a finetune task needs its pretrain task among the deps (re-plan the sweep)")?
            .to_path_buf();
        let device = training_device()?;
        let freeze_llm = cfg.hparams.freeze_llm;
        let (mut model, trainable) = Mllm::finetune(&pretrained, freeze_llm, &device)?;
        model.set_image_aspect(cfg.hparams.image_aspect);
        let data = load_dataset(ctx, &cfg.data)?;
        let mut opts = trainer_options()?;
        opts.group_by_modality = true; // LLaVA's finetuning recipe
        opts.on_error = cfg.data.on_error();
        opts.fusion_lr = cfg.hparams.mm_projector_lr;
        opts.encoded = encoded_features(ctx, &model, &data, cfg.hparams.image_aspect)?;
        train_and_publish(
            ctx,
            &model,
            &trainable,
            &data,
            &cfg.hparams,
            cfg.seed,
            &opts,
            !freeze_llm,
        )
    }
}
