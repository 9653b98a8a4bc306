//! Parity of mlvf's vision towers with transformers: tiny random-weight CLIP and SigLIP
//! checkpoints saved by transformers (tests/fixtures/make_vision_fixtures.py), their input pixels
//! and every hidden state transformers computed. Max |Δ| must stay ≤ 1e-4 in f32.

use candle_core::{DType, Device, Tensor};
use mlvf::model::vision::{Kernels, VisionArch, VisionTower};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vision")
        .join(name)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Loads `dir`, runs the fixture pixels and returns the worst |Δ| over all hidden states.
fn check_dir(name: &str, kernels: Kernels) -> f32 {
    let dir = fixture(name);
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let mut tower = VisionTower::from_dir(&dir, &Device::Cpu, DType::F32).unwrap();
    tower.set_kernels(kernels);
    let hs = tower
        .forward_hidden_states(&expected["pixel_values"])
        .unwrap();
    assert_eq!(hs.len(), tower.num_layers() + 1);
    assert_eq!(
        hs.len(),
        expected
            .keys()
            .filter(|k| k.starts_with("hidden_states."))
            .count()
    );
    let mut worst = 0f32;
    for (i, h) in hs.iter().enumerate() {
        let d = max_abs_diff(h, &expected[&format!("hidden_states.{i}")]);
        assert!(d <= 1e-4, "{name}: hidden_states.{i} differs by {d}");
        worst = worst.max(d);
    }
    let pooled = tower.post_layernorm(hs.last().unwrap()).unwrap();
    let d = max_abs_diff(&pooled, &expected["post_layernorm"]);
    assert!(d <= 1e-4, "{name}: post_layernorm output differs by {d}");
    eprintln!(
        "{name} ({kernels:?}): max |Δ| over {} hidden states = {worst:.3e}",
        hs.len()
    );
    worst
}

#[test]
fn clip_vision_model_matches_transformers() {
    check_dir("clip_vision", Kernels::Differentiable);
    check_dir("clip_vision", Kernels::Fused);
}

#[test]
fn siglip_vision_model_matches_transformers_with_patch_remainder() {
    // image 32, patch 6: the strided conv ignores the last 2 pixel rows/columns.
    check_dir("siglip_vision", Kernels::Differentiable);
    check_dir("siglip_vision", Kernels::Fused);
}

#[test]
fn full_clip_and_siglip_models_load_their_vision_tower() {
    check_dir("clip_full", Kernels::Fused);
    check_dir("siglip_full", Kernels::Fused);
    let t = VisionTower::from_dir(&fixture("siglip_full"), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(t.config().arch, VisionArch::Siglip);
}

#[test]
fn stopping_early_gives_the_same_leading_states() {
    let dir = fixture("clip_vision");
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let tower = VisionTower::from_dir(&dir, &Device::Cpu, DType::F32).unwrap();
    let hs = tower
        .forward_hidden_states_upto(&expected["pixel_values"], 2)
        .unwrap();
    assert_eq!(hs.len(), 3);
    assert!(max_abs_diff(&hs[2], &expected["hidden_states.2"]) <= 1e-4);
    // Loading only the layers a caller needs gives the same states.
    let short = VisionTower::from_dir_with_layers(&dir, &Device::Cpu, DType::F32, Some(2)).unwrap();
    assert_eq!(short.num_layers(), 2);
    assert_eq!(
        short.config().num_hidden_layers,
        4,
        "config() describes the checkpoint"
    );
    let hs2 = short
        .forward_hidden_states(&expected["pixel_values"])
        .unwrap();
    assert_eq!(max_abs_diff(&hs2[2], &hs[2]), 0.0);
    // Saved, it is the 2-layer tower it computes.
    let out = tempfile::tempdir().unwrap();
    short.save(out.path()).unwrap();
    let back = VisionTower::from_dir(out.path(), &Device::Cpu, DType::F32).unwrap();
    assert_eq!((back.num_layers(), back.config().num_hidden_layers), (2, 2));
}

#[test]
fn save_round_trips_through_the_loader() {
    for name in ["clip_vision", "siglip_full"] {
        let dir = fixture(name);
        let tower = VisionTower::from_dir(&dir, &Device::Cpu, DType::F32).unwrap();
        let out = tempfile::tempdir().unwrap();
        tower.save(out.path()).unwrap();
        let back = VisionTower::from_dir(out.path(), &Device::Cpu, DType::F32).unwrap();
        assert_eq!(back.config(), tower.config());
        let expected =
            candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let a = tower
            .forward_hidden_states(&expected["pixel_values"])
            .unwrap();
        let b = back
            .forward_hidden_states(&expected["pixel_values"])
            .unwrap();
        assert_eq!(max_abs_diff(a.last().unwrap(), b.last().unwrap()), 0.0);
        let names: Vec<String> =
            candle_core::safetensors::load(out.path().join("model.safetensors"), &Device::Cpu)
                .unwrap()
                .into_keys()
                .collect();
        assert!(
            names.iter().all(|n| n.starts_with("vision_model.")),
            "{names:?}"
        );
    }
}

#[test]
fn half_precision_loads_and_stays_close() {
    let dir = fixture("siglip_vision");
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let tower = VisionTower::from_dir(&dir, &Device::Cpu, DType::BF16).unwrap();
    // f32 pixels (what preprocessing gives) are taken in the tower's dtype.
    let hs = tower
        .forward_hidden_states(&expected["pixel_values"])
        .unwrap();
    assert_eq!(hs[0].dtype(), DType::BF16);
    let last = hs.last().unwrap().to_dtype(DType::F32).unwrap();
    let want = &expected["hidden_states.4"];
    let scale = want
        .abs()
        .unwrap()
        .max_keepdim(2)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let d = max_abs_diff(&last, want);
    assert!(
        d / scale < 0.1,
        "bf16 drifted {d} against a typical magnitude {scale}"
    );
}

/// Towers built here load in transformers: `MLVF_VISION_EXPORT=DIR cargo test --test vision_parity
/// -- --ignored`, then `python3 tests/fixtures/make_vision_fixtures.py --check-export DIR`.
#[test]
#[ignore]
fn export_trainable_towers_for_transformers() {
    let root = PathBuf::from(std::env::var("MLVF_VISION_EXPORT").expect("set MLVF_VISION_EXPORT"));
    for arch in [VisionArch::Clip, VisionArch::Siglip] {
        let cfg = mlvf::model::vision::VisionConfig {
            hidden_size: 24,
            intermediate_size: 40,
            num_hidden_layers: 3,
            num_attention_heads: 3,
            image_size: 20,
            patch_size: 5,
            ..mlvf::model::vision::VisionConfig::hf_defaults(arch)
        };
        let map = candle_nn::VarMap::new();
        let tower = VisionTower::new_trainable(&cfg, &map, DType::F32, &Device::Cpu).unwrap();
        let dir = root.join(cfg.arch.vision_model_type());
        tower.save(&dir).unwrap();
        let px = Tensor::randn(0f32, 1.0, (2, 3, 20, 20), &Device::Cpu).unwrap();
        let hs = tower.forward_hidden_states(&px).unwrap();
        let mut out: std::collections::HashMap<String, Tensor> = hs
            .into_iter()
            .enumerate()
            .map(|(i, h)| (format!("hidden_states.{i}"), h))
            .collect();
        out.insert("pixel_values".into(), px);
        candle_core::safetensors::save(&out, dir.join("expected.safetensors")).unwrap();
    }
}
