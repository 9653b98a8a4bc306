//! The quickstart's foundation models at full size: time budget and quality bars. Slow (minutes
//! on 2 cores), so ignored by default:
//! `cargo test --release --test prepare_budget -- --ignored --nocapture`.

use mlvf::model::vision::VisionArch;
use mlvf::plan::config::ModelSpec;
use mlvf::synth::foundation::{lm, vision, TrainHooks};
use std::time::Instant;

fn quickstart() -> (mlvf::plan::Plan, serde_json::Value) {
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/quickstart.toml");
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

#[test]
#[ignore = "minutes: trains the quickstart's foundation models"]
fn quickstart_foundation_models_meet_the_budget_and_quality_bars() {
    let dir = tempfile::tempdir().unwrap();
    let (p, world_cfg) = quickstart();
    let start = Instant::now();
    let world = dir.path().join("world");
    mlvf::synth::generate(&serde_json::from_value(world_cfg).unwrap(), &world).unwrap();
    eprintln!("world: {:.1}s", start.elapsed().as_secs_f64());

    let progress = |t0: Instant| {
        move |n: &str, s: Option<u64>, v: f64| {
            if s.is_some_and(|s| s % 25 == 0 || s <= 2) {
                eprintln!(
                    "  {n} step {:>4}: {v:.4} ({:.1}s)",
                    s.unwrap(),
                    t0.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
    };
    let llama = spec(&p, "synth:llama");
    let lp = lm::LmParams::from_params(&llama.params).unwrap();
    let mut metric = progress(Instant::now());
    let mut hooks = TrainHooks {
        checkpoint_dir: &dir.path().join("ck-llama"),
        metric: &mut metric,
        stop_after: None,
    };
    let l = lm::train_lm(
        llama.layers.unwrap(),
        &lp,
        &world,
        &dir.path().join("llama"),
        &mut hooks,
    )
    .unwrap()
    .unwrap();
    eprintln!("llama: {}", serde_json::to_string(&l).unwrap());

    let clip = spec(&p, "synth:clip");
    let vp = vision::VisionParams::from_params(&clip.params).unwrap();
    let mut metric = progress(Instant::now());
    let mut hooks = TrainHooks {
        checkpoint_dir: &dir.path().join("ck-clip"),
        metric: &mut metric,
        stop_after: None,
    };
    let r = vision::train_vision(
        VisionArch::Clip,
        clip.depth.unwrap(),
        &vp,
        &world,
        &dir.path().join("clip"),
        &mut hooks,
    )
    .unwrap()
    .unwrap();
    eprintln!("clip: {}", serde_json::to_string(&r).unwrap());

    let sig = vision::VisionParams { ..vp.clone() };
    let mut metric = progress(Instant::now());
    let mut hooks = TrainHooks {
        checkpoint_dir: &dir.path().join("ck-siglip"),
        metric: &mut metric,
        stop_after: None,
    };
    let s = vision::train_vision(
        VisionArch::Siglip,
        12,
        &sig,
        &world,
        &dir.path().join("siglip"),
        &mut hooks,
    )
    .unwrap()
    .unwrap();
    eprintln!("siglip: {}", serde_json::to_string(&s).unwrap());

    assert!(
        r.retrieval_top1 > 5.0 * r.retrieval_chance,
        "clip retrieval {r:?}"
    );
    assert!(
        s.retrieval_top1 > 5.0 * s.retrieval_chance,
        "siglip retrieval {s:?}"
    );
    assert!(l.perplexity < 0.5 * l.unigram_perplexity, "lm {l:?}");
}
