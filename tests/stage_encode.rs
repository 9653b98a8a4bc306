//! The `encode` stage through the worker on the fixture tower and data: what it publishes, that
//! pretrain and finetune reading it train to the same weights as running the tower, and the
//! errors a user meets (budget, corrupt output, an image the output lacks).

#[path = "mllm_support.rs"]
mod support;

use candle_core::Tensor;
use mlvf::data::encoded::{EncodedManifest, ENCODED_FILE};
use mlvf::exec::worker::run_task;
use mlvf::layers::Fusion;
use mlvf::manifest::stages::Template;
use mlvf::manifest::ImageAspect;
use mlvf::model::mllm::FUSION_WEIGHTS_FILE;
use mlvf::plan::config::{to_json, DataSpec, EncodeConfig, FinetuneConfig, PretrainConfig};
use mlvf::plan::keys::{stage_version, task_key};
use mlvf::plan::{StageKind, Task, TaskKey};
use mlvf::stages::{pretrain::PretrainStage, DepDir, Stage, StageContext, StageRegistry};
use mlvf::store::layout;
use mlvf::store::spec::write_spec;
use std::collections::BTreeMap;
use std::path::Path;
use support::*;

fn task(stage: StageKind, config: serde_json::Value, deps: Vec<TaskKey>) -> Task {
    let version = stage_version(stage);
    Task {
        key: task_key(stage, version, &config, &deps),
        stage,
        version,
        config,
        deps,
        cells: vec![0],
        axes: Default::default(),
        runtime: Default::default(),
    }
}

fn add(root: &Path, t: &Task) -> TaskKey {
    write_spec(root, t).unwrap();
    t.key.clone()
}

fn encode_task(json: &str, aspect: ImageAspect) -> Task {
    task(
        StageKind::Encode,
        to_json(&EncodeConfig {
            encoder: model_spec("vision", "clip", &vision_dir()),
            data: data_spec(json),
            image_aspect: aspect,
        }),
        vec![],
    )
}

fn pretrain_config() -> serde_json::Value {
    let mut hp = hparams(1e-2, 3, 2, 1, Template::Plain);
    hp.epochs = 3;
    to_json(&PretrainConfig {
        i_m: None,
        fusion: Fusion::ExternalModular,
        layers: layers(Fusion::ExternalModular, "idx:1-2-3"),
        encoder: model_spec("vision", "clip", &vision_dir()),
        llm: model_spec("llm", "llama", &llm_dir()),
        data: data_spec("pretrain.json"),
        hparams: hp,
        seed: 5,
    })
}

fn finetune_config() -> serde_json::Value {
    let mut hp = hparams(3e-3, 3, 2, 1, Template::VicunaV1);
    hp.image_aspect = ImageAspect::Pad;
    to_json(&FinetuneConfig {
        data: data_spec("finetune.json"),
        hparams: hp,
        seed: 5,
    })
}

fn weights(path: &Path) -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(path, &cpu())
        .unwrap()
        .into_iter()
        .collect()
}

/// Largest absolute difference over every tensor of two weight files (same names required).
fn max_diff(a: &Path, b: &Path) -> f32 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .map(|(n, x)| {
            (x - &b[n])
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0.0, f32::max)
}

fn losses(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["name"] == "loss")
        .map(|r| r["value"].as_f64().unwrap())
        .collect()
}

#[test]
fn training_on_encoded_features_matches_running_the_tower() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    let reg = StageRegistry::product();

    // Encode the pretraining data (square) and the finetuning data (pad).
    let enc_pt = add(root, &encode_task("pretrain.json", ImageAspect::Square));
    let enc_ft = add(root, &encode_task("finetune.json", ImageAspect::Pad));
    run_task(root, &enc_pt, None, &reg).unwrap();
    run_task(root, &enc_ft, None, &reg).unwrap();
    let enc_dir = layout::task_dir(root, StageKind::Encode, &enc_pt);
    let m: EncodedManifest =
        serde_json::from_slice(&std::fs::read(enc_dir.join(ENCODED_FILE)).unwrap()).unwrap();
    // The fixture tower: 4 layers → 5 hidden states, 32 wide; 3 distinct images.
    assert_eq!((m.hidden_states, m.width, m.images), (5, 32, 3));
    assert_eq!(m.image_aspect, "square");
    assert_eq!(m.bytes, 3 * 5 * m.tokens as u64 * 32 * 4);
    for s in &m.shards {
        assert!(enc_dir.join(s).is_file(), "{s} missing");
    }

    // The same pretrain, with and without the encode dependency.
    let plain = add(root, &task(StageKind::Pretrain, pretrain_config(), vec![]));
    let encoded = add(
        root,
        &task(StageKind::Pretrain, pretrain_config(), vec![enc_pt.clone()]),
    );
    run_task(root, &plain, None, &reg).unwrap();
    run_task(root, &encoded, None, &reg).unwrap();
    let (pa, pb) = (
        layout::task_dir(root, StageKind::Pretrain, &plain),
        layout::task_dir(root, StageKind::Pretrain, &encoded),
    );
    assert_eq!(losses(&pa).len(), 3);
    assert_eq!(losses(&pa), losses(&pb), "same losses step by step");
    let d = max_diff(&pa.join(FUSION_WEIGHTS_FILE), &pb.join(FUSION_WEIGHTS_FILE));
    assert_eq!(d, 0.0, "pretrained fusion weights differ by {d}");

    // Finetune each, the encoded one reading the pad-preprocessed finetuning images.
    let ft_plain = add(
        root,
        &task(StageKind::Finetune, finetune_config(), vec![plain.clone()]),
    );
    let ft_enc = add(
        root,
        &task(
            StageKind::Finetune,
            finetune_config(),
            vec![encoded.clone(), enc_ft.clone()],
        ),
    );
    run_task(root, &ft_plain, None, &reg).unwrap();
    run_task(root, &ft_enc, None, &reg).unwrap();
    let (fa, fb) = (
        layout::task_dir(root, StageKind::Finetune, &ft_plain),
        layout::task_dir(root, StageKind::Finetune, &ft_enc),
    );
    assert_eq!(losses(&fa), losses(&fb));
    assert_eq!(
        max_diff(&fa.join(FUSION_WEIGHTS_FILE), &fb.join(FUSION_WEIGHTS_FILE)),
        0.0
    );
    let llm = |d: &Path| d.join("llm/model.safetensors");
    assert_eq!(max_diff(&llm(&fa), &llm(&fb)), 0.0);

    // A finetune whose encode dependency holds the other preprocessing is refused.
    let wrong = add(
        root,
        &task(
            StageKind::Finetune,
            finetune_config(),
            vec![encoded.clone(), enc_pt.clone()],
        ),
    );
    let err = format!("{:#}", run_task(root, &wrong, None, &reg).unwrap_err());
    assert!(err.contains("holds `square` images"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs the pretrain stage directly with `encode_dir` as its encode dependency.
fn pretrain_with(tmp: &Path, encode_dir: &Path, n: u32) -> String {
    let t = task(
        StageKind::Pretrain,
        pretrain_config(),
        vec![TaskKey("e".repeat(64))],
    );
    let out = tmp.join(format!("out{n}"));
    std::fs::create_dir_all(&out).unwrap();
    let mut ctx = StageContext::new(
        tmp.to_path_buf(),
        1,
        out,
        tmp.join(format!("ckpt{n}")),
        vec![DepDir {
            stage: StageKind::Encode,
            key: TaskKey("e".repeat(64)),
            dir: encode_dir.to_path_buf(),
        }],
        Box::new(std::io::sink()),
    )
    .unwrap();
    format!("{:#}", PretrainStage.run(&t, &mut ctx).unwrap_err())
}

#[test]
fn budget_and_broken_outputs_are_clear_errors() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    let reg = StageRegistry::product();

    // Over budget: refused before the tower runs, naming the size and the knob.
    let mut t = encode_task("pretrain.json", ImageAspect::Square);
    t.runtime
        .insert("budget_gb".into(), serde_json::json!(1e-6));
    let key = add(root, &t);
    let err = format!("{:#}", run_task(root, &key, None, &reg).unwrap_err());
    assert!(
        err.contains("over [encode] budget_gb = 0.000001") && err.contains("GB"),
        "{err}"
    );
    // Raising the budget in the manifest rewrites the spec's runtime options (same key) and
    // the next attempt runs.
    t.runtime.insert("budget_gb".into(), serde_json::json!(1.0));
    write_spec(root, &t).unwrap();
    run_task(root, &key, None, &reg).unwrap();
    let good = layout::task_dir(root, StageKind::Encode, &key);

    // A missing shard names the output and the file.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("enc-missing");
    copy_dir(&good, &broken);
    std::fs::remove_file(broken.join("features-00000.safetensors")).unwrap();
    let err = pretrain_with(tmp.path(), &broken, 1);
    assert!(
        err.contains(&broken.display().to_string()) && err.contains("features-00000.safetensors"),
        "{err}"
    );

    // A truncated shard, and a missing manifest, likewise.
    let broken = tmp.path().join("enc-truncated");
    copy_dir(&good, &broken);
    let shard = broken.join("features-00000.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let err = pretrain_with(tmp.path(), &broken, 2);
    assert!(
        err.contains("is unusable") && err.contains("features-00000"),
        "{err}"
    );
    let broken = tmp.path().join("enc-nomanifest");
    copy_dir(&good, &broken);
    std::fs::remove_file(broken.join(ENCODED_FILE)).unwrap();
    let err = pretrain_with(tmp.path(), &broken, 3);
    assert!(
        err.contains(&broken.join(ENCODED_FILE).display().to_string()),
        "{err}"
    );

    // An output made for a dataset without one of the training images names that image.
    let partial = tmp.path().join("enc-partial");
    copy_dir(&good, &partial);
    let index = partial.join("index.json");
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replace("00000/000000002.png", "00000/elsewhere.png");
    std::fs::write(&index, text).unwrap();
    let err = pretrain_with(tmp.path(), &partial, 4);
    assert!(
        err.contains("000000002.png") && err.contains("is not in the encode output"),
        "{err}"
    );
}

/// The saving, measured (not asserted): N pretrain cells that share one (encoder, dataset), each
/// running the tower itself vs. one encode task + N cells reading it. A 12-layer, 256-wide CLIP
/// tower on 112-px images (64 patches), 48 images, the fixture LLM, 1 epoch of 12 steps per cell.
/// Figures in BENCHMARKS.md. Run:
///   cargo test --test stage_encode -- --ignored --nocapture encode_saving
#[test]
#[ignore]
fn encode_saving() {
    use mlvf::layers::{resolve, EncoderDepth, LayerSet};
    use mlvf::model::vision::{VisionArch, VisionConfig, VisionTower};
    use std::time::Instant;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let vdir = tmp.path().join("vision");
    let vcfg = VisionConfig {
        hidden_size: 256,
        intermediate_size: 1024,
        num_hidden_layers: 12,
        num_attention_heads: 8,
        image_size: 112,
        patch_size: 14,
        ..VisionConfig::hf_defaults(VisionArch::Clip)
    };
    let map = candle_nn::VarMap::new();
    VisionTower::new_trainable(&vcfg, &map, candle_core::DType::F32, &cpu())
        .unwrap()
        .save(&vdir)
        .unwrap();
    // 48 images and captions.
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    let colors = ["red", "green", "blue", "white"];
    let mut records = Vec::new();
    for i in 0..48u32 {
        let img = image::RgbImage::from_fn(128, 112, |x, y| {
            image::Rgb([(x * 2 + i) as u8, (y * 2) as u8, (i * 5) as u8])
        });
        img.save(data.join(format!("images/{i}.png"))).unwrap();
        records.push(serde_json::json!({
            "id": i.to_string(), "image": format!("{i}.png"),
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe."},
                {"from": "gpt", "value": format!("a {} square number {i}", colors[i as usize % 4])}
            ]
        }));
    }
    std::fs::write(
        data.join("data.json"),
        serde_json::to_vec(&records).unwrap(),
    )
    .unwrap();
    let data_spec = DataSpec {
        format: Some("llava-json".into()),
        json: Some(data.join("data.json").display().to_string()),
        images: Some(data.join("images").display().to_string()),
        source: None,
        params: Default::default(),
        on_error: None,
    };
    let mut enc_spec = model_spec("vision", "clip", &vdir);
    enc_spec.depth = Some(12);
    let depth = EncoderDepth {
        layers: 12,
        drop_last: false,
    };
    let cells = [
        (Fusion::ExternalDirect, "3-18-23"),
        (Fusion::ExternalDirect, "former"),
        (Fusion::ExternalModular, "3-18-23"),
        (Fusion::InternalDirect, "3-18-23"),
    ];
    let config = |(fusion, set): (Fusion, &str)| {
        let mut hp = hparams(1e-3, 1000, 4, 1, Template::Plain);
        hp.epochs = 1;
        hp.max_steps = None;
        to_json(&PretrainConfig {
            i_m: None,
            fusion,
            layers: resolve(
                fusion,
                Some(&LayerSet::parse(set).unwrap()),
                depth,
                LLM_LAYERS,
            )
            .unwrap(),
            encoder: enc_spec.clone(),
            llm: model_spec("llm", "llama", &llm_dir()),
            data: data_spec.clone(),
            hparams: hp,
            seed: 0,
        })
    };
    let reg = StageRegistry::product();
    let timed = |key: &TaskKey| {
        let t = Instant::now();
        run_task(&root, key, None, &reg).unwrap();
        t.elapsed().as_secs_f64()
    };
    let mut plain = Vec::new();
    for c in cells {
        let key = add(&root, &task(StageKind::Pretrain, config(c), vec![]));
        plain.push(timed(&key));
    }
    let enc = add(
        &root,
        &task(
            StageKind::Encode,
            to_json(&EncodeConfig {
                encoder: enc_spec.clone(),
                data: data_spec.clone(),
                image_aspect: ImageAspect::Square,
            }),
            vec![],
        ),
    );
    let encode = timed(&enc);
    let mut encoded = Vec::new();
    for c in cells {
        let key = add(
            &root,
            &task(StageKind::Pretrain, config(c), vec![enc.clone()]),
        );
        encoded.push(timed(&key));
    }
    let (p, e): (f64, f64) = (plain.iter().sum(), encoded.iter().sum());
    eprintln!(
        "encode_saving: {} cells; without [encode]: {:.2} s ({:?}); with: encode {:.2} s + cells \
         {:.2} s ({:?}) = {:.2} s; saving {:.0} %",
        cells.len(),
        p,
        plain
            .iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        encode,
        e,
        encoded
            .iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        encode + e,
        100.0 * (1.0 - (encode + e) / p)
    );
}
