//! `pretrain` then `finetune` through the real worker (`exec::worker::run_task`, as `mlvf task
//! run KEY` does) on the fixture data and tiny models: outputs published with DONE records,
//! metrics recorded, the finetuned model loadable for evaluation and better on its data.

#[path = "mllm_support.rs"]
mod support;

use mlvf::exec::worker::{run_task, WorkerOutcome};
use mlvf::layers::Fusion;
use mlvf::manifest::stages::Template;
use mlvf::model::llm::{CrossAttnConfig, XAttnPlacement};
use mlvf::model::mllm::{Mllm, MllmConfig, FUSION_WEIGHTS_FILE, LLM_DIR};
use mlvf::plan::config::{to_json, DataSpec, FinetuneConfig, ModelSpec, PretrainConfig};
use mlvf::plan::keys::{stage_version, task_key};
use mlvf::plan::{StageKind, Task, TaskKey};
use mlvf::stages::StageRegistry;
use mlvf::store::layout;
use mlvf::store::spec::write_spec;
use std::path::Path;
use support::*;

fn add_task(
    root: &Path,
    stage: StageKind,
    config: serde_json::Value,
    deps: Vec<TaskKey>,
) -> TaskKey {
    let version = stage_version(stage);
    let key = task_key(stage, version, &config, &deps);
    let task = Task {
        key: key.clone(),
        stage,
        version,
        config,
        deps,
        cells: vec![0],
        axes: Default::default(),
        runtime: Default::default(),
    };
    write_spec(root, &task).unwrap();
    key
}

/// The eval config of the benchmark directory `bench`, with default settings.
fn eval_config(bench: &Path, control: Option<mlvf::eval::Control>) -> serde_json::Value {
    to_json(&mlvf::plan::config::EvalConfig {
        benchmark: mlvf::plan::config::BenchmarkSpec {
            path: Some(bench.display().to_string()),
            source: None,
            params: Default::default(),
        },
        settings: Default::default(),
        control,
    })
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pretrain_then_finetune_through_the_worker() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    let reg = StageRegistry::product();
    let mut pre_hp = hparams(1e-2, 4, 2, 2, Template::Plain);
    pre_hp.epochs = 2;
    let pre_key = add_task(
        root,
        StageKind::Pretrain,
        to_json(&PretrainConfig {
            // A manifest's `[i_m] placement = "post"`, as the planner passes it on.
            i_m: Some(CrossAttnConfig {
                placement: XAttnPlacement::Post,
                ..CrossAttnConfig::default()
            }),
            fusion: Fusion::InternalModular,
            layers: layers(Fusion::InternalModular, "idx:1-2-3"),
            encoder: model_spec("vision", "clip", &vision_dir()),
            llm: model_spec("llm", "llama", &llm_dir()),
            data: data_spec("pretrain.json"),
            hparams: pre_hp,
            seed: 3,
        }),
        vec![],
    );
    let out = run_task(root, &pre_key, None, &reg).unwrap();
    assert!(matches!(out, WorkerOutcome::Published(_)));
    let pre_dir = layout::task_dir(root, StageKind::Pretrain, &pre_key);
    let cfg = MllmConfig::read(&pre_dir).unwrap();
    assert_eq!(cfg.fusion.fusion, Fusion::InternalModular);
    assert_eq!(
        cfg.template,
        Some(Template::Plain),
        "the stage records its template"
    );
    assert_eq!(cfg.xattn.map(|x| x.placement), Some(XAttnPlacement::Post));
    let mlvf::layers::ResolvedLayers::Internal { injections, .. } = &cfg.fusion.layers else {
        panic!("I_M resolves to internal layers")
    };
    assert!(!injections.is_empty());
    assert!(cfg
        .xattn_layers()
        .iter()
        .all(|l| injections.iter().any(|i| i.llm == *l)));
    assert!(pre_dir.join(FUSION_WEIGHTS_FILE).is_file());
    assert!(
        !pre_dir.join(LLM_DIR).exists(),
        "pretraining never writes the frozen LLM"
    );
    let m = metrics(&pre_dir);
    let steps = m.iter().filter(|r| r["name"] == "loss").count();
    // 3 samples, batch 2 → 2 batches per epoch → 1 step per epoch (accumulation 2); 2 epochs,
    // capped at max_steps 4 → 2 steps.
    assert_eq!(steps, 2);
    assert!(m
        .iter()
        .any(|r| r["name"] == "train_loss" && r["step"].is_null()));
    for name in ["lr", "grad_norm", "tokens_per_s"] {
        assert!(m.iter().any(|r| r["name"] == name), "metric {name} missing");
    }

    let mut ft_hp = hparams(3e-3, 30, 2, 1, Template::VicunaV1);
    ft_hp.image_aspect = mlvf::manifest::ImageAspect::Pad;
    let ft_key = add_task(
        root,
        StageKind::Finetune,
        to_json(&FinetuneConfig {
            data: data_spec("finetune.json"),
            hparams: ft_hp,
            seed: 3,
        }),
        vec![pre_key.clone()],
    );
    run_task(root, &ft_key, None, &reg).unwrap();
    let ft_dir = layout::task_dir(root, StageKind::Finetune, &ft_key);
    assert!(ft_dir.join(LLM_DIR).join("model.safetensors").is_file());
    assert!(ft_dir.join(LLM_DIR).join("tokenizer.json").is_file());
    let ft_cfg = MllmConfig::read(&ft_dir).unwrap();
    // Eval asks in the template the finetune trained with, not in pretrain's `plain`.
    assert_eq!(ft_cfg.template, Some(Template::VicunaV1));
    assert_eq!(
        ft_cfg.xattn.map(|x| x.placement),
        Some(XAttnPlacement::Post),
        "the finetune keeps its pretrain's placement"
    );
    let loss: Vec<f64> = metrics(&ft_dir)
        .iter()
        .filter(|r| r["name"] == "loss")
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(loss.len(), 30);
    assert!(
        loss[29] < loss[0] * 0.5,
        "finetuning did not learn: {loss:?}"
    );
    // The checkpoints that led to a published result are removed.
    assert!(!layout::checkpoint_dir(root, &ft_key).exists());

    // `[finetune] freeze_llm = true`: the fusion weights train, the LLM is not republished
    // (eval reads the original one), and the option is part of the key.
    let mut frozen_hp = hparams(3e-3, 3, 2, 1, Template::VicunaV1);
    frozen_hp.freeze_llm = true;
    let frozen_cfg = to_json(&FinetuneConfig {
        data: data_spec("finetune.json"),
        hparams: frozen_hp,
        seed: 3,
    });
    assert_eq!(frozen_cfg["hparams"]["freeze_llm"], true);
    let frozen_key = add_task(root, StageKind::Finetune, frozen_cfg, vec![pre_key.clone()]);
    assert_ne!(frozen_key, ft_key);
    run_task(root, &frozen_key, None, &reg).unwrap();
    let frozen_dir = layout::task_dir(root, StageKind::Finetune, &frozen_key);
    assert!(
        !frozen_dir.join(LLM_DIR).exists(),
        "a frozen LLM is not written again"
    );
    assert_ne!(
        std::fs::read(frozen_dir.join(FUSION_WEIGHTS_FILE)).unwrap(),
        std::fs::read(pre_dir.join(FUSION_WEIGHTS_FILE)).unwrap(),
        "the fusion weights still train"
    );
    Mllm::load(&frozen_dir, &cpu()).expect("a frozen-LLM finetune loads for eval");

    // Eval's view: the finetuned model loads frozen and answers from the image.
    let model = Mllm::load(&ft_dir, &cpu()).unwrap();
    assert_eq!(model.config().stage, "finetune");
    assert_eq!(
        model.config().image_aspect,
        "pad",
        "eval preprocesses as finetuning did"
    );
    assert_eq!(cfg.image_aspect, "square");
    let base = Mllm::load(&pre_dir, &cpu()).unwrap();
    let a = model.llm().named_tensors();
    let b = base.llm().named_tensors();
    let changed = a.iter().zip(&b).any(|((_, x), (_, y))| {
        (x - y)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    });
    assert!(changed, "finetuning trains the LLM");
    // Through the evaluation engine's Generator, with its own prompt builder: the memorised
    // answer comes back for the image it was trained with.
    use mlvf::eval::{prompt::build_prompt, Generator};
    let mut model = model;
    assert_eq!(
        Generator::template(&model),
        mlvf::eval::TemplateKind::VicunaV1
    );
    let prompt = build_prompt(Generator::template(&model), "What color is the dot?", 1);
    let img = image::DynamicImage::ImageRgb8(image("000000003.png"));
    let answer = Generator::generate(&mut model, &[img], &prompt, 8).unwrap();
    assert_eq!(answer.trim(), "Green.", "prompt {prompt:?}");

    // The eval stage through the worker: a one-question benchmark in the public format, scored
    // by exact match (lmms-eval's normalisation drops the full stop), primary on its ×100 scale.
    let bench_dir = store.path().join("bench-dot");
    let manifest: mlvf::eval::BenchmarkManifest = serde_json::from_value(serde_json::json!({
        "format": "mmeval-jsonl/1", "task": "dot_color", "count": 0,
        "generation": {"max_new_tokens": 8}, "scorer": "exact_match_hf",
        "report": {"primary": "exact_match", "scale": 100}
    }))
    .unwrap();
    let mut w = mlvf::eval::BenchmarkWriter::new(&bench_dir, manifest).unwrap();
    let path = w
        .add_image(&image::DynamicImage::ImageRgb8(image("000000003.png")))
        .unwrap();
    w.push(&mlvf::eval::Sample::new(
        "dot".into(),
        vec![path],
        "What color is the dot?".into(),
        "green".into(),
    ))
    .unwrap();
    w.finish().unwrap();
    let eval_key = add_task(
        root,
        StageKind::Eval,
        eval_config(&bench_dir, None),
        vec![ft_key.clone()],
    );
    run_task(root, &eval_key, None, &reg).unwrap();
    let eval_dir = layout::task_dir(root, StageKind::Eval, &eval_key);
    for f in [
        "predictions.jsonl",
        "samples_dot_color.jsonl",
        "results.json",
        "metrics.json",
    ] {
        assert!(
            eval_dir.join(f).is_file(),
            "{f} missing from the eval output"
        );
    }
    let m = metrics(&eval_dir);
    let value = |n: &str| {
        m.iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("metric {n} missing: {m:?}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(value("exact_match"), 1.0);
    assert_eq!(value("primary_score"), 100.0);
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval_dir.join("DONE.json")).unwrap()).unwrap();
    assert_eq!(done["primary_metric"], "primary_score");
    // One question, one answer: the majority baseline is right too.
    assert_eq!(value("majority"), 100.0);

    // The same benchmark under the blank control, after the with-image eval it depends on: its
    // scores are namespaced, none is primary, and `mg` is the with-image score minus its own.
    let blank_key = add_task(
        root,
        StageKind::Eval,
        eval_config(&bench_dir, Some(mlvf::eval::Control::Blank)),
        vec![ft_key.clone(), eval_key.clone()],
    );
    run_task(root, &blank_key, None, &reg).unwrap();
    let blank_dir = layout::task_dir(root, StageKind::Eval, &blank_key);
    let m = metrics(&blank_dir);
    let value = |n: &str| {
        m.iter()
            .find(|r| r["name"] == n)
            .map(|r| r["value"].as_f64().unwrap())
    };
    let blank = value("blank/primary_score").expect("blank/primary_score");
    assert!(blank == 0.0 || blank == 100.0, "{m:?}");
    assert_eq!(value("mg"), Some(100.0 - blank));
    assert_eq!(value("primary_score"), None, "{m:?}");
    assert_eq!(value("exact_match"), None, "{m:?}");
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blank_dir.join("DONE.json")).unwrap()).unwrap();
    assert!(done["primary_metric"].is_null(), "{done}");
    let header = std::fs::read_to_string(blank_dir.join("predictions.jsonl")).unwrap();
    assert!(
        header
            .lines()
            .next()
            .unwrap()
            .contains("\"control\":\"blank\""),
        "{header}"
    );

    // A control without its with-image eval among the deps says so.
    let orphan = add_task(
        root,
        StageKind::Eval,
        eval_config(&bench_dir, Some(mlvf::eval::Control::None)),
        vec![ft_key.clone()],
    );
    let err = format!("{:#}", run_task(root, &orphan, None, &reg).unwrap_err());
    assert!(err.contains("needs its with-image eval"), "{err}");
}

#[test]
fn a_missing_pretrain_dependency_is_a_clear_error() {
    let store = tempfile::tempdir().unwrap();
    let key = add_task(
        store.path(),
        StageKind::Finetune,
        to_json(&FinetuneConfig {
            data: data_spec("finetune.json"),
            hparams: hparams(1e-3, 1, 1, 1, Template::VicunaV1),
            seed: 0,
        }),
        vec![],
    );
    let err = format!(
        "{:#}",
        run_task(store.path(), &key, None, &StageRegistry::product()).unwrap_err()
    );
    assert!(err.contains("needs its pretrain task"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A published `prepare` task directory in the prepare stage's layout: its `prepared.json`
/// marker naming the entry it built, and `files` copied under `sub`.
fn prepared(
    root: &Path,
    kind: &str,
    entry: serde_json::Value,
    files: &Path,
    sub: &str,
) -> mlvf::stages::DepDir {
    let marker = serde_json::json!({"format": "mlvf-prepared/1", "kind": kind, "entry": entry});
    let key = task_key(StageKind::Prepare, 1, &marker, &[]);
    let dir = root.join(&key.0);
    copy_dir(files, &dir.join(sub));
    std::fs::write(
        dir.join("prepared.json"),
        serde_json::to_vec(&marker).unwrap(),
    )
    .unwrap();
    mlvf::stages::DepDir {
        stage: StageKind::Prepare,
        key,
        dir,
    }
}

#[test]
fn synth_models_come_from_prepare_dependencies() {
    use mlvf::stages::{pretrain::PretrainStage, Stage, StageContext};
    let tmp = tempfile::tempdir().unwrap();
    let synth = |kind: &str, family: &str, what: &str| ModelSpec {
        source: format!("synth:{what}"),
        ..model_spec(kind, family, Path::new("/unused"))
    };
    let (enc, llm) = (
        synth("vision", "clip", "clip"),
        synth("llm", "llama", "llama"),
    );
    // Datasets of a synthetic world are covered by tests/prepare_world.rs; here the models
    // come from prepare dependencies and the data from files.
    let data = data_spec("pretrain.json");
    let deps = vec![
        prepared(tmp.path(), "model", to_json(&enc), &vision_dir(), "model"),
        prepared(tmp.path(), "model", to_json(&llm), &llm_dir(), "model"),
    ];
    let config = to_json(&PretrainConfig {
        i_m: None,
        fusion: Fusion::ExternalModular,
        layers: layers(Fusion::ExternalModular, "idx:1-2-3"),
        encoder: enc,
        llm,
        data,
        hparams: hparams(1e-3, 2, 3, 1, Template::Plain),
        seed: 0,
    });
    let task = Task {
        key: task_key(StageKind::Pretrain, 1, &config, &[]),
        stage: StageKind::Pretrain,
        version: 1,
        config,
        deps: deps.iter().map(|d| d.key.clone()).collect(),
        cells: vec![0],
        axes: Default::default(),
        runtime: Default::default(),
    };
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut ctx = StageContext::new(
        tmp.path().to_path_buf(),
        1,
        out.clone(),
        tmp.path().join("ckpt"),
        deps.clone(),
        Box::new(std::io::sink()),
    )
    .unwrap();
    PretrainStage.run(&task, &mut ctx).unwrap();
    let cfg = MllmConfig::read(&out).unwrap();
    assert_eq!(cfg.vision.dir, deps[0].dir.join("model"));
    assert_eq!(cfg.llm.dir, deps[1].dir.join("model"));
    assert_eq!(
        cfg.fusion.mmfuser.heads, 16,
        "the fixture tower's width 32 takes the paper's 16 heads"
    );

    // Without the prepare dependency the stage says what is missing.
    let mut ctx = StageContext::new(
        tmp.path().to_path_buf(),
        2,
        out.clone(),
        tmp.path().join("ckpt2"),
        vec![],
        Box::new(std::io::sink()),
    )
    .unwrap();
    let err = format!("{:#}", PretrainStage.run(&task, &mut ctx).unwrap_err());
    assert!(
        err.contains("prepared model") && err.contains("synth:clip"),
        "{err}"
    );
}

/// A dataset entry's `on_error = "skip"` reaches the loaders: a record whose image is missing
/// is left out and counted in `skipped_records`; under the default it fails naming the record.
#[test]
fn on_error_skip_trains_without_malformed_records_and_counts_them() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    let mut records: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("llava/pretrain.json")).unwrap(),
    )
    .unwrap();
    let mut bad = records[0].clone();
    bad["id"] = "broken".into();
    bad["image"] = "00000/missing.png".into();
    records.push(bad);
    let json = root.join("with-broken.json");
    std::fs::write(&json, serde_json::to_vec(&records).unwrap()).unwrap();
    let data = |on_error| DataSpec {
        json: Some(json.display().to_string()),
        on_error,
        ..data_spec("pretrain.json")
    };
    let config = |on_error| {
        to_json(&PretrainConfig {
            i_m: None,
            fusion: Fusion::ExternalDirect,
            layers: layers(Fusion::ExternalDirect, "idx:1-2-3"),
            encoder: model_spec("vision", "clip", &vision_dir()),
            llm: model_spec("llm", "llama", &llm_dir()),
            data: data(on_error),
            hparams: hparams(1e-3, 1, 2, 1, Template::Plain),
            seed: 0,
        })
    };
    let reg = StageRegistry::product();
    let fail = add_task(root, StageKind::Pretrain, config(None), vec![]);
    let err = format!("{:#}", run_task(root, &fail, None, &reg).unwrap_err());
    assert!(err.contains("missing.png"), "{err}");
    let skip = add_task(
        root,
        StageKind::Pretrain,
        config(Some(mlvf::data::OnError::Skip)),
        vec![],
    );
    run_task(root, &skip, None, &reg).unwrap();
    let m = metrics(&layout::task_dir(root, StageKind::Pretrain, &skip));
    let value = |n: &str| {
        m.iter()
            .find(|r| r["name"] == n && r["step"].is_null())
            .unwrap_or_else(|| panic!("metric {n} missing"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(value("skipped_records"), 1.0);
    assert_eq!(value("skipped_samples"), 0.0);
}

/// `[pretrain] mm_projector_lr` reaches the optimiser: at 0 the fusion weights do not move,
/// whatever `lr` is (two runs with different `lr` publish identical weights), and unset they do.
#[test]
fn mm_projector_lr_sets_the_fusion_learning_rate() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    let reg = StageRegistry::product();
    let run = |lr: f64, mm: Option<f64>| {
        let mut hp = hparams(lr, 2, 2, 1, Template::Plain);
        hp.mm_projector_lr = mm;
        let key = add_task(
            root,
            StageKind::Pretrain,
            to_json(&PretrainConfig {
                i_m: None,
                fusion: Fusion::ExternalDirect,
                layers: layers(Fusion::ExternalDirect, "idx:1-2-3"),
                encoder: model_spec("vision", "clip", &vision_dir()),
                llm: model_spec("llm", "llama", &llm_dir()),
                data: data_spec("pretrain.json"),
                hparams: hp,
                seed: 1,
            }),
            vec![],
        );
        run_task(root, &key, None, &reg).unwrap();
        std::fs::read(layout::task_dir(root, StageKind::Pretrain, &key).join(FUSION_WEIGHTS_FILE))
            .unwrap()
    };
    let frozen_a = run(1e-2, Some(0.0));
    let frozen_b = run(3e-2, Some(0.0));
    let trained = run(1e-2, None);
    assert_eq!(frozen_a, frozen_b, "lr does not reach the fusion weights");
    assert_ne!(frozen_a, trained, "without mm_projector_lr, lr trains them");
}
