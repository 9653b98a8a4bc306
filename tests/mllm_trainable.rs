//! What trains in each stage (paper.md §1.6): pretraining sees only the fusion weights (+ I_M
//! sub-blocks), the LLM and tower are not even in the optimiser's map; finetuning adds every LLM
//! weight; `freeze_llm` and a separate fusion learning rate behave as documented.

#[path = "mllm_support.rs"]
mod support;

use candle_core::Tensor;
use mlvf::layers::Fusion;
use mlvf::manifest::stages::Template;
use mlvf::model::mllm::Mllm;
use mlvf::train::optim::named_vars;
use mlvf::train::trainer::{train, MetricLog, TrainerOptions};
use support::*;

fn snapshot(ts: Vec<(String, Tensor)>) -> Vec<(String, Vec<f32>)> {
    ts.into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

fn opts(fusion_lr: Option<f64>) -> TrainerOptions {
    TrainerOptions {
        checkpoint_every: 0,
        progress: false,
        fusion_lr,
        ..Default::default()
    }
}

#[test]
fn pretraining_trains_the_fusion_only() {
    let (model, map) =
        Mllm::pretrain(&spec(Fusion::InternalModular, "idx:1-2-3"), 0, &cpu()).unwrap();
    let names: Vec<String> = named_vars(&map).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n.starts_with("mm_projector.")));
    assert!(
        names.iter().any(|n| n.contains(".xattn.")),
        "I_M sub-blocks train"
    );
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("mm_") || n.contains(".xattn.")),
        "only fusion weights are trainable: {names:?}"
    );
    let before = snapshot(model.llm().named_tensors());
    let tower_before = snapshot(model.tower().named_tensors());
    let dir = tempfile::tempdir().unwrap();
    let hp = hparams(1e-2, 3, 3, 1, Template::Plain);
    train(
        &model,
        &map,
        &pretrain_data(),
        &hp,
        0,
        dir.path(),
        &opts(None),
        &mut MetricLog::default(),
    )
    .unwrap();
    assert_eq!(
        snapshot(model.llm().named_tensors()),
        before,
        "the LLM is frozen"
    );
    assert_eq!(
        snapshot(model.tower().named_tensors()),
        tower_before,
        "the tower is frozen"
    );
}

#[test]
fn finetuning_trains_the_llm_unless_frozen_and_honours_a_fusion_lr() {
    let dir = tempfile::tempdir().unwrap();
    let pre = dir.path().join("pre");
    let (m, map) = Mllm::pretrain(&spec(Fusion::ExternalDirect, "idx:1-2-3"), 0, &cpu()).unwrap();
    m.save(&map, &pre, false, mlvf::data::TemplateKind::Plain)
        .unwrap();
    let fusion_before = snapshot(
        named_vars(&map)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect(),
    );
    let hp = hparams(1e-3, 2, 2, 1, Template::VicunaV1);

    // Fusion lr 0: the fusion weights stay, the LLM moves.
    let (model, map) = Mllm::finetune(&pre, false, &cpu()).unwrap();
    let llm_before = snapshot(model.llm().named_tensors());
    train(
        &model,
        &map,
        &finetune_data(),
        &hp,
        0,
        &dir.path().join("a"),
        &opts(Some(0.0)),
        &mut MetricLog::default(),
    )
    .unwrap();
    assert_ne!(
        snapshot(model.llm().named_tensors()),
        llm_before,
        "the LLM trains"
    );
    let fusion_after: Vec<_> = snapshot(
        named_vars(&map)
            .into_iter()
            .filter(|(n, _)| n.starts_with("mm_"))
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect(),
    );
    assert_eq!(
        fusion_after, fusion_before,
        "fusion lr 0 leaves the fusion weights"
    );

    // freeze_llm: only the fusion is in the map, and the LLM does not move.
    let (model, map) = Mllm::finetune(&pre, true, &cpu()).unwrap();
    assert!(named_vars(&map).iter().all(|(n, _)| n.starts_with("mm_")));
    let llm_before = snapshot(model.llm().named_tensors());
    train(
        &model,
        &map,
        &finetune_data(),
        &hp,
        0,
        &dir.path().join("b"),
        &opts(None),
        &mut MetricLog::default(),
    )
    .unwrap();
    assert_eq!(snapshot(model.llm().named_tensors()), llm_before);
}

#[test]
fn an_untrainable_sample_fails_before_the_first_step() {
    // max_len so small that the answer is cut away entirely: nothing to supervise.
    let (model, map) = Mllm::pretrain(&spec(Fusion::Baseline, ""), 0, &cpu()).unwrap();
    let mut hp = hparams(1e-3, 2, 1, 1, Template::Plain);
    hp.max_len = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut log = MetricLog::default();
    let err = train(
        &model,
        &map,
        &pretrain_data(),
        &hp,
        0,
        dir.path(),
        &opts(None),
        &mut log,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pretrain.json") && err.contains("cannot be trained on"),
        "{err}"
    );
    assert!(log.series("loss").is_empty(), "no step ran");
}
