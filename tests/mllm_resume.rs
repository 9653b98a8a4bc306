//! Checkpoint and resume inside a training run: a run stopped after step k (with or without a
//! checkpoint at k) and restarted from the newest valid checkpoint ends with bit-identical
//! weights to an uninterrupted run. The data mixes image and text-only samples, uses gradient
//! accumulation and crosses epoch boundaries mid-accumulation.

#[path = "mllm_support.rs"]
mod support;

use candle_nn::VarMap;
use mlvf::layers::Fusion;
use mlvf::manifest::stages::{Template, TrainSettings};
use mlvf::model::mllm::Mllm;
use mlvf::train::checkpoint::list_checkpoints;
use mlvf::train::optim::named_vars;
use mlvf::train::trainer::{train, MetricLog, TrainSummary, TrainerOptions};
use std::path::Path;
use support::*;

fn hp() -> TrainSettings {
    let mut h = hparams(2e-3, 7, 2, 2, Template::VicunaV1);
    h.weight_decay = 0.1;
    h
}

fn pretrained(dir: &Path) {
    let (m, map) = Mllm::pretrain(&spec(Fusion::ExternalModular, "idx:1-2-3"), 5, &cpu()).unwrap();
    m.save(&map, dir, false, mlvf::data::TemplateKind::Plain)
        .unwrap();
}

fn run(pre: &Path, ckpt: &Path, stop_after: Option<u64>) -> (VarMap, TrainSummary, MetricLog) {
    let (model, map) = Mllm::finetune(pre, false, &cpu()).unwrap();
    let opts = TrainerOptions {
        checkpoint_every: 2,
        progress: false,
        stop_after,
        ..Default::default()
    };
    let mut log = MetricLog::default();
    let s = train(
        &model,
        &map,
        &finetune_data(),
        &hp(),
        11,
        ckpt,
        &opts,
        &mut log,
    )
    .unwrap();
    (map, s, log)
}

fn assert_same(a: &VarMap, b: &VarMap) {
    let (a, b) = (named_vars(a), named_vars(b));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let x: Vec<f32> = va.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = vb.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{na} differs after resume"
        );
    }
}

#[test]
fn a_stopped_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let pre = dir.path().join("pre");
    pretrained(&pre);
    let (full, s_full, log_full) = run(&pre, &dir.path().join("full"), None);
    assert_eq!(s_full.steps, 7);

    // Stopped right after the checkpoint of step 3.
    let ck = dir.path().join("a");
    let (_, s1, _) = run(&pre, &ck, Some(3));
    assert!(!s1.completed);
    assert_eq!(list_checkpoints(&ck).unwrap()[0].0, 3);
    let (resumed, s2, log2) = run(&pre, &ck, None);
    assert_eq!(s2.resumed_from, Some(3));
    assert!(s2.completed);
    assert_same(&full, &resumed);
    assert_eq!(s2.train_loss.to_bits(), s_full.train_loss.to_bits());
    assert_eq!(log2.series("loss"), log_full.series("loss")[3..].to_vec());

    // Killed after step 3 before its checkpoint: the newest valid one is step 2's.
    let ck = dir.path().join("b");
    run(&pre, &ck, Some(3));
    std::fs::remove_dir_all(ck.join("checkpoint-00000003")).unwrap();
    // A half-written (corrupt) newer checkpoint is skipped, not trusted.
    let broken = ck.join("checkpoint-00000004");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("state.json"), "{").unwrap();
    let (resumed, s3, _) = run(&pre, &ck, None);
    assert_eq!(s3.resumed_from, Some(2));
    assert_same(&full, &resumed);
}

#[test]
fn a_checkpoint_of_another_seed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pre = dir.path().join("pre");
    pretrained(&pre);
    let ck = dir.path().join("ck");
    run(&pre, &ck, Some(2));
    let (model, map) = Mllm::finetune(&pre, false, &cpu()).unwrap();
    let opts = TrainerOptions {
        progress: false,
        ..Default::default()
    };
    let err = train(
        &model,
        &map,
        &finetune_data(),
        &hp(),
        12,
        &ck,
        &opts,
        &mut MetricLog::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("seed 11") && err.contains("seed 12"), "{err}");
}
