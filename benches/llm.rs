//! LLM throughput: forward+backward GFLOP/s against a measured sgemm GFLOP/s in the same run,
//! and greedy decoding time per token at position 512 vs 32 (the KV cache keeps it flat).
//!
//! Run (short; the dev profile has candle and gemm at opt-level 3):
//!   cargo bench --profile dev --bench llm
//! `LLM_BENCH_QUICK=1` skips the MobileLLaMA-shaped stack.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use criterion::{Criterion, Throughput};
use mlvf::model::llm::{ForwardOptions, KvCache, Llama, LlamaConfig};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per benchmark: (FLOPs per iteration or 0, per-iteration times).
static TIMES: Mutex<BTreeMap<String, (f64, Vec<Duration>)>> = Mutex::new(BTreeMap::new());

fn record(name: &str, flops: f64, per_iter: Duration) {
    TIMES
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_insert((flops, Vec::new()))
        .1
        .push(per_iter);
}

fn config(hidden: usize, ffn: usize, heads: usize, layers: usize, vocab: usize) -> LlamaConfig {
    let mut c = LlamaConfig::tiny(vocab);
    c.hidden_size = hidden;
    c.intermediate_size = ffn;
    c.num_attention_heads = heads;
    c.num_key_value_heads = heads;
    c.head_dim = hidden / heads;
    c.num_hidden_layers = layers;
    c.max_position_embeddings = 4096;
    c
}

/// Matmul FLOPs of one forward over `t` positions attending to `s` keys (attention counted in full).
fn forward_flops(c: &LlamaConfig, b: usize, t: usize, s: usize) -> f64 {
    let (h, f, kv) = (
        c.hidden_size as f64,
        c.intermediate_size as f64,
        (c.num_key_value_heads * c.head_dim) as f64,
    );
    let per_token = 2.0 * (2.0 * h * h + 2.0 * h * kv + 3.0 * h * f) + 4.0 * s as f64 * h;
    let per_layer = per_token * (b * t) as f64;
    per_layer * c.num_hidden_layers as f64 + 2.0 * (b * t) as f64 * h * c.vocab_size as f64
}

fn token_ids(n: usize, vocab: usize) -> Tensor {
    let v: Vec<u32> = (0..n).map(|i| ((i * 31 + 7) % vocab) as u32).collect();
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn train_step_bench(cr: &mut Criterion, name: &str, cfg: &LlamaConfig, b: usize, t: usize) {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let model = Llama::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let ids = token_ids(b * t, cfg.vocab_size).reshape((b, t)).unwrap();
    // Every weight is trainable, so backward does twice the forward's matmul work.
    let flops = 3.0 * forward_flops(cfg, b, t, t);
    let mut g = cr.benchmark_group("llm_train_step");
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let logits = model
                    .forward_embeds(
                        &model.embed(&ids).unwrap(),
                        &ForwardOptions::default(),
                        None,
                    )
                    .unwrap();
                let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
                let loss = lp.mean_all().unwrap().neg().unwrap();
                let grads = loss.backward().unwrap();
                std::hint::black_box(grads);
            }
            let el = start.elapsed();
            record(&format!("train/{name}"), flops, el / iters as u32);
            el
        })
    });
    g.finish();
}

fn sgemm_bench(cr: &mut Criterion) -> f64 {
    let dev = Device::Cpu;
    let (m, k, n) = (256, 2048, 5632);
    let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
    let w = Tensor::randn(0f32, 1.0, (k, n), &dev).unwrap();
    let flops = 2.0 * (m * k * n) as f64;
    let mut g = cr.benchmark_group("sgemm");
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function("256x2048x5632", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(a.matmul(&w).unwrap());
            }
            let el = start.elapsed();
            record("sgemm", flops, el / iters as u32);
            el
        })
    });
    g.finish();
    flops
}

fn decode_bench(cr: &mut Criterion, cfg: &LlamaConfig) {
    let dev = Device::Cpu;
    // Inference weights are plain tensors (no graph tracking), as when loaded from safetensors.
    let vm = VarMap::new();
    let init = Llama::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let weights = init
        .named_tensors()
        .into_iter()
        .map(|(k, v)| (k, v.detach()))
        .collect();
    let model = Llama::new(cfg, VarBuilder::from_tensors(weights, DType::F32, &dev)).unwrap();
    const STEPS: usize = 8;
    let tok = Tensor::new(&[[7u32]], &dev).unwrap();
    let prefilled: Vec<(usize, KvCache)> = [32usize, 512]
        .into_iter()
        .map(|pos| {
            let mut cache = model.new_cache();
            let prompt = token_ids(pos, cfg.vocab_size).unsqueeze(0).unwrap();
            model.forward_ids(&prompt, Some(&mut cache)).unwrap();
            (pos, cache)
        })
        .collect();
    // Mean time per token of STEPS decode steps from a prefilled cache.
    let per_token = |cache: &KvCache| {
        let mut cache = cache.clone();
        let start = Instant::now();
        for _ in 0..STEPS {
            std::hint::black_box(model.forward_ids(&tok, Some(&mut cache)).unwrap());
        }
        start.elapsed() / STEPS as u32
    };
    let mut g = cr.benchmark_group("llm_decode_per_token");
    for (pos, cache) in &prefilled {
        g.bench_function(format!("pos{pos}"), |bench| {
            bench.iter_custom(|iters| (0..iters).map(|_| per_token(cache)).sum())
        });
    }
    g.finish();
    // The ratio from interleaved runs, so a shared machine's load drifts hit both positions alike.
    for _ in 0..15 {
        for (pos, cache) in &prefilled {
            record(&format!("decode/pos{pos}"), 0.0, per_token(cache));
        }
    }
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut cr = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let quick = std::env::var("LLM_BENCH_QUICK").is_ok();
    sgemm_bench(&mut cr);
    train_step_bench(
        &mut cr,
        "tiny_h64_l2_b4_t64",
        &config(64, 128, 4, 2, 300),
        4,
        64,
    );
    if !quick {
        // MobileLLaMA-1.4B's layer shape; a small vocabulary so the layers, not lm_head, dominate.
        train_step_bench(
            &mut cr,
            "mobilellama_h2048_l1_t256",
            &config(2048, 5632, 16, 1, 1024),
            1,
            256,
        );
    }
    decode_bench(&mut cr, &config(1024, 2816, 16, 4, 1024));
    cr.final_summary();

    let times = TIMES.lock().unwrap();
    let sgemm = times
        .get("sgemm")
        .map(|(f, v)| f / median(v).as_secs_f64() / 1e9);
    println!(
        "\n== llm bench summary (CPU f32, {} rayon threads) ==",
        candle_core::utils::get_num_threads()
    );
    if let Some(s) = sgemm {
        println!("sgemm 256x2048x5632: {s:.1} GFLOP/s");
    }
    for (name, (flops, v)) in times.iter().filter(|(n, _)| n.starts_with("train/")) {
        let m = median(v);
        let gf = flops / m.as_secs_f64() / 1e9;
        let frac = sgemm
            .map(|s| format!(" = {:.0}% of sgemm", 100.0 * gf / s))
            .unwrap_or_default();
        println!(
            "{name}: {:.1} ms/step, {gf:.1} GFLOP/s{frac}",
            m.as_secs_f64() * 1e3
        );
    }
    if let (Some((_, a)), Some((_, b))) = (times.get("decode/pos32"), times.get("decode/pos512")) {
        let (a, b) = (median(a), median(b));
        println!(
            "decode per token (h1024 l4, interleaved medians): pos 32 {:.2} ms, pos 512 {:.2} ms, ratio {:.2}x (goal <= 1.5x)",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
}
