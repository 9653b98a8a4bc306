//! Training-step throughput of the multimodal model for each paradigm on a small config, as
//! tokens/s and achieved GFLOP/s next to a measured sgemm in the same run; peak memory (VmHWM).
//!
//! A step here is what the loop does per micro-batch once tower features are cached: fusion
//! forward, LLM forward with the paradigm's hooks, masked LM loss, backward, clipping and AdamW.
//! FLOPs count the LLM's matmuls only (forward; backward = 1× forward for input gradients with a
//! frozen LLM, 2× with a trainable one); fusion FLOPs are not counted, so modular paradigms look
//! slightly less efficient than they are.
//!
//! Run (short; the dev profile has candle and gemm at opt-level 3):
//!   cargo bench --profile dev --bench train

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{Criterion, Throughput};
use mlvf::layers::{resolve, Fusion, LayerSet};
use mlvf::model::fusion::MmFuserConfig;
use mlvf::model::llm::{CrossAttnConfig, Llama, LlamaConfig};
use mlvf::model::mllm::{Mllm, MllmBatch, MllmSpec, ModelPointer};
use mlvf::model::vision::{VisionArch, VisionConfig, VisionTower};
use mlvf::train::data::ImageAspect;
use mlvf::train::grad::clip_grad_norm;
use mlvf::train::optim::{named_vars, param_groups, AdamW, AdamWConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per benchmark: (FLOPs per step, tokens per step, per-step times).
type Timings = BTreeMap<String, (f64, f64, Vec<Duration>)>;
static TIMES: Mutex<Timings> = Mutex::new(BTreeMap::new());

const BATCH: usize = 4;
const TEXT: usize = 64;

fn record(name: &str, flops: f64, tokens: f64, d: Duration) {
    TIMES
        .lock()
        .unwrap()
        .entry(name.into())
        .or_insert((flops, tokens, vec![]))
        .2
        .push(d);
}

fn vision_config() -> VisionConfig {
    VisionConfig {
        hidden_size: 128,
        intermediate_size: 512,
        num_hidden_layers: 6,
        num_attention_heads: 4,
        image_size: 56,
        patch_size: 7,
        ..VisionConfig::hf_defaults(VisionArch::Clip)
    }
}

fn llm_config() -> LlamaConfig {
    let mut c = LlamaConfig::tiny(512);
    c.hidden_size = 256;
    c.intermediate_size = 688;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 8;
    c.head_dim = 32;
    c
}

fn write_models(dir: &Path) {
    let dev = Device::Cpu;
    let map = VarMap::new();
    VisionTower::new_trainable(&vision_config(), &map, DType::F32, &dev)
        .unwrap()
        .save(&dir.join("vision"))
        .unwrap();
    let map = VarMap::new();
    let tok =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm/tiny-tied/tokenizer.json");
    Llama::new(
        &llm_config(),
        VarBuilder::from_varmap(&map, DType::F32, &dev),
    )
    .unwrap()
    .save(&dir.join("llm"), Some(&tok))
    .unwrap();
}

fn spec(dir: &Path, fusion: Fusion) -> MllmSpec {
    let set = LayerSet::parse("3-18-23").unwrap();
    let set = (fusion != Fusion::Baseline).then_some(&set);
    let layers = resolve(fusion, set, vision_config().encoder_depth(), 4).unwrap();
    let ptr = |p: &str| ModelPointer {
        source: dir.join(p).display().to_string(),
        dir: dir.join(p),
    };
    MllmSpec {
        fusion,
        layers,
        vision: ptr("vision"),
        llm: ptr("llm"),
        vision_depth: None,
        drop_last_layer: None,
        llm_layers: None,
        mmfuser: MmFuserConfig::default(),
        xattn: CrossAttnConfig::default(),
        image_aspect: ImageAspect::Square,
    }
}

fn batch(model: &Mllm) -> MllmBatch {
    let px = Tensor::randn(0f32, 1.0, (BATCH, 3, 56, 56), &Device::Cpu).unwrap();
    let row: Vec<i64> = std::iter::once(1)
        .chain(std::iter::once(-200))
        .chain((0..TEXT as i64 - 2).map(|i| 3 + (i * 37) % 500))
        .collect();
    let mut labels = row.clone();
    labels[0] = -100;
    labels[1] = -100;
    MllmBatch {
        ids: vec![row; BATCH],
        labels: vec![labels; BATCH],
        features: model.image_features(&px).unwrap(),
        has_image: vec![true; BATCH],
    }
}

fn llm_forward_flops(c: &LlamaConfig, tokens: usize) -> f64 {
    let (h, f) = (c.hidden_size as f64, c.intermediate_size as f64);
    let per_token = 2.0 * (4.0 * h * h + 3.0 * h * f) + 4.0 * tokens as f64 / BATCH as f64 * h;
    per_token * tokens as f64 * c.num_hidden_layers as f64
        + 2.0 * tokens as f64 * h * c.vocab_size as f64
}

fn step_bench(cr: &mut Criterion, name: &str, model: &Mllm, map: &VarMap, backward_factor: f64) {
    let b = batch(model);
    let tokens = BATCH * (TEXT - 1 + model.config().image_tokens);
    let flops = (1.0 + backward_factor) * llm_forward_flops(model.llm().config(), tokens);
    let mut opt = AdamW::new(
        param_groups(named_vars(map), 1e-4, 0.0),
        AdamWConfig::default(),
    )
    .unwrap();
    let vars = opt.vars();
    let mut g = cr.benchmark_group("train_step");
    g.throughput(Throughput::Elements(tokens as u64));
    g.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let out = model.forward(&b).unwrap();
                let mut grads = out.loss.backward().unwrap();
                clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
                opt.step(&grads, 1.0).unwrap();
            }
            let el = start.elapsed();
            record(name, flops, tokens as f64, el / iters as u32);
            el
        })
    });
    g.finish();
}

fn sgemm_bench(cr: &mut Criterion) {
    let dev = Device::Cpu;
    let (m, k, n) = (256, 256, 688);
    let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
    let w = Tensor::randn(0f32, 1.0, (k, n), &dev).unwrap();
    let flops = 2.0 * (m * k * n) as f64;
    cr.bench_function("sgemm_256x256x688", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(a.matmul(&w).unwrap());
            }
            let el = start.elapsed();
            record("sgemm", flops, 0.0, el / iters as u32);
            el
        })
    });
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let mut cr = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let dir = tempfile::tempdir().unwrap();
    write_models(dir.path());
    sgemm_bench(&mut cr);
    for fusion in [
        Fusion::Baseline,
        Fusion::ExternalDirect,
        Fusion::ExternalModular,
        Fusion::InternalDirect,
        Fusion::InternalModular,
    ] {
        let (model, map) = Mllm::pretrain(&spec(dir.path(), fusion), 0, &Device::Cpu).unwrap();
        step_bench(&mut cr, &format!("pretrain/{fusion}"), &model, &map, 1.0);
        if fusion == Fusion::Baseline {
            let pre = dir.path().join("pre");
            model.save(&map, &pre, false).unwrap();
            let (ft, ft_map) = Mllm::finetune(&pre, false, &Device::Cpu).unwrap();
            step_bench(&mut cr, "finetune/baseline", &ft, &ft_map, 2.0);
        }
    }
    cr.final_summary();
    let times = TIMES.lock().unwrap();
    let sgemm = times
        .get("sgemm")
        .map(|(f, _, v)| f / median(v).as_secs_f64() / 1e9);
    println!(
        "\n== train bench (CPU f32, {} threads; tower h128 l6 64 patches, LLM h256 l4 ffn688 vocab512, batch {BATCH} x {} tokens) ==",
        candle_core::utils::get_num_threads(),
        TEXT - 1 + 64
    );
    if let Some(s) = sgemm {
        println!("sgemm 256x256x688: {s:.1} GFLOP/s");
    }
    for (name, (flops, tokens, v)) in times.iter().filter(|(n, _)| n.contains('/')) {
        let m = median(v).as_secs_f64();
        let gf = flops / m / 1e9;
        let frac = sgemm
            .map(|s| format!(" ({:.0}% of sgemm)", 100.0 * gf / s))
            .unwrap_or_default();
        println!(
            "{name}: {:.1} ms/step, {:.0} tokens/s, {gf:.2} GFLOP/s{frac}",
            m * 1e3,
            tokens / m
        );
    }
    if let Some(p) = peak_rss_mib() {
        println!("peak RSS (VmHWM): {p:.0} MiB");
    }
}
