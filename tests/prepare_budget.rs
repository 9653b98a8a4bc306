//! The quickstart's foundation models at full size: time budget and quality bars. Slow (minutes
//! on 2 cores), so ignored by default:
//! `cargo test --release --test prepare_budget -- --ignored --nocapture --test-threads 1`.
//!
//! To measure other settings without editing the manifest, `MLVF_PARAMS` (a JSON object) is
//! applied over the model entry's `params` and `MLVF_WORLD` over the world's, e.g.
//! `MLVF_PARAMS='{"steps": 1000}' MLVF_WORLD='{"n_pretrain": 5000}'`; `MLVF_LAYERS=2` trains
//! the LM with another depth than the entry's `layers`.

use mlvf::model::vision::VisionArch;
use mlvf::plan::config::ModelSpec;
use mlvf::synth::foundation::{lm, vision, TrainHooks};
use std::time::Instant;

fn quickstart() -> (mlvf::plan::Plan, serde_json::Value) {
    // Read at run time too, so the binary can run from a copy of the repository elsewhere.
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let manifest = std::path::Path::new(&root).join("experiments/quickstart.toml");
    let p = mlvf::plan::load(&manifest, None).unwrap();
    let world = p
        .tasks
        .iter()
        .find(|t| t.config["kind"] == "world")
        .unwrap()
        .config["entry"]["params"]
        .clone();
    (p, world)
}

fn spec(p: &mlvf::plan::Plan, source: &str) -> ModelSpec {
    let t = p
        .tasks
        .iter()
        .find(|t| t.config["entry"]["source"] == source)
        .unwrap();
    serde_json::from_value(t.config["entry"].clone()).unwrap()
}

/// Generates the quickstart's world into a temp dir (the returned guard keeps it alive).
fn world() -> (tempfile::TempDir, std::path::PathBuf, mlvf::plan::Plan) {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut world_cfg) = quickstart();
    if let Ok(extra) = std::env::var("MLVF_WORLD") {
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&extra).expect("MLVF_WORLD is a JSON object");
        world_cfg.as_object_mut().unwrap().extend(extra);
    }
    let start = Instant::now();
    let world = dir.path().join("world");
    mlvf::synth::generate(&serde_json::from_value(world_cfg).unwrap(), &world).unwrap();
    eprintln!("world: {:.1}s", start.elapsed().as_secs_f64());
    (dir, world, p)
}

/// Prints the loss at steps 1, 2 and every 25th, with the time since `t0`.
fn progress(t0: Instant) -> impl FnMut(&str, Option<u64>, f64) -> anyhow::Result<()> {
    move |n: &str, s: Option<u64>, v: f64| {
        let every = if n == "loss" { 25 } else { 1 };
        if let Some(s) = s.filter(|s| s % every == 0 || *s <= 2) {
            eprintln!(
                "  {n} step {s:>4}: {v:.4} ({:.1}s)",
                t0.elapsed().as_secs_f64()
            );
        } else if s.is_none() {
            eprintln!("  {n}: {v:.2}");
        }
        Ok(())
    }
}

/// The manifest's `params` of an entry, with `MLVF_PARAMS` (a JSON object, for measuring other
/// settings without editing the manifest) applied on top.
fn params(entry: &ModelSpec) -> serde_json::Map<String, serde_json::Value> {
    let mut p = entry.params.clone();
    if let Ok(extra) = std::env::var("MLVF_PARAMS") {
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&extra).expect("MLVF_PARAMS is a JSON object");
        p.extend(extra);
    }
    p
}

fn tower(arch: VisionArch) -> vision::VisionReport {
    let (dir, world, p) = world();
    let clip = spec(&p, "synth:clip");
    let vp = vision::VisionParams::from_params(&params(&clip)).unwrap();
    let mut metric = progress(Instant::now());
    let mut hooks = TrainHooks {
        checkpoint_dir: &dir.path().join("ck"),
        metric: &mut metric,
        stop_after: None,
    };
    let r = vision::train_vision(
        arch,
        clip.depth.unwrap(),
        &vp,
        &world,
        &dir.path().join("out"),
        &mut hooks,
    )
    .unwrap()
    .unwrap();
    eprintln!("{arch:?}: {}", serde_json::to_string(&r).unwrap());
    r
}

#[test]
#[ignore = "minutes: trains the quickstart's CLIP-style tower"]
fn quickstart_clip_tower_retrieves_captions_well_above_chance() {
    let r = tower(VisionArch::Clip);
    assert!(r.retrieval_top1 > 5.0 * r.retrieval_chance, "{r:?}");
}

#[test]
#[ignore = "minutes: trains a SigLIP-style tower with the quickstart's settings"]
fn quickstart_siglip_tower_retrieves_captions_well_above_chance() {
    let r = tower(VisionArch::Siglip);
    assert!(r.retrieval_top1 > 5.0 * r.retrieval_chance, "{r:?}");
}

#[test]
#[ignore = "minutes: trains the quickstart's LM"]
fn quickstart_lm_beats_the_unigram_baseline_by_far() {
    let (dir, world, p) = world();
    let llama = spec(&p, "synth:llama");
    let lp = lm::LmParams::from_params(&params(&llama)).unwrap();
    let mut metric = progress(Instant::now());
    let mut hooks = TrainHooks {
        checkpoint_dir: &dir.path().join("ck"),
        metric: &mut metric,
        stop_after: None,
    };
    let layers = std::env::var("MLVF_LAYERS")
        .ok()
        .map(|v| v.parse().expect("MLVF_LAYERS is a number"))
        .unwrap_or(llama.layers.unwrap());
    let l = lm::train_lm(layers, &lp, &world, &dir.path().join("out"), &mut hooks)
        .unwrap()
        .unwrap();
    eprintln!("llama: {}", serde_json::to_string(&l).unwrap());
    assert!(l.perplexity < 0.5 * l.unigram_perplexity, "{l:?}");
}
