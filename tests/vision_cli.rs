//! `mlvf inspect vision` end to end: photograph → the model's HF processor → tower → safetensors,
//! compared with transformers on the same photograph (fixtures from make_vision_fixtures.py).

use assert_cmd::Command;
use candle_core::Device;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision")
}

fn inspect(model: &str, aspect: &str, out: &Path) {
    Command::cargo_bin("mlvf")
        .unwrap()
        .args(["inspect", "vision", "--model"])
        .arg(fixtures().join(model))
        .arg("--image")
        .arg(fixtures().join("chelsea.png"))
        .arg("--out")
        .arg(out)
        .args(["--aspect", aspect])
        .assert()
        .success()
        .stdout(predicates::str::contains("hidden states"));
}

fn check(model: &str, aspect: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sub/hs.safetensors");
    inspect(model, aspect, &out);
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let want = candle_core::safetensors::load(
        fixtures()
            .join(model)
            .join(format!("expected_chelsea_{aspect}.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(got.len(), want.len(), "{model}: number of hidden states");
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(g.dims(), w.dims(), "{model} {name}");
        let d = (g - w)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d <= 1e-4, "{model} {aspect} {name}: max |Δ| = {d}");
    }
}

#[test]
fn clip_square_and_pad_match_transformers() {
    check("clip_vision", "square");
    check("clip_vision", "pad");
}

#[test]
fn siglip_square_and_pad_match_transformers() {
    check("siglip_full", "square");
    check("siglip_vision", "pad");
}

#[test]
fn upto_and_bf16_options() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hs.safetensors");
    Command::cargo_bin("mlvf")
        .unwrap()
        .args([
            "inspect", "vision", "--upto", "2", "--dtype", "bf16", "--model",
        ])
        .arg(fixtures().join("clip_vision"))
        .arg("--image")
        .arg(fixtures().join("chelsea.png"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let mut names: Vec<&String> = got.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["hidden_states.0", "hidden_states.1", "hidden_states.2"]
    );
    assert_eq!(got["hidden_states.2"].dtype(), candle_core::DType::F32);
}

#[test]
fn bad_model_dir_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    Command::cargo_bin("mlvf")
        .unwrap()
        .args(["inspect", "vision", "--model"])
        .arg(tmp.path())
        .arg("--image")
        .arg(fixtures().join("chelsea.png"))
        .arg("--out")
        .arg(tmp.path().join("x.safetensors"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("config.json"));
    assert!(!tmp.path().join("x.safetensors").exists());
}
