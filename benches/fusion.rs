//! Fusion-module throughput on CPU: forward (inference/eval) and forward+backward (training)
//! for E_D and E_M at a small width on the CLIP 24×24 grid, and E_M at CLIP-L × MobileLLaMA-1.4B
//! widths (dv 1024, d 2048). Run: `cargo bench --bench fusion` (release build; slow to compile).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use criterion::{criterion_group, criterion_main, Criterion};
use mlvf::layers::{resolve, EncoderDepth, Fusion, LayerSet};
use mlvf::model::fusion::{FusionConfig, FusionModel, VisualFusion};

const CLIP: EncoderDepth = EncoderDepth {
    layers: 24,
    drop_last: false,
};

fn setup(
    f: Fusion,
    set: &str,
    dv: usize,
    d: usize,
    b: usize,
) -> (VarMap, FusionModel, Vec<Tensor>) {
    let layers = resolve(f, Some(&LayerSet::parse(set).unwrap()), CLIP, 24).unwrap();
    let cfg = FusionConfig::new(f, layers, dv, d);
    let map = VarMap::new();
    let model = FusionModel::init(cfg, &map, 0, DType::F32, &Device::Cpu).unwrap();
    // Non-zero gates so the E_M backward pass does the full work.
    for (name, var) in map.data().lock().unwrap().iter() {
        if name.contains("gamma") {
            var.set(&var.as_tensor().ones_like().unwrap()).unwrap();
        }
    }
    let hs = (0..=24)
        .map(|_| Tensor::randn(0f32, 1.0, (b, 576, dv), &Device::Cpu).unwrap())
        .collect();
    (map, model, hs)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fusion");
    g.sample_size(10);
    for (f, set, dv, d, b) in [
        (Fusion::ExternalDirect, "3-18-23", 64, 128, 2),
        (Fusion::ExternalModular, "3-18-23", 64, 128, 2),
        (Fusion::ExternalModular, "former", 64, 128, 2),
        (Fusion::ExternalModular, "3-18-23", 1024, 2048, 1),
    ] {
        let (_map, model, hs) = setup(f, set, dv, d, b);
        let id = format!("{f}_{set}_dv{dv}_b{b}");
        g.bench_function(format!("{id}/forward"), |bench| {
            bench.iter(|| model.forward(&hs).unwrap())
        });
        g.bench_function(format!("{id}/forward_backward"), |bench| {
            bench.iter(|| {
                let out = model.forward(&hs).unwrap();
                out.input_tokens
                    .sqr()
                    .unwrap()
                    .mean_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
