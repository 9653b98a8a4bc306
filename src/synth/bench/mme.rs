//! MME-like paired yes/no set: two questions per image, one answered "yes" and one "no", in one
//! category; perception categories (existence, count, position, color, OCR) and cognition categories
//! (numerical_calculation, commonsense_reasoning) keep lmms-eval's names (`mme_yesno`).

use super::{retry, BenchRecord, Unit};
use crate::synth::config::SynthConfig;
use crate::synth::prompts;
use crate::synth::questions::{yes_no, Family};
use crate::synth::scene::{sample_scene, Layout, SceneSpec, SignChoice, TextKind};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// (category, perception or cognition, family asked, sign on the image).
const CATEGORIES: [(&str, &str, Family, Option<TextKind>); 7] = [
    ("existence", "perception", Family::Existence, None),
    ("count", "perception", Family::Count, None),
    ("position", "perception", Family::Relation, None),
    ("color", "perception", Family::Color, None),
    ("OCR", "perception", Family::Text, Some(TextKind::Word)),
    (
        "numerical_calculation",
        "cognition",
        Family::Arithmetic,
        Some(TextKind::Sum),
    ),
    ("commonsense_reasoning", "cognition", Family::Compare, None),
];

/// The table scale of the primary metric: `mme_perception_score` sums (acc + acc+) × 100 over
/// the perception categories, so it tops out at 200 per category; the paper averages MME^P as a
/// share of its maximum (its ÷ 2000 × 100).
pub fn perception_scale() -> f64 {
    let perception = CATEGORIES
        .iter()
        .filter(|(_, kind, ..)| *kind == "perception")
        .count();
    100.0 / (200.0 * perception as f64)
}

pub fn unit(cfg: &SynthConfig, index: usize, rng: &mut ChaCha8Rng) -> anyhow::Result<Unit> {
    // Round-robin over categories keeps every category populated at any size.
    let (category, kind, family, sign) = CATEGORIES[index % CATEGORIES.len()];
    let spec = SceneSpec {
        min_objects: 2,
        max_objects: cfg.max_objects,
        sign: match sign {
            Some(k) => SignChoice::Kind(k),
            None => SignChoice::No,
        },
        layout: Layout::Grid,
    };
    let (scene, yes, no) = retry(|| {
        let scene = sample_scene(rng, &spec);
        let yes = yes_no(&scene, family, true, rng)?;
        let no = yes_no(&scene, family, false, rng)?;
        Some((scene, yes, no))
    })?;
    let mut pair = [(yes.question, "yes"), (no.question, "no")];
    if rng.random_bool(0.5) {
        pair.swap(0, 1);
    }
    let group = format!("mme-{index:05}");
    let records = pair
        .into_iter()
        .map(|(q, answer)| {
            let question = format!("{q}{}", prompts::MME_SUFFIX);
            let mut r = BenchRecord::new(
                format!("{group}-{answer}"),
                prompts::mme(&question),
                question,
                answer.into(),
            )
            .with_family(family);
            r.group = Some(group.clone());
            r.category = Some(category.into());
            r.meta.insert("mme_type".into(), kind.into());
            r
        })
        .collect();
    Ok(Unit { scene, records })
}
