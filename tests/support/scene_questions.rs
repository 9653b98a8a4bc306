//! One-lookup questions about a 3×3 scene of the world's palette and shapes, word by word:
//! research feasibility.md's five families, and the harnesses' optimiser. Each harness names
//! its own words ([`Words`]): tests/lookup_phase.rs keeps the palette and count wording its
//! measured phase change was taken with (its vocabulary order, and so its initialisation,
//! depends on them).

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use rand::seq::IndexedRandom;
use rand::Rng;

/// The world's palette and shapes, in its class order (`synth::cells`).
pub const COLORS: [&str; 8] = [
    "red", "green", "blue", "yellow", "purple", "orange", "white", "pink",
];
pub const SHAPES: [&str; 6] = ["circle", "square", "triangle", "star", "cross", "diamond"];
pub const ROWS: [&str; 3] = ["top", "middle", "bottom"];
pub const COLS: [&str; 3] = ["left", "center", "right"];
pub const COUNTS: [&str; 9] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
];
/// The words a harness's questions use for colours and counts.
pub struct Words {
    pub colors: [&'static str; 8],
    /// Count words, `counts[n - first_count]` for `n` objects.
    pub counts: &'static [&'static str],
    pub first_count: usize,
    pub count_question: &'static str,
}

/// The world's words (its palette, in class order).
pub const WORLD: Words = Words {
    colors: COLORS,
    counts: &COUNTS,
    first_count: 0,
    count_question: "how many shapes are there ?",
};

/// An object: colour, shape and cell (0–8, raster order).
pub type Object = (usize, usize, usize);

pub fn position(cell: usize) -> String {
    format!("{} {}", ROWS[cell / 3], COLS[cell % 3])
}

/// One question about the scene, research feasibility.md's five one-lookup families:
/// (question, answer, family), or None when the scene cannot carry the family drawn.
pub fn question(
    objects: &[Object],
    words: &Words,
    rng: &mut impl Rng,
) -> Option<(String, String, &'static str)> {
    let colors = &words.colors;
    let unique = |key: fn(&Object) -> usize| -> Vec<Object> {
        objects
            .iter()
            .filter(|o| objects.iter().filter(|p| key(p) == key(o)).count() == 1)
            .copied()
            .collect()
    };
    match rng.random_range(0..5) {
        0 => unique(|o| o.1).choose(rng).map(|o| {
            let q = format!("what color is the {} ?", SHAPES[o.1]);
            (q, colors[o.0].to_string(), "color")
        }),
        1 => unique(|o| o.0).choose(rng).map(|o| {
            let q = format!("what shape is the {} object ?", colors[o.0]);
            (q, SHAPES[o.1].to_string(), "shape")
        }),
        2 => {
            let o = *objects.choose(rng)?;
            let (c, s, answer) = if rng.random_bool(0.5) {
                (o.0, o.1, "yes")
            } else {
                // A near miss: the colour or the shape of a present object, never both.
                let (c, s) = if rng.random_bool(0.5) {
                    (o.0, rng.random_range(0..SHAPES.len()))
                } else {
                    (rng.random_range(0..colors.len()), o.1)
                };
                if objects.iter().any(|p| p.0 == c && p.1 == s) {
                    return None;
                }
                (c, s, "no")
            };
            let q = format!("is there a {} {} in the image ?", colors[c], SHAPES[s]);
            Some((q, answer.to_string(), "existence"))
        }
        3 => Some((
            words.count_question.into(),
            words.counts[objects.len() - words.first_count].into(),
            "count",
        )),
        _ => unique(|o| o.1).choose(rng).map(|o| {
            let q = format!("where is the {} ?", SHAPES[o.1]);
            (q, position(o.2), "position")
        }),
    }
}

/// Re-initialises `map` from seed 0 with every matrix at `linear_std`, then the input
/// embeddings back at 0.02 (as the world's LM: only the linear layers take the scale).
pub fn init_at_scale(map: &candle_nn::VarMap, linear_std: f32) {
    mlvf::synth::foundation::seeded_init(map, 0, linear_std).unwrap();
    for (name, var) in mlvf::train::optim::named_vars(map) {
        if name == "model.embed_tokens.weight" {
            var.set(&(var.as_tensor() * (0.02 / linear_std as f64)).unwrap())
                .unwrap();
        }
    }
}

/// Research feasibility.md's optimiser: AdamW lr 1e-3, wd 0.01, 100 warm-up steps, then
/// constant; clip 1.0; one checkpoint at the end.
pub fn r4a_optim(steps: u64) -> mlvf::synth::foundation::Optim {
    mlvf::synth::foundation::Optim {
        steps,
        lr: 1e-3,
        weight_decay: 0.01,
        warmup_steps: 100,
        max_grad_norm: 1.0,
        checkpoint_every: steps,
        seed: 0,
        cosine: false,
    }
}
