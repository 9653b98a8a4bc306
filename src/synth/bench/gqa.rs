//! GQA-like: short-answer questions about composition and attributes of grid scenes, scored by
//! exact match (`exact_match_hf`). Every family that a plain scene supports is asked, so per-family
//! accuracy (`category`) separates low-level from high-level skills.

use super::{retry, BenchRecord, Unit};
use crate::synth::config::SynthConfig;
use crate::synth::prompts;
use crate::synth::questions::{open, yes_no, Family};
use crate::synth::rng::pick_weighted;
use crate::synth::scene::{sample_scene, Layout, SceneSpec, SignChoice};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const FAMILIES: [Family; 9] = [
    Family::Color,
    Family::Texture,
    Family::Size,
    Family::Position,
    Family::Shape,
    Family::Count,
    Family::Relation,
    Family::Compare,
    Family::Existence,
];
const WEIGHTS: [u32; 9] = [3, 2, 2, 2, 3, 3, 3, 1, 1];

pub fn unit(cfg: &SynthConfig, index: usize, rng: &mut ChaCha8Rng) -> anyhow::Result<Unit> {
    let family = FAMILIES[pick_weighted(rng, &WEIGHTS)];
    // GQA mixes open questions with verification (yes/no) questions.
    let verify = family != Family::Existence && rng.random_bool(0.2);
    let spec = SceneSpec {
        min_objects: 2,
        max_objects: cfg.max_objects,
        sign: SignChoice::No,
        layout: Layout::Grid,
    };
    let (scene, question, answer) = retry(|| {
        let scene = sample_scene(rng, &spec);
        let (q, a) = if verify || family == Family::Existence {
            let truth = rng.random_bool(0.5);
            let q = yes_no(&scene, family, truth, rng)?;
            (q.question, if truth { "yes" } else { "no" }.to_string())
        } else {
            let q = open(&scene, family, rng)?;
            (q.question, q.answer)
        };
        Some((scene, q, a))
    })?;
    let mut record = BenchRecord::new(
        index.to_string(),
        prompts::short_answer(&question),
        question,
        answer,
    )
    .with_family(family);
    record.category = Some(family.name().into());
    // GQA's `types.structural`: "verify" (yes/no) or "query" (open).
    let structural = if verify || family == Family::Existence {
        "verify"
    } else {
        "query"
    };
    record.meta.insert("structural".into(), structural.into());
    Ok(Unit {
        scene,
        records: vec![record],
    })
}
