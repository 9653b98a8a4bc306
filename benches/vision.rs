//! Vision-tower forward throughput, as achieved GFLOP/s next to a measured sgemm in the same run.
//!
//! criterion's `thrpt` is in elements/s with one element = one FLOP, so `Gelem/s` reads as
//! GFLOP/s. Run it short, in the dev profile (candle and gemm are optimised there; a release
//! build of the dependency tree takes ~20 min on 2 cores):
//!
//!     cargo bench --profile dev --bench vision
//!
//! Groups: `sgemm` (1024³ candle matmul, the machine's ceiling), `tiny` (CLIP and SigLIP at a
//! test-sized config), `tiny_train` (forward + backward of the tiny CLIP), `clip_l_layer` (one ViT-L/14-336-shaped layer: width 1024, 577 tokens,
//! MLP 4096, batch 1) with the differentiable and the fused kernels.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mlvf::model::vision::{Kernels, VisionArch, VisionConfig, VisionTower};
use std::hint::black_box;
use std::time::Duration;

fn tower(cfg: &VisionConfig) -> VisionTower {
    VisionTower::new_trainable(cfg, &VarMap::new(), DType::F32, &Device::Cpu).unwrap()
}

fn pixels(cfg: &VisionConfig, batch: usize) -> Tensor {
    Tensor::randn(
        0f32,
        1.0,
        (batch, cfg.num_channels, cfg.image_size, cfg.image_size),
        &Device::Cpu,
    )
    .unwrap()
}

fn sgemm(c: &mut Criterion) {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).unwrap();
    let mut g = c.benchmark_group("sgemm");
    g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
    g.bench_function("1024x1024x1024", |bch| {
        bch.iter(|| black_box(a.matmul(&b).unwrap()))
    });
    g.finish();
}

fn tiny(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiny");
    for arch in [VisionArch::Clip, VisionArch::Siglip] {
        let cfg = VisionConfig {
            hidden_size: 64,
            intermediate_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            image_size: 32,
            patch_size: 4,
            ..VisionConfig::hf_defaults(arch)
        };
        let (t, px) = (tower(&cfg), pixels(&cfg, 8));
        g.throughput(Throughput::Elements(
            8 * cfg.forward_flops(cfg.num_hidden_layers),
        ));
        g.bench_function(format!("{arch:?}_d64_l4_t{}_b8", cfg.num_tokens()), |bch| {
            bch.iter(|| black_box(t.forward_hidden_states(&px).unwrap()))
        });
    }
    g.finish();
}

/// Forward + backward of a tiny trainable tower (what the offline world's tower training runs);
/// throughput counts the forward FLOPs only.
fn tiny_train(c: &mut Criterion) {
    let cfg = VisionConfig {
        hidden_size: 64,
        intermediate_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        image_size: 32,
        patch_size: 4,
        ..VisionConfig::hf_defaults(VisionArch::Clip)
    };
    let map = VarMap::new();
    let t = VisionTower::new_trainable(&cfg, &map, DType::F32, &Device::Cpu).unwrap();
    let px = pixels(&cfg, 8);
    let mut g = c.benchmark_group("tiny_train");
    g.throughput(Throughput::Elements(
        8 * cfg.forward_flops(cfg.num_hidden_layers),
    ));
    g.bench_function("Clip_d64_l4_b8_fwd_bwd", |bch| {
        bch.iter(|| {
            let hs = t.forward_hidden_states(&px).unwrap();
            black_box(
                hs.last()
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .mean_all()
                    .unwrap()
                    .backward()
                    .unwrap(),
            )
        })
    });
    g.finish();
}

fn clip_l_layer(c: &mut Criterion) {
    let cfg = VisionConfig {
        num_hidden_layers: 1,
        ..VisionConfig::clip_vit_large_patch14_336()
    };
    let mut t = tower(&cfg);
    let px = pixels(&cfg, 1);
    let mut g = c.benchmark_group("clip_l_layer");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(cfg.forward_flops(1)));
    for kernels in [Kernels::Differentiable, Kernels::Fused] {
        t.set_kernels(kernels);
        g.bench_function(format!("{kernels:?}_t577_d1024"), |bch| {
            bch.iter(|| black_box(t.forward_hidden_states(&px).unwrap()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = sgemm, tiny, tiny_train, clip_l_layer
}
criterion_main!(benches);
