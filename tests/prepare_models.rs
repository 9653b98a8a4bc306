//! Tiny foundation models trained by prepare tasks: they load through the normal loaders, are
//! deterministic, and resume from checkpoints to the same weights.

mod prepare_common;
use candle_core::{DType, Device, Tensor};
use mlvf::model::hub::ModelFiles;
use mlvf::model::llm::Llama;
use mlvf::model::preprocess::{ImageAspect, ImageProcessor};
use mlvf::model::vision::{VisionArch, VisionTower};
use mlvf::plan::config::ModelSpec;
use mlvf::plan::StageKind;
use mlvf::stages::prepare::model_dir;
use mlvf::synth::foundation::{lm, vision, TrainHooks};
use mlvf::synth::{self, Scale, SynthConfig};
use prepare_common::*;
use std::path::Path;

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn model_tasks_publish_hf_dirs_that_the_normal_loaders_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), TINY);
    let root = dir.path().join("store");
    let published = run_prepares(&root, &p);
    let pre = p
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Pretrain)
        .unwrap();
    let deps = deps_of(pre, &published);
    let cfg: mlvf::plan::config::PretrainConfig =
        serde_json::from_value(pre.config.clone()).unwrap();

    // Vision: VisionTower::from_dir + the published preprocessor, like a real checkpoint.
    let vdir = model_dir(&cfg.encoder, &deps).unwrap();
    let tower = VisionTower::from_dir(&vdir, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(tower.config().arch, VisionArch::Clip);
    assert_eq!(tower.num_layers(), 2);
    assert_eq!(tower.config().hidden_size, 16);
    let proc = ImageProcessor::for_model_dir(&vdir, tower.config()).unwrap();
    assert_eq!(
        proc,
        ImageProcessor::clip(64),
        "preprocessor_config.json round-trips"
    );
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([200, 30, 30]));
    let px = proc
        .preprocess_batch(&[img], ImageAspect::Square, &Device::Cpu)
        .unwrap();
    let hs = tower.forward_hidden_states(&px).unwrap();
    assert_eq!(hs.len(), 3);
    assert_eq!(hs[2].dims(), &[1, 65, 16], "64 patches + class token");

    // LLM: ModelFiles + Llama::load, tokenizer with LLaMA's specials and a BOS.
    let ldir = model_dir(&cfg.llm, &deps).unwrap();
    let files = ModelFiles::from_dir(&ldir).unwrap();
    let llm = Llama::load(&files, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(llm.config().num_hidden_layers, 2);
    assert_eq!(llm.config().num_key_value_heads, 2);
    assert_eq!(llm.config().bos_token_id, Some(1));
    assert_eq!(llm.config().eos_token_ids, vec![2]);
    let tok =
        mlvf::data::tokenize::TextTokenizer::from_file(files.tokenizer.as_ref().unwrap()).unwrap();
    assert_eq!(tok.bos_id(), Some(1));
    let inner = tok.inner();
    for (s, id) in [("<unk>", 0), ("<s>", 1), ("</s>", 2), ("<pad>", 3)] {
        assert_eq!(inner.token_to_id(s), Some(id));
    }
    // vicuna_v1 text, `</s>` as one token, digits and OCR letters all encode without <unk>.
    let text = "A chat between a curious user and an artificial intelligence assistant. USER: What does the sign say? ASSISTANT: QZXW 4071</s>";
    let enc = inner.encode(text, false).unwrap();
    assert!(!enc.get_ids().contains(&0), "no <unk>");
    assert!(enc.get_ids().ends_with(&[2]), "</s> is the EOS token");
    assert_eq!(
        inner.decode(&enc.get_ids()[..enc.len() - 1], true).unwrap(),
        text.trim_end_matches("</s>")
    );
    let ids = Tensor::new(&enc.get_ids()[..8], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = llm.forward_ids(&ids, None).unwrap();
    assert_eq!(logits.dims(), &[1, 8, llm.config().vocab_size]);

    // The world's instructions go through the project's LLaVA loader, the vicuna_v1 template
    // and label masking with this tokenizer; answers end in a supervised `</s>`.
    let ft = p
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Finetune)
        .unwrap();
    let ftc: mlvf::plan::config::FinetuneConfig =
        serde_json::from_value(ft.config.clone()).unwrap();
    let (json, images) =
        mlvf::stages::prepare::dataset_files(&ftc.data, &deps_of(ft, &published)).unwrap();
    let data = mlvf::data::load_llava_json(&json, &images, &Default::default()).unwrap();
    let template = mlvf::data::TemplateKind::parse("vicuna_v1")
        .unwrap()
        .template();
    let budget = mlvf::data::TokenBudget::llava(tower.config().num_tokens());
    let rec = data.records.iter().find(|r| r.image.is_some()).unwrap();
    let t = mlvf::data::tokenize_conversation(&tok, &template, &rec.turns, true, &budget).unwrap();
    assert_eq!(t.images(), 1);
    assert!(t.supervised() > 0);
    assert!(
        t.labels.contains(&2),
        "the answer's </s> is a supervised EOS token"
    );

    // Reports and metrics were published.
    for key in [&cfg.encoder, &cfg.llm].map(|s| s.source.clone()) {
        let t = prepares(&p)
            .into_iter()
            .find(|t| t.config["entry"]["source"] == key)
            .unwrap();
        let out = &published[&t.key.0];
        let marker: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("prepared.json")).unwrap())
                .unwrap();
        assert_eq!(marker["kind"], "model");
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.matches("\"name\":\"loss\"").count(), 4, "{metrics}");
    }

    // A spec that no dep prepared is refused.
    let mut other: ModelSpec = cfg.encoder.clone();
    other.depth = Some(3);
    assert!(model_dir(&other, &deps)
        .unwrap_err()
        .to_string()
        .contains("re-plan"));
}

fn world(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("world");
    let cfg = SynthConfig {
        n_pretrain: 64,
        n_finetune: 48,
        n_per_benchmark: 24,
        ..SynthConfig::for_scale(Scale::Test)
    };
    synth::generate(&cfg, &out).unwrap();
    out
}

fn vparams() -> vision::VisionParams {
    vision::VisionParams {
        width: 16,
        heads: 2,
        steps: 6,
        batch: 8,
        holdout: 16,
        checkpoint_every: 2,
        warmup_steps: 1,
        ..Default::default()
    }
}

fn lparams() -> lm::LmParams {
    lm::LmParams {
        hidden: 32,
        heads: 4,
        kv_heads: 2,
        intermediate: 64,
        vocab_size: 300,
        seq_len: 32,
        steps: 6,
        batch: 4,
        checkpoint_every: 2,
        warmup_steps: 1,
        ..Default::default()
    }
}

/// Trains into `out` with checkpoints in `ckpt`, stopping after `stop` steps if given.
fn train_v(
    arch: VisionArch,
    w: &Path,
    out: &Path,
    ckpt: &Path,
    stop: Option<u64>,
) -> Option<vision::VisionReport> {
    let mut losses = Vec::new();
    let mut metric = |n: &str, s: Option<u64>, v: f64| {
        if n == "loss" {
            losses.push((s, v));
        }
        Ok(())
    };
    let mut hooks = TrainHooks {
        checkpoint_dir: ckpt,
        metric: &mut metric,
        stop_after: stop,
    };
    vision::train_vision(arch, 2, &vparams(), w, out, &mut hooks).unwrap()
}

fn train_l(w: &Path, out: &Path, ckpt: &Path, stop: Option<u64>) -> Option<lm::LmReport> {
    let mut metric = |_: &str, _: Option<u64>, _: f64| Ok(());
    let mut hooks = TrainHooks {
        checkpoint_dir: ckpt,
        metric: &mut metric,
        stop_after: stop,
    };
    lm::train_lm(2, &lparams(), w, out, &mut hooks).unwrap()
}

#[test]
fn vision_training_is_deterministic_and_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path());
    for arch in [VisionArch::Clip, VisionArch::Siglip] {
        let name = format!("{arch:?}");
        let d = dir.path().join(&name);
        let a = train_v(arch, &w, &d.join("a"), &d.join("ca"), None).unwrap();
        train_v(arch, &w, &d.join("b"), &d.join("cb"), None).unwrap();
        let wa = bytes(&d.join("a/model.safetensors"));
        assert_eq!(
            wa,
            bytes(&d.join("b/model.safetensors")),
            "{name}: same config → same weights"
        );
        assert!(a.retrieval_top1 >= 0.0 && a.retrieval_chance > 0.0 && a.final_loss.is_finite());

        // Interrupted after 3 steps (checkpoint at 3), then resumed: identical final weights.
        assert!(train_v(arch, &w, &d.join("c"), &d.join("cc"), Some(3)).is_none());
        assert!(
            !d.join("c/model.safetensors").exists(),
            "nothing published when stopped"
        );
        train_v(arch, &w, &d.join("c"), &d.join("cc"), None).unwrap();
        assert_eq!(
            wa,
            bytes(&d.join("c/model.safetensors")),
            "{name}: resume = uninterrupted"
        );

        // A different seed gives different weights (the test can fail).
        let mut metric = |_: &str, _: Option<u64>, _: f64| Ok(());
        let mut hooks = TrainHooks {
            checkpoint_dir: &d.join("cd"),
            metric: &mut metric,
            stop_after: None,
        };
        let p = vision::VisionParams {
            seed: 7,
            ..vparams()
        };
        vision::train_vision(arch, 2, &p, &w, &d.join("d"), &mut hooks).unwrap();
        assert_ne!(wa, bytes(&d.join("d/model.safetensors")));
    }
    let siglip =
        VisionTower::from_dir(&dir.path().join("Siglip/a"), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(siglip.config().arch, VisionArch::Siglip);
    assert_eq!(siglip.config().num_tokens(), 64, "no class token");
}

#[test]
fn lm_training_is_deterministic_and_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path());
    let d = dir.path();
    let a = train_l(&w, &d.join("a"), &d.join("ca"), None).unwrap();
    train_l(&w, &d.join("b"), &d.join("cb"), None).unwrap();
    let wa = bytes(&d.join("a/model.safetensors"));
    assert_eq!(wa, bytes(&d.join("b/model.safetensors")));
    assert_eq!(
        bytes(&d.join("a/tokenizer.json")),
        bytes(&d.join("b/tokenizer.json"))
    );
    assert!(a.perplexity.is_finite() && a.unigram_perplexity > 1.0);
    assert!(train_l(&w, &d.join("c"), &d.join("cc"), Some(3)).is_none());
    train_l(&w, &d.join("c"), &d.join("cc"), None).unwrap();
    assert_eq!(
        wa,
        bytes(&d.join("c/model.safetensors")),
        "resume = uninterrupted"
    );
}

#[test]
fn mlvf_run_publishes_the_prepare_tasks_and_a_rerun_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.toml");
    std::fs::write(&m, TINY).unwrap();
    let run = || {
        let out = assert_cmd::Command::cargo_bin("mlvf")
            .unwrap()
            .args(["run", m.to_str().unwrap(), "--no-progress"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };
    // Whatever happens downstream, the three prepare tasks run first and are published.
    let cached = |text: &str| -> usize {
        let re = regex::Regex::new(r"(\d+) cached").unwrap();
        re.captures(text).map_or(0, |c| c[1].parse().unwrap())
    };
    let first = run();
    assert_eq!(cached(&first), 0, "{first}");
    let tasks = dir.path().join("store/tasks/prepare");
    let published: Vec<_> = std::fs::read_dir(&tasks).unwrap().collect();
    assert_eq!(published.len(), 3);
    for e in published {
        assert!(e.unwrap().path().join("DONE.json").is_file());
    }
    let second = run();
    assert!(
        cached(&second) >= 3,
        "the prepare tasks are reused: {second}"
    );
}
