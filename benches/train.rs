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
//!
//! `MLVF_BENCH_SLICE=1` runs instead the same steps on a MobileLLaMA-1.4B-shaped slice (see
//! [`slice`]): seconds per step on a CPU, so it has its own short timing loop (1 warm-up step,
//! then `MLVF_BENCH_SLICE_STEPS` timed steps, default 2) and per-paradigm peak RSS.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{Criterion, Throughput};
use mlvf::data::ImageAspect;
use mlvf::layers::{resolve, Fusion, LayerSet};
use mlvf::model::fusion::MmFuserConfig;
use mlvf::model::llm::{CrossAttnConfig, Llama, LlamaConfig};
use mlvf::model::mllm::{Mllm, MllmBatch, MllmSpec, ModelPointer};
use mlvf::model::vision::{VisionArch, VisionConfig, VisionTower};
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
    write_models_with(dir, &vision_config(), &llm_config());
}

/// Random-weight checkpoints of these shapes under `dir/vision` and `dir/llm` (with the fixture
/// tokenizer).
fn write_models_with(dir: &Path, vision: &VisionConfig, llm: &LlamaConfig) {
    let dev = Device::Cpu;
    let map = VarMap::new();
    VisionTower::new_trainable(vision, &map, DType::F32, &dev)
        .unwrap()
        .save(&dir.join("vision"))
        .unwrap();
    let map = VarMap::new();
    let tok =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm/tiny-tied/tokenizer.json");
    Llama::new(llm, VarBuilder::from_varmap(&map, DType::F32, &dev))
        .unwrap()
        .save(&dir.join("llm"), Some(&tok))
        .unwrap();
}

fn spec(dir: &Path, fusion: Fusion) -> MllmSpec {
    spec_for(dir, fusion, &vision_config(), &llm_config())
}

fn spec_for(dir: &Path, fusion: Fusion, vision: &VisionConfig, llm: &LlamaConfig) -> MllmSpec {
    let set = LayerSet::parse("3-18-23").unwrap();
    let set = (fusion != Fusion::Baseline).then_some(&set);
    let layers = resolve(fusion, set, vision.encoder_depth(), llm.num_hidden_layers).unwrap();
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

/// Matmul FLOPs of one LLM forward over `tokens` tokens in `batch` equal rows (attention counted
/// at full sequence length).
fn llm_forward_flops(c: &LlamaConfig, batch: usize, tokens: usize) -> f64 {
    let (h, f) = (c.hidden_size as f64, c.intermediate_size as f64);
    let per_token = 2.0 * (4.0 * h * h + 3.0 * h * f) + 4.0 * tokens as f64 / batch as f64 * h;
    per_token * tokens as f64 * c.num_hidden_layers as f64
        + 2.0 * tokens as f64 * h * c.vocab_size as f64
}

fn step_bench(cr: &mut Criterion, name: &str, model: &Mllm, map: &VarMap, backward_factor: f64) {
    let b = batch(model);
    let tokens = BATCH * (TEXT - 1 + model.config().image_tokens);
    let flops = (1.0 + backward_factor) * llm_forward_flops(model.llm().config(), BATCH, tokens);
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
    if std::env::var_os("MLVF_BENCH_SLICE").is_some_and(|v| v != "0" && !v.is_empty()) {
        slice::run();
        return;
    }
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
            model
                .save(&map, &pre, false, mlvf::data::TemplateKind::Plain)
                .unwrap();
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

/// The training step on a MobileLLaMA-1.4B-shaped slice (`MLVF_BENCH_SLICE=1`).
///
/// LLM: MobileLLaMA-1.4B's layer shape (hidden 2048, FFN 5632, 16 heads of 128, MHA) with
/// [`LLM_LAYERS`] decoder layers instead of 24 and a vocabulary of [`VOCAB`] instead of 32000 (the
/// full model does not fit this bench's CPU memory/time budget). Vision: CLIP ViT-L/14-336's width
/// and 576 patch tokens with a [`TOWER_LAYERS`]-layer tower, the shallowest on which the named set
/// `3-18-23` resolves without collisions (to hidden states 1, 3, 4; base 4), as the 24-layer tower's
/// 3, 18, 23 (base 23). The tower never runs: the step gets random features of the cached
/// features' shapes, as the loop does once features are cached. Internal fusion places the three
/// injections by the engine's rule ⌊k·L/24⌋ − 1 with L = 2, i.e. all into slice layer 0 (I_M: one
/// gated cross-attention sub-block there). Batch 1 × (576 visual + 64 text) tokens.
mod slice {
    use super::*;

    pub const LLM_LAYERS: usize = 2;
    pub const VOCAB: usize = 4096;
    pub const TOWER_LAYERS: usize = 5;
    /// Text ids per row (BOS + 63), besides the image placeholder.
    const TEXT: usize = 64;

    fn vision_config() -> VisionConfig {
        VisionConfig {
            num_hidden_layers: TOWER_LAYERS,
            ..VisionConfig::clip_vit_large_patch14_336()
        }
    }

    fn llm_config() -> LlamaConfig {
        let mut c = LlamaConfig::tiny(VOCAB);
        c.hidden_size = 2048;
        c.intermediate_size = 5632;
        c.num_hidden_layers = LLM_LAYERS;
        c.num_attention_heads = 16;
        c.num_key_value_heads = 16;
        c.head_dim = 128;
        c.rms_norm_eps = 1e-6;
        c.max_position_embeddings = 2048;
        c
    }

    fn batch(model: &Mllm) -> MllmBatch {
        let row: Vec<i64> = [1, -200]
            .into_iter()
            .chain((0..TEXT as i64 - 1).map(|i| 3 + (i * 37) % 4000))
            .collect();
        let mut labels = row.clone();
        labels[0] = -100;
        labels[1] = -100;
        let features = model
            .zero_features(1)
            .unwrap()
            .iter()
            .map(|t| t.randn_like(0.0, 1.0).unwrap())
            .collect();
        MllmBatch {
            ids: vec![row],
            labels: vec![labels],
            features,
            has_image: vec![true],
        }
    }

    /// Resets VmHWM to the current RSS (Linux ≥ 4.0); false where that is not allowed.
    fn reset_peak_rss() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    fn sgemm(steps: usize) -> f64 {
        let dev = Device::Cpu;
        let (m, k, n) = (640, 2048, 5632);
        let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (k, n), &dev).unwrap();
        std::hint::black_box(a.matmul(&w).unwrap());
        let v: Vec<Duration> = (0..steps.max(3))
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(a.matmul(&w).unwrap());
                start.elapsed()
            })
            .collect();
        2.0 * (m * k * n) as f64 / median(&v).as_secs_f64() / 1e9
    }

    struct Row {
        name: String,
        steps: Vec<Duration>,
        flops: f64,
        tokens: f64,
        peak_mib: Option<f64>,
    }

    fn steps(name: &str, model: &Mllm, map: &VarMap, backward_factor: f64, n: usize) -> Row {
        let b = batch(model);
        // BOS + 63 text ids + the visual tokens that replace the placeholder.
        let tokens = TEXT + model.config().image_tokens;
        let flops = (1.0 + backward_factor) * llm_forward_flops(model.llm().config(), 1, tokens);
        let mut opt = AdamW::new(
            param_groups(named_vars(map), 1e-4, 0.0),
            AdamWConfig::default(),
        )
        .unwrap();
        let vars = opt.vars();
        let mut step = || {
            let start = Instant::now();
            let out = model.forward(&b).unwrap();
            let mut grads = out.loss.backward().unwrap();
            clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
            opt.step(&grads, 1.0).unwrap();
            start.elapsed()
        };
        let warm = step();
        eprintln!("{name}: warm-up step {:.2} s", warm.as_secs_f64());
        let steps: Vec<Duration> = (0..n)
            .map(|i| {
                let d = step();
                eprintln!("{name}: step {} {:.2} s", i + 1, d.as_secs_f64());
                d
            })
            .collect();
        Row {
            name: name.into(),
            steps,
            flops,
            tokens: tokens as f64,
            peak_mib: peak_rss_mib(),
        }
    }

    pub fn run() {
        let n: usize = std::env::var("MLVF_BENCH_SLICE_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2)
            .max(1);
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        write_models_with(dir.path(), &vision_config(), &llm_config());
        eprintln!(
            "slice: models written in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let sgemm_before = sgemm(3);
        eprintln!("slice: sgemm 640x2048x5632 {sgemm_before:.1} GFLOP/s");
        let mut rows = vec![];
        let resettable = reset_peak_rss();
        for fusion in [
            Fusion::Baseline,
            Fusion::ExternalDirect,
            Fusion::ExternalModular,
            Fusion::InternalDirect,
            Fusion::InternalModular,
        ] {
            reset_peak_rss();
            let spec = spec_for(dir.path(), fusion, &vision_config(), &llm_config());
            let (model, map) = Mllm::pretrain(&spec, 0, &dev).unwrap();
            rows.push(steps(&format!("pretrain/{fusion}"), &model, &map, 1.0, n));
            if fusion == Fusion::Baseline {
                let pre = dir.path().join("pre");
                model
                    .save(&map, &pre, false, mlvf::data::TemplateKind::Plain)
                    .unwrap();
                drop((model, map));
                reset_peak_rss();
                let (ft, ft_map) = Mllm::finetune(&pre, false, &dev).unwrap();
                rows.push(steps("finetune/baseline", &ft, &ft_map, 2.0, n));
            }
        }
        let sgemm_after = sgemm(3);
        let sgemm = (sgemm_before + sgemm_after) / 2.0;
        println!(
            "\n== train bench, MobileLLaMA-1.4B-shaped slice (CPU f32, {} threads; LLM h2048 ffn5632 \
             16 heads, {LLM_LAYERS} of 24 layers, vocab {VOCAB}; CLIP-L/14-336-shaped features \
             1024 x 576 from a {TOWER_LAYERS}-layer tower; set 3-18-23; batch 1 x {} tokens; \
             1 warm-up + {n} timed steps) ==",
            candle_core::utils::get_num_threads(),
            TEXT + 576
        );
        println!(
            "sgemm 640x2048x5632: {sgemm_before:.1} GFLOP/s before, {sgemm_after:.1} after \
             (shares below use the mean, {sgemm:.1})"
        );
        for r in &rows {
            let m = r.steps.iter().sum::<Duration>().as_secs_f64() / r.steps.len() as f64;
            let min = r.steps.iter().min().unwrap().as_secs_f64();
            let gf = r.flops / m / 1e9;
            let peak = match (resettable, r.peak_mib) {
                (true, Some(p)) => format!(", peak RSS {p:.0} MiB"),
                (false, Some(p)) => format!(", peak RSS so far {p:.0} MiB"),
                _ => String::new(),
            };
            println!(
                "{}: {:.0} ms/step (min {:.0}), {:.0} tokens/s, {:.1} GFLOP/step, {gf:.2} GFLOP/s \
                 ({:.0}% of sgemm){peak}",
                r.name,
                m * 1e3,
                min * 1e3,
                r.tokens / m,
                r.flops / 1e9,
                100.0 * gf / sgemm
            );
        }
    }
}
