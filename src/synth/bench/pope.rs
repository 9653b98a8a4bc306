//! POPE-like object hallucination probe: "Is there a <colour> <shape> in the image?" with one
//! present object and one absent object per image for each negative-sampling subset, so yes/no is
//! exactly balanced (`pope_exact`).
//!
//! - `random`: an absent (colour, shape) drawn uniformly;
//! - `popular`: among the most frequent absent objects of the world (the priors of `world`);
//! - `adversarial`: an absent object that shares its colour or its shape with a present one — the
//!   near misses a model that only half-sees the image says "yes" to.

use super::{BenchRecord, Unit};
use crate::synth::config::SynthConfig;
use crate::synth::prompts;
use crate::synth::questions::{absent_object, Family};
use crate::synth::rng::{pick, shuffle};
use crate::synth::scene::{sample_scene, Layout, Scene, SceneSpec, SignChoice};
use crate::synth::world::{article, Color, Shape};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const SUBSETS: [&str; 3] = ["adversarial", "popular", "random"];

fn popular_absent(scene: &Scene, rng: &mut ChaCha8Rng) -> (Color, Shape) {
    let mut ranked: Vec<(u32, Color, Shape)> = Vec::new();
    for (ci, &c) in Color::ALL.iter().enumerate() {
        for (si, &s) in Shape::ALL.iter().enumerate() {
            if !scene.has(c, s) {
                ranked.push((Color::PRIOR[ci] * Shape::PRIOR[si], c, s));
            }
        }
    }
    // Stable sort by frequency, highest first; pick among the top three for variety.
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    let (_, c, s) = *pick(rng, &ranked[..3.min(ranked.len())]);
    (c, s)
}

fn adversarial_absent(scene: &Scene, rng: &mut ChaCha8Rng) -> (Color, Shape) {
    let mut near: Vec<(Color, Shape)> = Vec::new();
    for o in &scene.objects {
        for &c in &Color::ALL {
            if !scene.has(c, o.shape) {
                near.push((c, o.shape));
            }
        }
        for &s in &Shape::ALL {
            if !scene.has(o.color, s) {
                near.push((o.color, s));
            }
        }
    }
    near.sort();
    near.dedup();
    if near.is_empty() {
        absent_object(scene, rng)
    } else {
        *pick(rng, &near)
    }
}

fn question(c: Color, s: Shape) -> String {
    let body = format!("{} {}", c.name(), s.name());
    format!("Is there {} {body} in the image?", article(&body))
}

pub fn unit(cfg: &SynthConfig, index: usize, rng: &mut ChaCha8Rng) -> anyhow::Result<Unit> {
    let spec = SceneSpec {
        min_objects: 2,
        max_objects: cfg.max_objects,
        sign: SignChoice::No,
        layout: Layout::Grid,
    };
    let scene = sample_scene(rng, &spec);
    let mut present: Vec<usize> = (0..scene.objects.len()).collect();
    shuffle(rng, &mut present);
    let mut records = Vec::with_capacity(6);
    for (k, subset) in SUBSETS.iter().enumerate() {
        let o = &scene.objects[present[k % present.len()]];
        let (nc, ns) = match *subset {
            "adversarial" => adversarial_absent(&scene, rng),
            "popular" => popular_absent(&scene, rng),
            _ => absent_object(&scene, rng),
        };
        let mut pair = [
            (question(o.color, o.shape), "yes", o.color, o.shape),
            (question(nc, ns), "no", nc, ns),
        ];
        if rng.random_bool(0.5) {
            pair.swap(0, 1);
        }
        for (q, answer, c, s) in pair {
            let mut r = BenchRecord::new(
                format!("{index}-{subset}-{answer}"),
                prompts::short_answer(&q),
                q,
                answer.into(),
            )
            .with_family(Family::Existence);
            r.subset = Some((*subset).into());
            r.group = Some(index.to_string());
            r.meta
                .insert("object".into(), format!("{} {}", c.name(), s.name()).into());
            records.push(r);
        }
    }
    Ok(Unit { scene, records })
}
