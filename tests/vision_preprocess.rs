//! Image preprocessing parity with the HF image processors (PIL backend) on a real photograph
//! (tests/fixtures/vision/chelsea.png); expected tensors from tests/fixtures/make_vision_fixtures.py.

use candle_core::{Device, Tensor};
use mlvf::model::preprocess::{load_rgb, ImageAspect, ImageProcessor};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision")
}

/// Runs every case of `dir/preprocess_cases.json`; returns (name, max |Δ|) per case.
fn run_cases(dir: &Path) -> Vec<(String, f32)> {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("preprocess_cases.json")).unwrap())
            .unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("preprocess_expected.safetensors"), &Device::Cpu)
            .unwrap();
    let img = load_rgb(&fixtures().join(cases["image"].as_str().unwrap())).unwrap();
    let mut out = Vec::new();
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let proc = ImageProcessor::from_hf_json(&case["preprocessor_config"]).unwrap();
        let aspect = ImageAspect::parse(case["aspect"].as_str().unwrap()).unwrap();
        let got = proc.preprocess(&img, aspect, &Device::Cpu).unwrap();
        let want: &Tensor = &expected[name];
        assert_eq!(got.dims(), want.dims(), "{name}");
        let d = (&got - want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        let d = d.to_scalar::<f32>().unwrap();
        eprintln!("{name}: {:?} max |Δ| = {d:.3e}", got.dims());
        out.push((name.to_string(), d));
    }
    out
}

#[test]
fn small_processors_match_hf_on_a_photograph() {
    let results = run_cases(&fixtures());
    assert!(results.len() >= 5);
    for (name, d) in results {
        // Same 8-bit pixels as Pillow; what is left is float rounding in the normalisation.
        assert!(d <= 1e-5, "{name}: max |Δ| = {d}");
    }
}

/// Full-size CLIP-336 / SigLIP-384 outputs: `make_vision_fixtures.py --full DIR`, then
/// `MLVF_PREPROCESS_FULL=DIR cargo test --test vision_preprocess -- --ignored --nocapture`.
#[test]
#[ignore]
fn full_size_processors_match() {
    let dir = std::env::var("MLVF_PREPROCESS_FULL")
        .expect("set MLVF_PREPROCESS_FULL to the --full directory");
    for (name, d) in run_cases(Path::new(&dir)) {
        assert!(d <= 1e-5, "{name}: max |Δ| = {d}");
    }
    // For the record: the `image` crate's Catmull-Rom (no antialiasing, float) on the same input.
    let expected = candle_core::safetensors::load(
        Path::new(&dir).join("preprocess_expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let img = load_rgb(&fixtures().join("chelsea.png")).unwrap();
    let naive = image::imageops::resize(&img, 384, 384, image::imageops::FilterType::CatmullRom);
    let mut proc = ImageProcessor::siglip(384);
    proc.resize = None;
    let got = proc
        .preprocess(&naive, ImageAspect::Square, &Device::Cpu)
        .unwrap();
    let d = (&got - &expected["siglip384_square"])
        .unwrap()
        .abs()
        .unwrap();
    let max = d
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let mean = d.mean_all().unwrap().to_scalar::<f32>().unwrap();
    eprintln!("image-crate CatmullRom instead of Pillow bicubic (siglip384): max |Δ| = {max:.3e}, mean {mean:.3e}");
}

#[test]
fn model_dir_processor_config_is_read() {
    let dir = fixtures().join("clip_vision");
    let cfg = mlvf::model::vision::VisionConfig::from_file(&dir.join("config.json")).unwrap();
    let proc = ImageProcessor::for_model_dir(&dir, &cfg).unwrap();
    assert_eq!(proc, ImageProcessor::clip(30));
    let img = load_rgb(&fixtures().join("chelsea.png")).unwrap();
    let batch = proc
        .preprocess_batch(&[img.clone(), img], ImageAspect::Pad, &Device::Cpu)
        .unwrap();
    assert_eq!(batch.dims(), &[2, 3, 30, 30]);
}
