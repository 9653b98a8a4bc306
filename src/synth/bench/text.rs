//! Text-reading benchmarks: TextVQA-like (`vqa_acc`, ten answers per question) and OCRBench-like
//! (`ocrbench_contains`, question types as OCRBench names them). Reading 8-pixel glyphs is the
//! finest low-level detail in the world.

use super::{retry, BenchRecord, Unit};
use crate::synth::config::SynthConfig;
use crate::synth::prompts;
use crate::synth::questions::{near_miss_text, open, Family};
use crate::synth::rng::pick_weighted;
use crate::synth::scene::{sample_scene, Layout, SceneSpec, SignChoice, TextKind};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn sign_spec(kind: TextKind, max_objects: usize) -> SceneSpec {
    SceneSpec {
        min_objects: 1,
        max_objects: max_objects.min(3),
        sign: SignChoice::Kind(kind),
        layout: Layout::Grid,
    }
}

fn kind_name(kind: TextKind) -> &'static str {
    match kind {
        TextKind::Word => "word",
        TextKind::Digits => "digits",
        TextKind::Letters => "letters",
        TextKind::Sum => "sum",
    }
}

/// TextVQA-like: read the sign. Ten reference answers, like TextVQA's annotators; now and then one
/// annotator misreads a character (the correct reading still has nine votes).
pub fn textvqa_unit(cfg: &SynthConfig, index: usize, rng: &mut ChaCha8Rng) -> anyhow::Result<Unit> {
    const KINDS: [TextKind; 3] = [TextKind::Word, TextKind::Digits, TextKind::Letters];
    let kind = KINDS[pick_weighted(rng, &[5, 3, 2])];
    let spec = sign_spec(kind, cfg.max_objects);
    let (scene, q) = retry(|| {
        let scene = sample_scene(rng, &spec);
        let q = open(&scene, Family::Text, rng)?;
        Some((scene, q))
    })?;
    let mut answers = vec![q.answer.clone(); 10];
    if rng.random_bool(0.3) {
        let text = &scene.sign.as_ref().expect("sign scene").text;
        answers[rng.random_range(0..10)] = near_miss_text(text, rng).to_lowercase();
    }
    let mut r = BenchRecord::new(
        index.to_string(),
        prompts::textvqa(&q.question),
        q.question,
        q.answer,
    )
    .with_family(Family::Text);
    r.answers = Some(answers);
    r.meta.insert("text_kind".into(), kind_name(kind).into());
    Ok(Unit {
        scene,
        records: vec![r],
    })
}

/// OCRBench-like: recognition of words, digit strings and non-semantic strings, and scene-text
/// questions; the prompt is the bare question (OCRBench has no post-prompt).
pub fn ocrbench_unit(
    cfg: &SynthConfig,
    index: usize,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Unit> {
    const TYPES: [(&str, TextKind); 4] = [
        ("Regular Text Recognition", TextKind::Word),
        ("Digit String Recognition", TextKind::Digits),
        ("Non-Semantic Text Recognition", TextKind::Letters),
        ("Scene Text-centric VQA", TextKind::Word),
    ];
    let (question_type, kind) = TYPES[index % TYPES.len()];
    let scene_text = question_type == "Scene Text-centric VQA";
    let spec = sign_spec(kind, if scene_text { cfg.max_objects } else { 1 });
    let (scene, question) = retry(|| {
        let scene = sample_scene(rng, &spec);
        let question = if scene_text {
            open(&scene, Family::Text, rng)?.question
        } else if kind == TextKind::Digits {
            "what is the number in the image?".to_string()
        } else {
            "what is written in the image?".to_string()
        };
        Some((scene, question))
    })?;
    let answer = scene.sign.as_ref().expect("sign scene").text.to_lowercase();
    let mut r = BenchRecord::new(
        index.to_string(),
        question.trim().to_string(),
        question,
        answer.clone(),
    )
    .with_family(Family::Text);
    r.answers = Some(vec![answer]);
    r.category = Some(question_type.into());
    r.qtype = Some("synth".into());
    r.meta.insert("text_kind".into(), kind_name(kind).into());
    Ok(Unit {
        scene,
        records: vec![r],
    })
}
