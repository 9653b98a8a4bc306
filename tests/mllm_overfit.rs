//! Overfit: a tiny model of every paradigm (baseline, E_D, E_M, I_D, I_M) memorises the three
//! fixture captions. The captions share their first word and differ from the second on, so a
//! loss near zero needs the image: the visual path (tower → fusion → LLM) carries information.
//! A short pretrain (fusion only, LLM frozen) runs first and its output feeds the finetune,
//! so the pretrain → finetune hand-over is exercised too.

#[path = "mllm_support.rs"]
mod support;

use mlvf::manifest::stages::Template;
use mlvf::model::mllm::Mllm;
use mlvf::train::trainer::{train, MetricLog, TrainerOptions};
use support::*;

#[test]
fn every_paradigm_memorises_a_handful_of_samples() {
    let opts = TrainerOptions {
        checkpoint_every: 0,
        progress: false,
        ..Default::default()
    };
    for (fusion, set) in paradigms() {
        let dir = tempfile::tempdir().unwrap();
        let (model, map) = Mllm::pretrain(&spec(fusion, set), 0, &cpu()).unwrap();
        let mut log = MetricLog::default();
        let hp = hparams(1e-2, 5, 3, 1, Template::Plain);
        train(
            &model,
            &map,
            &pretrain_data(),
            &hp,
            0,
            dir.path(),
            &opts,
            &mut log,
        )
        .unwrap();
        let pre = log.series("loss");
        assert!(
            pre.last().unwrap() < &pre[0],
            "{fusion}: pretraining the fusion alone did not lower the loss: {pre:?}"
        );
        model
            .save(
                &map,
                &dir.path().join("pre"),
                false,
                mlvf::data::TemplateKind::Plain,
            )
            .unwrap();

        let (model, map) = Mllm::finetune(&dir.path().join("pre"), false, &cpu()).unwrap();
        let mut log = MetricLog::default();
        let hp = hparams(3e-3, 40, 3, 1, Template::Plain);
        let s = train(
            &model,
            &map,
            &pretrain_data(),
            &hp,
            0,
            &dir.path().join("ft"),
            &opts,
            &mut log,
        )
        .unwrap();
        let loss = log.series("loss");
        assert_eq!(s.steps, 40);
        assert!(
            loss[0] > 3.0,
            "{fusion}: suspiciously low initial loss {}",
            loss[0]
        );
        assert!(
            s.last_loss < 0.05,
            "{fusion}: did not memorise 3 captions in 40 steps (loss {} → {})",
            loss[0],
            s.last_loss
        );
    }
}
