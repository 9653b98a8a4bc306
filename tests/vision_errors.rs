//! A broken checkpoint fails with a message that names the file, the tensor and the shapes.

use candle_core::{DType, Device, Tensor};
use mlvf::model::vision::VisionTower;
use std::collections::HashMap;
use std::path::Path;

fn copy_fixture(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vision")
        .join(name);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn load_weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn error_of(dir: &Path) -> String {
    format!(
        "{:#}",
        VisionTower::from_dir(dir, &Device::Cpu, DType::F32).unwrap_err()
    )
}

#[test]
fn missing_tensor_names_file_and_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("clip_vision", tmp.path());
    let mut w = load_weights(tmp.path());
    w.remove("encoder.layers.3.mlp.fc2.weight").unwrap();
    candle_core::safetensors::save(&w, tmp.path().join("model.safetensors")).unwrap();
    let err = error_of(tmp.path());
    assert!(
        err.contains("encoder.layers.3.mlp.fc2.weight") && err.contains("model.safetensors"),
        "{err}"
    );
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("siglip_vision", tmp.path());
    let mut w = load_weights(tmp.path());
    w.insert(
        "encoder.layers.0.mlp.fc1.weight".into(),
        Tensor::zeros((36, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&w, tmp.path().join("model.safetensors")).unwrap();
    let err = error_of(tmp.path());
    assert!(err.contains("encoder.layers.0.mlp.fc1.weight"), "{err}");
    assert!(
        err.contains("[36, 32]") && err.contains("[37, 32]"),
        "{err}"
    );
}

#[test]
fn missing_weights_and_bad_config_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("clip_vision", tmp.path());
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    let err = error_of(tmp.path());
    assert!(err.contains("no safetensors weights"), "{err}");

    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let err = error_of(tmp.path());
    assert!(
        err.contains("config.json") && err.contains("llama"),
        "{err}"
    );
}
