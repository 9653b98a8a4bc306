//! A pretrain task whose first attempt dies mid-run (`MLVF_STOP_AFTER`, the stage fails after
//! writing its checkpoint) is finished by the next attempt from the checkpoint, and publishes
//! the same fusion weights as a task that ran uninterrupted. One test in this binary: it sets a
//! process-wide environment variable.

#[path = "mllm_support.rs"]
mod support;

use mlvf::exec::worker::run_task;
use mlvf::layers::Fusion;
use mlvf::manifest::stages::Template;
use mlvf::model::mllm::FUSION_WEIGHTS_FILE;
use mlvf::plan::config::{to_json, DataSpec, ModelSpec, PretrainConfig};
use mlvf::plan::keys::{stage_version, task_key};
use mlvf::plan::{StageKind, Task, TaskKey};
use mlvf::stages::StageRegistry;
use mlvf::store::layout;
use mlvf::store::spec::write_spec;
use std::path::Path;
use support::*;

fn pretrain_task(root: &Path) -> TaskKey {
    let f = fixtures().join("llava");
    let model = |kind: &str, dir: &Path| ModelSpec {
        kind: kind.into(),
        family: if kind == "vision" { "clip" } else { "llama" }.into(),
        source: dir.display().to_string(),
        depth: None,
        drop_last_layer: None,
        layers: None,
        params: Default::default(),
    };
    let config = to_json(&PretrainConfig {
        i_m: None,
        fusion: Fusion::ExternalDirect,
        layers: layers(Fusion::ExternalDirect, "idx:1-2-3"),
        encoder: model("vision", &vision_dir()),
        llm: model("llm", &llm_dir()),
        data: DataSpec {
            format: Some("llava-json".into()),
            json: Some(f.join("pretrain.json").display().to_string()),
            images: Some(f.join("images").display().to_string()),
            source: None,
            params: Default::default(),
            on_error: None,
        },
        hparams: hparams(1e-2, 6, 1, 1, Template::Plain),
        seed: 4,
    });
    let version = stage_version(StageKind::Pretrain);
    let key = task_key(StageKind::Pretrain, version, &config, &[]);
    write_spec(
        root,
        &Task {
            key: key.clone(),
            stage: StageKind::Pretrain,
            version,
            config,
            deps: vec![],
            cells: vec![0],
            axes: Default::default(),
            runtime: Default::default(),
        },
    )
    .unwrap();
    key
}

#[test]
fn a_killed_attempt_is_finished_by_the_next_one() {
    let reg = StageRegistry::product();
    let a = tempfile::tempdir().unwrap();
    let key = pretrain_task(a.path());
    run_task(a.path(), &key, None, &reg).unwrap();
    let want = std::fs::read(
        layout::task_dir(a.path(), StageKind::Pretrain, &key).join(FUSION_WEIGHTS_FILE),
    )
    .unwrap();

    let b = tempfile::tempdir().unwrap();
    let key_b = pretrain_task(b.path());
    assert_eq!(key, key_b);
    std::env::set_var("MLVF_CHECKPOINT_EVERY", "2");
    std::env::set_var("MLVF_STOP_AFTER", "3");
    let err = format!("{:#}", run_task(b.path(), &key, None, &reg).unwrap_err());
    assert!(err.contains("stopped after step 3 of 6"), "{err}");
    assert!(
        !layout::task_dir(b.path(), StageKind::Pretrain, &key).exists(),
        "nothing published"
    );
    std::env::remove_var("MLVF_STOP_AFTER");
    run_task(b.path(), &key, None, &reg).unwrap();
    let dir = layout::task_dir(b.path(), StageKind::Pretrain, &key);
    let got = std::fs::read(dir.join(FUSION_WEIGHTS_FILE)).unwrap();
    assert!(
        got == want,
        "the resumed task's fusion weights differ from an uninterrupted run's"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["name"] == "loss")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![4, 5, 6],
        "attempt 2 trains only the steps after the checkpoint"
    );
}
