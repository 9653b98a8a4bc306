//! MMBench-like multiple choice with circular evaluation (`mmbench_circular`): each question has
//! four options and is written four times, the options rotated by 0–3 places. Row ids follow
//! MMBench: the main row has `index < 1_000_000`, copy k has `index + k * 1_000_000`; `group` is the
//! main index and `meta.main` marks the main row. A question counts only if every copy is right.

use super::{retry, BenchRecord, Unit};
use crate::synth::config::SynthConfig;
use crate::synth::prompts;
use crate::synth::questions::{open, Family};
use crate::synth::rng::{pick, pick_weighted, shuffle};
use crate::synth::scene::{sample_scene, Layout, SceneSpec, SignChoice};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// (family, MMBench-style leaf category, its parent category).
const FAMILIES: [(Family, &str, &str); 7] = [
    (
        Family::Color,
        "attribute_recognition",
        "finegrained_perception (instance-level)",
    ),
    (
        Family::Texture,
        "attribute_recognition",
        "finegrained_perception (instance-level)",
    ),
    (
        Family::Shape,
        "attribute_recognition",
        "finegrained_perception (instance-level)",
    ),
    (
        Family::Position,
        "object_localization",
        "finegrained_perception (instance-level)",
    ),
    (
        Family::Relation,
        "spatial_relationship",
        "relation_reasoning",
    ),
    (
        Family::Count,
        "counting",
        "finegrained_perception (cross-instance)",
    ),
    (
        Family::Text,
        "ocr",
        "finegrained_perception (instance-level)",
    ),
];
const WEIGHTS: [u32; 7] = [2, 2, 2, 2, 2, 2, 2];

const HINTS: [&str; 3] = [
    "The image shows simple shapes on a noisy background.",
    "Each object sits in one cell of a three by three grid.",
    "Look carefully at the objects in the picture.",
];

const OPTIONS: usize = 4;

pub fn unit(cfg: &SynthConfig, index: usize, rng: &mut ChaCha8Rng) -> anyhow::Result<Unit> {
    let (family, category, l2) = FAMILIES[pick_weighted(rng, &WEIGHTS)];
    let spec = SceneSpec {
        min_objects: 2,
        max_objects: cfg.max_objects,
        sign: if family == Family::Text {
            SignChoice::Any
        } else {
            SignChoice::No
        },
        layout: Layout::Grid,
    };
    let (scene, q) = retry(|| {
        let scene = sample_scene(rng, &spec);
        let q = open(&scene, family, rng)?;
        (q.distractors.len() >= OPTIONS - 1).then_some((scene, q))
    })?;
    let mut options = vec![q.answer.clone()];
    let mut wrong = q.distractors.clone();
    // Numbers and strings list their nearest wrong answers first; keep those, else pick at random.
    if !matches!(family, Family::Count | Family::Text) {
        shuffle(rng, &mut wrong);
    }
    options.extend(wrong.into_iter().take(OPTIONS - 1));
    shuffle(rng, &mut options);
    let at = options.iter().position(|o| *o == q.answer).unwrap_or(0);
    let hint = rng.random_bool(0.25).then(|| *pick(rng, &HINTS));
    let records = (0..OPTIONS)
        .map(|shift| {
            let rotated: Vec<String> = (0..OPTIONS)
                .map(|j| options[(j + shift) % OPTIONS].clone())
                .collect();
            let answer_at = (at + OPTIONS - shift) % OPTIONS;
            let row_index = index + shift * 1_000_000;
            let mut r = BenchRecord::new(
                row_index.to_string(),
                prompts::mmbench(hint, &q.question, &rotated),
                q.question.clone(),
                prompts::letter(answer_at).to_string(),
            )
            .with_family(family);
            r.options = Some(rotated);
            r.group = Some(index.to_string());
            r.category = Some(category.into());
            r.meta.insert("main".into(), Value::Bool(shift == 0));
            r.meta.insert("index".into(), row_index.into());
            r.meta.insert("l2_category".into(), l2.into());
            r.meta
                .insert("hint".into(), hint.map(Value::from).unwrap_or(Value::Null));
            r
        })
        .collect();
    Ok(Unit { scene, records })
}
