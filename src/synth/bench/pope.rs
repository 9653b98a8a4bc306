//! POPE-like object hallucination probe: "Is there a <colour> <shape> in the image?" with one
//! present object and one absent object per image for each negative-sampling subset, so yes/no is
//! exactly balanced (`pope_exact`).
//!
//! POPE samples its negatives at random, among the dataset's most frequent objects, and among
//! objects that co-occur with the present ones. The world draws colours and shapes uniformly, so
//! "most frequent" means nothing here; the subsets are instead graded by how much of the absent
//! object the image does show:
//!
//! - `random`: an absent (colour, shape) drawn uniformly;
//! - `popular`: an absent object that shares its colour or its shape with a present one — the
//!   near misses a model that only half-sees the image says "yes" to;
//! - `adversarial`: the colour of one present object with the shape of another (both are in the
//!   image, not together) where the scene allows it — only a model that binds colour to shape
//!   answers "no" (a bag of attributes says "yes"); else a near miss as in `popular`.

use super::{BenchRecord, Unit};
use crate::synth::config::SynthConfig;
use crate::synth::prompts;
use crate::synth::questions::{absent_object, adversarial_absent, near_absent, Family};
use crate::synth::rng::shuffle;
use crate::synth::scene::{sample_scene, Layout, SceneSpec, SignChoice};
use crate::synth::world::{article, Color, Shape};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const SUBSETS: [&str; 3] = ["adversarial", "popular", "random"];

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
            "popular" => near_absent(&scene, rng),
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
