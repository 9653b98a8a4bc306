//! The training sets in LLaVA's JSON format: short captions for alignment pretraining
//! (LLaVA-558k style) and multi-turn instructions for finetuning (LLaVA-665k style: short-answer,
//! yes/no, multiple-choice and conversational turns, plus a few text-only samples).

use super::cells::SceneCells;
use super::config::SynthConfig;
use super::language::caption;
use super::prompts;
use super::questions::{open, yes_no, Family, Open};
use super::render::render;
use super::rng::{item_rng, pick, pick_weighted, shuffle};
use super::scene::{sample_scene, Layout, Scene, SceneSpec, SignChoice, TextKind};
use super::world::{Shape, WORDS};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The image placeholder LLaVA's data loader replaces with visual tokens.
pub use crate::data::json::IMAGE_PLACEHOLDER as IMAGE_TOKEN;

/// One LLaVA conversation turn (`from` is "human" or "gpt").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub from: String,
    pub value: String,
}

/// One LLaVA JSON record; `image` is relative to the split's image folder and absent for
/// text-only samples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlavaRecord {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<String>,
    pub conversations: Vec<Turn>,
}

fn human(value: String) -> Turn {
    Turn {
        from: "human".into(),
        value,
    }
}

fn gpt(value: String) -> Turn {
    Turn {
        from: "gpt".into(),
        value,
    }
}

/// Instructions asking for a brief caption (our own wording, in the spirit of LLaVA's list).
const CAPTION_PROMPTS: [&str; 8] = [
    "Describe the image briefly.",
    "Give a short description of the picture.",
    "What does the image show?",
    "Summarize the contents of the image.",
    "Write a brief caption for this image.",
    "List the objects you see.",
    "Provide a concise description of the scene.",
    "What is in this picture?",
];

/// The kind of scene a training record shows, drawn with the config's percentages.
pub fn training_spec(cfg: &SynthConfig, rng: &mut ChaCha8Rng) -> SceneSpec {
    let roll = rng.random_range(0..100);
    let (layout, sign) = if roll < cfg.occlusion_percent {
        (Layout::Occlusion, SignChoice::No)
    } else if roll < cfg.occlusion_percent + cfg.text_percent {
        (Layout::Grid, SignChoice::Any)
    } else {
        (Layout::Grid, SignChoice::No)
    };
    SceneSpec {
        min_objects: 1,
        max_objects: cfg.max_objects,
        sign,
        layout,
    }
}

/// How often each family is asked about a scene in the finetuning set (0 where it cannot be).
pub fn family_weights(scene: &Scene) -> Vec<(Family, u32)> {
    let sign_kind = scene.sign.as_ref().map(|s| s.kind);
    Family::ALL
        .iter()
        .map(|&f| {
            let w = match (scene.layout, f) {
                (Layout::Occlusion, Family::Depth) => 6,
                (Layout::Occlusion, Family::Color | Family::Shape) => 2,
                (Layout::Occlusion, Family::Existence | Family::Texture) => 1,
                (Layout::Occlusion, _) => 0,
                (_, Family::Depth) => 0,
                (_, Family::Text) => match sign_kind {
                    Some(TextKind::Sum) | None => 0,
                    Some(_) => 5,
                },
                (_, Family::Arithmetic) => match sign_kind {
                    Some(TextKind::Sum) => 4,
                    _ => 0,
                },
                (_, Family::Color | Family::Shape | Family::Count | Family::Relation) => 3,
                (_, Family::Compare) => 1,
                (_, _) => 2,
            };
            (f, w)
        })
        .collect()
}

/// Draws a family by `family_weights`, among `allowed` only; `None` when none of them can be
/// asked about this scene.
pub fn pick_family(scene: &Scene, rng: &mut ChaCha8Rng, allowed: &[Family]) -> Option<Family> {
    let weights: Vec<(Family, u32)> = family_weights(scene)
        .into_iter()
        .map(|(f, w)| (f, if allowed.contains(&f) { w } else { 0 }))
        .collect();
    let w: Vec<u32> = weights.iter().map(|(_, w)| *w).collect();
    if w.iter().all(|&w| w == 0) {
        return None;
    }
    Some(weights[pick_weighted(rng, &w)].0)
}

/// Rendered PNG plus the record that points to it.
pub struct ImageRecord {
    pub record: LlavaRecord,
    /// `None` for text-only records.
    pub png: Option<Vec<u8>>,
    /// What each grid cell shows (pretraining records, for per-patch supervision).
    pub cells: Option<SceneCells>,
}

/// Pretraining record `index`: one image, one caption.
pub fn pretrain_record(cfg: &SynthConfig, index: usize) -> anyhow::Result<ImageRecord> {
    let mut rng = item_rng(cfg.seed, "pretrain", index as u64);
    let spec = training_spec(cfg, &mut rng);
    let scene = sample_scene(&mut rng, &spec);
    let instruction = *pick(&mut rng, &CAPTION_PROMPTS);
    let text = super::scene_text::alignment_caption(&scene, cfg.text_block, &mut rng);
    let id = format!("pt{index:06}");
    let png = super::output::encode_png(&render(&scene, cfg.image_size))?;
    Ok(ImageRecord {
        cells: Some(SceneCells::of(&id, &scene)),
        record: LlavaRecord {
            image: Some(format!("{id}.png")),
            id,
            conversations: vec![human(format!("{IMAGE_TOKEN}\n{instruction}")), gpt(text)],
        },
        png: Some(png),
    })
}

/// Multiple-choice options: the answer and up to three distractors, shuffled; returns (options,
/// index of the answer).
pub fn choices(q: &Open, rng: &mut ChaCha8Rng, max_options: usize) -> (Vec<String>, usize) {
    let mut options = vec![q.answer.clone()];
    options.extend(q.distractors.iter().take(max_options - 1).cloned());
    shuffle(rng, &mut options);
    let at = options.iter().position(|o| *o == q.answer).unwrap_or(0);
    (options, at)
}

/// One question/answer turn pair about `scene` (text of the human turn, answer, family), of a
/// family in `allowed`.
fn instruction_turn(
    scene: &Scene,
    rng: &mut ChaCha8Rng,
    allowed: &[Family],
) -> Option<(String, String, Family)> {
    let family = pick_family(scene, rng, allowed)?;
    let (q, a) = instruction_pair(scene, family, rng)?;
    Some((q, a, family))
}

fn instruction_pair(
    scene: &Scene,
    family: Family,
    rng: &mut ChaCha8Rng,
) -> Option<(String, String)> {
    match pick_weighted(rng, &[30, 22, 20, 15]) {
        0 => {
            let q = open(scene, family, rng)?;
            // OCRBench asks with no post-prompt; teach that form too.
            if family == Family::Text && rng.random_bool(0.3) {
                return Some((q.question.to_lowercase(), q.answer));
            }
            Some((prompts::short_answer(&q.question), q.answer))
        }
        1 => {
            let truth = rng.random_bool(0.5);
            let q = yes_no(scene, family, truth, rng)?;
            Some((
                prompts::short_answer(&q.question),
                if q.answer { "yes" } else { "no" }.into(),
            ))
        }
        2 => {
            let q = open(scene, family, rng)?;
            let (options, at) = choices(&q, rng, 4);
            let prompt = match rng.random_range(0..3) {
                0 => prompts::mmbench(None, &q.question, &options),
                1 => prompts::letter_list(&q.question, &options),
                _ => prompts::cvbench(&q.question, &options),
            };
            Some((prompt, prompts::letter(at).to_string()))
        }
        _ => {
            let q = open(scene, family, rng)?;
            Some((q.question, q.sentence))
        }
    }
}

/// Up to `wanted` distinct question turns about `scene` (question, answer, family), of families
/// in `allowed`; fewer when the scene does not support that many different questions.
pub fn instruction_turns(
    scene: &Scene,
    rng: &mut ChaCha8Rng,
    wanted: usize,
    allowed: &[Family],
) -> Vec<(String, String, Family)> {
    let mut pairs: Vec<(String, String, Family)> = Vec::new();
    let mut tries = 0;
    while pairs.len() < wanted && tries < 4 * wanted + 10 {
        tries += 1;
        if let Some((q, a, f)) = instruction_turn(scene, rng, allowed) {
            if !pairs.iter().any(|(seen, _, _)| *seen == q) {
                pairs.push((q, a, f));
            }
        }
    }
    pairs
}

/// A text-only sample about the world's vocabulary (no image), like LLaVA-665k's ShareGPT part.
fn text_only_turn(rng: &mut ChaCha8Rng) -> (String, String) {
    match rng.random_range(0..4) {
        0 => {
            let s = *pick(rng, &Shape::ALL);
            (
                format!("How many corners does a {} have?", s.name()),
                format!("A {} has {} corners.", s.name(), s.corners()),
            )
        }
        1 => {
            let (a, b) = (rng.random_range(1..=9), rng.random_range(1..=9));
            (
                format!("What is {a} plus {b}?"),
                format!("{a} plus {b} is {}.", a + b),
            )
        }
        2 => {
            let w = *pick(rng, &WORDS);
            let reversed: String = w.chars().rev().collect();
            (
                format!("Spell the word {w} backwards."),
                reversed.to_lowercase(),
            )
        }
        _ => {
            // Two shapes with different corner counts, so there is one right answer.
            let a = *pick(rng, &Shape::ALL);
            let others: Vec<Shape> = Shape::ALL
                .iter()
                .copied()
                .filter(|s| s.corners() != a.corners())
                .collect();
            let b = *pick(rng, &others);
            let answer = if a.corners() > b.corners() { a } else { b };
            (
                format!(
                    "Which has more corners, a {} or a {}?{}",
                    a.name(),
                    b.name(),
                    prompts::SHORT_ANSWER
                ),
                answer.name().into(),
            )
        }
    }
}

/// Finetuning record `index`: 1..=`max_turns` question turns about one image (the first may be
/// a caption request), or a text-only sample.
pub fn finetune_record(cfg: &SynthConfig, index: usize) -> anyhow::Result<ImageRecord> {
    let mut rng = item_rng(cfg.seed, "finetune", index as u64);
    let id = format!("ft{index:06}");
    if rng.random_range(0..100) < cfg.text_only_percent {
        let (q, a) = text_only_turn(&mut rng);
        return Ok(ImageRecord {
            record: LlavaRecord {
                id,
                image: None,
                conversations: vec![human(q), gpt(a)],
            },
            png: None,
            cells: None,
        });
    }
    let spec = training_spec(cfg, &mut rng);
    let scene = sample_scene(&mut rng, &spec);
    let wanted = rng.random_range(1..=cfg.max_turns);
    let mut pairs: Vec<(String, String)> = Vec::new();
    if rng.random_bool(0.1) {
        pairs.push((
            pick(&mut rng, &CAPTION_PROMPTS).to_string(),
            caption(&scene, &mut rng),
        ));
    }
    let more = wanted.saturating_sub(pairs.len());
    pairs.extend(
        instruction_turns(&scene, &mut rng, more, &Family::ALL)
            .into_iter()
            .map(|(q, a, _)| (q, a)),
    );
    if pairs.is_empty() {
        // Every scene has at least one object, so a caption is always possible.
        pairs.push((CAPTION_PROMPTS[0].to_string(), caption(&scene, &mut rng)));
    }
    let mut conversations = Vec::with_capacity(pairs.len() * 2);
    for (i, (q, a)) in pairs.into_iter().enumerate() {
        let q = if i == 0 {
            format!("{IMAGE_TOKEN}\n{q}")
        } else {
            q
        };
        conversations.push(human(q));
        conversations.push(gpt(a));
    }
    let png = super::output::encode_png(&render(&scene, cfg.image_size))?;
    Ok(ImageRecord {
        record: LlavaRecord {
            image: Some(format!("{id}.png")),
            id,
            conversations,
        },
        png: Some(png),
        cells: None,
    })
}
