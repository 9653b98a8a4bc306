//! CV-Bench-like vision-centric multiple choice (`cvbench_letter`), split like CV-Bench into a 2D
//! task set (Count, Relation) and a 3D-like one (Depth from occlusion, Size from scale). `category`
//! is CV-Bench's `task`, `subset` its `source`; the answer is the bare letter (CV-Bench writes
//! "(B)"; the scorer strips the parentheses either way).

use super::{retry, BenchRecord, Unit};
use crate::synth::config::SynthConfig;
use crate::synth::language::{refer, Attr};
use crate::synth::prompts;
use crate::synth::questions::{size_comparison, Family};
use crate::synth::rng::shuffle;
use crate::synth::scene::{sample_scene, Layout, Scene, SceneSpec, SignChoice};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One CV-Bench question before its options are ordered.
struct Item {
    question: String,
    options: Vec<String>,
    answer: String,
    /// CV-Bench `task`: Count, Relation, Depth, Size.
    task: &'static str,
    /// CV-Bench `type`: 2D or 3D.
    kind: &'static str,
    family: Family,
}

fn record(index: usize, item: Item, rng: &mut ChaCha8Rng) -> BenchRecord {
    let Item {
        question,
        mut options,
        answer,
        task,
        kind,
        family,
    } = item;
    let answer = answer.as_str();
    // Wrong options in random order; the answer's letter cycles with the item index, so each
    // letter is right equally often and a model that always says "A" scores exactly chance.
    options.retain(|o| o != answer);
    shuffle(rng, &mut options);
    let at = (index / 2) % (options.len() + 1);
    options.insert(at, answer.to_string());
    let mut r = BenchRecord::new(
        format!("{}-{index}", kind.to_lowercase()),
        prompts::cvbench(&question, &options),
        question,
        prompts::letter(at).to_string(),
    )
    .with_family(family);
    r.meta.insert(
        "dataset_prompt".into(),
        prompts::cvbench_dataset_prompt(&r.question, &options).into(),
    );
    r.meta.insert(
        "answer_raw".into(),
        format!("({})", prompts::letter(at)).into(),
    );
    r.meta.insert("type".into(), kind.into());
    r.options = Some(options);
    r.category = Some(task.into());
    r.subset = Some(format!("synth-{}", kind.to_lowercase()));
    r
}

fn grid_spec(cfg: &SynthConfig) -> SceneSpec {
    SceneSpec {
        min_objects: 2,
        max_objects: cfg.max_objects,
        sign: SignChoice::No,
        layout: Layout::Grid,
    }
}

fn count_question(scene: &Scene, rng: &mut ChaCha8Rng) -> (String, Vec<String>, String) {
    let shape = scene.objects[rng.random_range(0..scene.objects.len())].shape;
    let n = scene.count_shape(shape);
    // Five choices around the true count, as CV-Bench's counting items have.
    // The window 0..=6 covers every possible count (at most six objects).
    let low = n.saturating_sub(2).min(2);
    let options: Vec<String> = (low..low + 5).map(|k| k.to_string()).collect();
    (
        format!("How many {} are in the image?", shape.plural()),
        options,
        n.to_string(),
    )
}

fn relation_question(scene: &Scene, rng: &mut ChaCha8Rng) -> Option<(String, Vec<String>, String)> {
    let n = scene.objects.len();
    let a = rng.random_range(0..n);
    let b = (a + rng.random_range(1..n)) % n;
    let (oa, ob) = (&scene.objects[a], &scene.objects[b]);
    let ra = refer(scene, a, &[Attr::Position])?;
    let rb = refer(scene, b, &[Attr::Position])?;
    let horizontal = if oa.cell.col != ob.cell.col && oa.cell.row != ob.cell.row {
        rng.random_bool(0.5)
    } else {
        oa.cell.col != ob.cell.col
    };
    let (options, answer) = if horizontal {
        let left = oa.cell.col < ob.cell.col;
        (["left", "right"], if left { "left" } else { "right" })
    } else {
        let above = oa.cell.row < ob.cell.row;
        (["above", "below"], if above { "above" } else { "below" })
    };
    Some((
        format!(
            "Considering the relative positions of the {ra} and the {rb} in the image, where is the {ra} located with respect to the {rb}?"
        ),
        options.iter().map(|s| s.to_string()).collect(),
        answer.into(),
    ))
}

/// 2D: counting and spatial relations (high-level composition), alternating.
pub fn unit_2d(cfg: &SynthConfig, index: usize, rng: &mut ChaCha8Rng) -> anyhow::Result<Unit> {
    let spec = grid_spec(cfg);
    let counting = index % 2 == 0;
    let (scene, (q, options, answer)) = retry(|| {
        let scene = sample_scene(rng, &spec);
        let qa = if counting {
            Some(count_question(&scene, rng))
        } else {
            relation_question(&scene, rng)
        };
        qa.map(|qa| (scene, qa))
    })?;
    let (task, family) = if counting {
        ("Count", Family::Count)
    } else {
        ("Relation", Family::Relation)
    };
    let item = Item {
        question: q,
        options,
        answer,
        task,
        kind: "2D",
        family,
    };
    let r = record(index, item, rng);
    Ok(Unit {
        scene,
        records: vec![r],
    })
}

/// 3D-like: which of two overlapping objects is in front (occlusion), or which appears larger.
pub fn unit_3d(cfg: &SynthConfig, index: usize, rng: &mut ChaCha8Rng) -> anyhow::Result<Unit> {
    let depth = index % 2 == 0;
    if depth {
        let scene = sample_scene(
            rng,
            &SceneSpec {
                min_objects: 2,
                max_objects: 2,
                sign: SignChoice::No,
                layout: Layout::Occlusion,
            },
        );
        let back = refer(&scene, 0, &[Attr::Position]);
        let front = refer(&scene, 1, &[Attr::Position]);
        let (Some(back), Some(front)) = (back, front) else {
            anyhow::bail!("occlusion objects are not distinguishable (a generator bug)");
        };
        // Name both objects, in random order.
        let (first, second) = if rng.random_bool(0.5) {
            (&front, &back)
        } else {
            (&back, &front)
        };
        let q = format!(
            "Which object is closer to the camera taking this photo, the {first} or the {second}?"
        );
        let options = vec![format!("the {front}"), format!("the {back}")];
        let answer = format!("the {front}");
        let item = Item {
            question: q,
            options,
            answer,
            task: "Depth",
            kind: "3D",
            family: Family::Depth,
        };
        let r = record(index, item, rng);
        return Ok(Unit {
            scene,
            records: vec![r],
        });
    }
    let spec = grid_spec(cfg);
    let (scene, q) = retry(|| {
        let scene = sample_scene(rng, &spec);
        let q = size_comparison(&scene, rng)?;
        Some((scene, q))
    })?;
    let options = vec![
        format!("the {}", q.answer),
        format!("the {}", q.distractors[0]),
    ];
    let answer = format!("the {}", q.answer);
    let q = q.question;
    let item = Item {
        question: q,
        options,
        answer,
        task: "Size",
        kind: "3D",
        family: Family::Size,
    };
    let r = record(index, item, rng);
    Ok(Unit {
        scene,
        records: vec![r],
    })
}
