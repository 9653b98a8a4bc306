//! Grounding controls: answer a benchmark again with its images taken away or made wrong, to tell
//! "the model reads the image" from "the model answers from its priors".
//!
//! - [`Control::Blank`]: every image becomes a uniform image of the same size, filled with the
//!   model's blank colour ([`crate::eval::Generator::blank_fill`]; for the MLLM its processor's
//!   mean colour, which LLaVA already pads images with and which normalises to ≈ 0, so the tower
//!   sees "no content" in the input format it was trained on). Same prompt, same number of image
//!   tokens: only the image's information is gone.
//! - [`Control::Shuffle`]: sample i gets another sample's images (Gat et al., arXiv 2110.14375).
//!   Samples sharing an image (POPE asks 6 questions per image) move together: the derangement is
//!   over the distinct image lists, so no sample can draw its own image back. It is a fixed
//!   single cycle (Sattolo's algorithm on CPython's MT19937 seeded with [`SHUFFLE_SEED`]), so
//!   every model of a sweep answers the same mismatched pairs.
//! - [`Control::None`]: the images are removed and the prompt has no `<image>` (MMStar's S_wv,
//!   Chen et al., arXiv 2403.20330); the model answers from text alone, as on the text-only
//!   records LLaVA data carries.
//!
//! A control eval is an eval like any other: its predictions are cached per sample (resumable)
//! and its cache header names the control, so answers under one control are never read as
//! answers under another.

use crate::eval::format::{load_rgb, Benchmark, Sample};
use crate::eval::prompt::IMAGE_TOKEN;
use crate::eval::pyrandom::PyRandom;
use anyhow::{Context, Result};
use image::{DynamicImage, Rgb, RgbImage};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One grounding control (`[eval] controls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    Blank,
    Shuffle,
    None,
}

/// Seed of the shuffle control's derangement (fixed: the control is part of the benchmark, not
/// of the cell, so seeds of a sweep compare like with like).
pub const SHUFFLE_SEED: u64 = 0;

/// The blank colour of generators that do not say otherwise: mid grey.
pub const DEFAULT_BLANK_FILL: [u8; 3] = [128, 128, 128];

impl Control {
    pub const ALL: [Control; 3] = [Control::Blank, Control::Shuffle, Control::None];

    /// The name written in manifests, specs and metric names.
    pub fn name(self) -> &'static str {
        match self {
            Control::Blank => "blank",
            Control::Shuffle => "shuffle",
            Control::None => "none",
        }
    }

    pub fn names() -> Vec<&'static str> {
        Control::ALL.iter().map(|c| c.name()).collect()
    }

    pub fn parse(s: &str) -> Option<Control> {
        Control::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The metric a control eval records for the score the images are worth: with-image score
    /// minus the score under this control, on the benchmark's reporting scale. `mg` is the blank
    /// control's (prompt and token count as in the real eval, so only the image's content
    /// differs); `mg_none` is MMStar's literal S_v − S_wv; `mg_shuffle` the drop under
    /// mismatched images.
    pub fn gain_metric(self) -> &'static str {
        match self {
            Control::Blank => "mg",
            Control::Shuffle => "mg_shuffle",
            Control::None => "mg_none",
        }
    }
}

impl std::fmt::Display for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a control gives each sample of one benchmark instead of its own images (the shuffle's
/// derangement computed once).
pub struct ControlledInputs {
    control: Control,
    fill: [u8; 3],
    /// Shuffle: per sample index, the image list it gets (`lists[donor[i]]`); `None` for samples
    /// without images.
    donor: Vec<Option<usize>>,
    /// Shuffle: the distinct image lists, in data order.
    lists: Vec<Vec<String>>,
    /// Shuffle: per sample index, the index of its own image list.
    own: Vec<Option<usize>>,
}

impl ControlledInputs {
    pub fn new(control: Control, bench: &Benchmark, fill: [u8; 3]) -> ControlledInputs {
        let mut inputs = ControlledInputs {
            control,
            fill,
            donor: Vec::new(),
            lists: Vec::new(),
            own: Vec::new(),
        };
        if control == Control::Shuffle {
            inputs.derange(&bench.samples);
        }
        inputs
    }

    pub fn control(&self) -> Control {
        self.control
    }

    /// Maps every distinct image list to another one with the same number of images (so a
    /// prompt's `<image>` count still fits), as one cycle per image count.
    fn derange(&mut self, samples: &[Sample]) {
        let mut index: HashMap<&[String], usize> = HashMap::new();
        for s in samples {
            let own = (!s.images.is_empty()).then(|| {
                *index.entry(s.images.as_slice()).or_insert_with(|| {
                    self.lists.push(s.images.clone());
                    self.lists.len() - 1
                })
            });
            self.own.push(own);
        }
        let mut by_count: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, list) in self.lists.iter().enumerate() {
            by_count.entry(list.len()).or_default().push(i);
        }
        let mut target: Vec<usize> = (0..self.lists.len()).collect();
        let mut rng = PyRandom::new(SHUFFLE_SEED);
        for members in by_count.values() {
            // Sattolo: a uniformly drawn single cycle, so no element maps to itself (n ≥ 2).
            // In Python: `for i in reversed(range(1, n)): j = r._randbelow(i); a[i], a[j] = a[j], a[i]`.
            let mut perm = members.clone();
            for i in (1..perm.len()).rev() {
                let j = rng.randbelow(i);
                perm.swap(i, j);
            }
            for (from, to) in members.iter().zip(&perm) {
                target[*from] = *to;
            }
        }
        self.donor = self.own.iter().map(|o| o.map(|l| target[l])).collect();
    }

    /// How many of `samples` keep their own images under this control: none for blank and
    /// none; for shuffle, those whose image count no other image list of the benchmark shares.
    pub fn unchanged(&self, samples: &[Sample]) -> usize {
        match self.control {
            Control::Shuffle => samples
                .iter()
                .filter(|s| {
                    let own = self.own.get(s.index).copied().flatten();
                    own.is_some() && self.donor.get(s.index).copied().flatten() == own
                })
                .count(),
            Control::Blank | Control::None => 0,
        }
    }

    /// The images `sample` is answered with under this control.
    pub fn images(&self, bench: &Benchmark, sample: &Sample) -> Result<Vec<DynamicImage>> {
        match self.control {
            Control::None => Ok(Vec::new()),
            Control::Blank => sample
                .images
                .iter()
                .map(|rel| {
                    let (w, h) = image_size(&bench.dir.join(rel))?;
                    Ok(DynamicImage::ImageRgb8(RgbImage::from_pixel(
                        w,
                        h,
                        Rgb(self.fill),
                    )))
                })
                .collect(),
            Control::Shuffle => {
                let Some(list) = self.donor.get(sample.index).copied().flatten() else {
                    return Ok(Vec::new());
                };
                self.lists[list]
                    .iter()
                    .map(|rel| load_rgb(&bench.dir.join(rel)))
                    .collect()
            }
        }
    }

    /// The context string the prompt is built from: without `<image>` placeholders for `none`
    /// (a prompt that names an image it does not get would be refused by the model).
    pub fn context<'a>(&self, prompt: &'a str) -> Cow<'a, str> {
        if self.control == Control::None && prompt.contains(IMAGE_TOKEN) {
            Cow::Owned(
                prompt
                    .replace(&format!("{IMAGE_TOKEN}\n"), "")
                    .replace(IMAGE_TOKEN, ""),
            )
        } else {
            Cow::Borrowed(prompt)
        }
    }
}

/// An image's width and height, from its header (the pixels are not decoded).
fn image_size(path: &Path) -> Result<(u32, u32)> {
    let read = || -> Result<(u32, u32)> {
        Ok(image::ImageReader::open(path)?
            .with_guessed_format()?
            .into_dimensions()?)
    };
    read().with_context(|| format!("cannot read the size of image {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize, images: &[&str]) -> Sample {
        let mut s = Sample::new(
            format!("s{i}"),
            images.iter().map(|x| x.to_string()).collect(),
            "Q".into(),
            "a".into(),
        );
        s.index = i;
        s
    }

    fn inputs(samples: &[Sample]) -> ControlledInputs {
        let mut c = ControlledInputs {
            control: Control::Shuffle,
            fill: DEFAULT_BLANK_FILL,
            donor: Vec::new(),
            lists: Vec::new(),
            own: Vec::new(),
        };
        c.derange(samples);
        c
    }

    #[test]
    fn names_round_trip_and_gains_are_named_per_control() {
        for c in Control::ALL {
            assert_eq!(Control::parse(c.name()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        assert_eq!(Control::Blank.gain_metric(), "mg");
        assert_eq!(Control::parse("blanks"), None);
    }

    #[test]
    fn shuffle_never_gives_a_sample_its_own_image_and_moves_shared_images_together() {
        // Three questions on image a, two on b, one each on c and d (POPE-like sharing).
        let names = ["a", "a", "a", "b", "b", "c", "d"];
        let samples: Vec<Sample> = names
            .iter()
            .enumerate()
            .map(|(i, n)| sample(i, &[n]))
            .collect();
        let c = inputs(&samples);
        for s in &samples {
            let got = &c.lists[c.donor[s.index].unwrap()];
            assert_ne!(got, &s.images, "{} got its own image", s.id);
        }
        // Samples of one image get one (other) image: a permutation of the distinct lists.
        assert_eq!(c.donor[0], c.donor[1]);
        assert_eq!(c.donor[3], c.donor[4]);
        let mut targets: Vec<usize> = [0, 3, 5, 6].iter().map(|&i| c.donor[i].unwrap()).collect();
        targets.sort();
        assert_eq!(targets, [0, 1, 2, 3]);
        assert_eq!(c.unchanged(&samples), 0);
        // Fixed: the same benchmark always gets the same derangement.
        assert_eq!(inputs(&samples).donor, c.donor);
    }

    #[test]
    fn shuffle_keeps_image_counts_and_counts_what_it_could_not_move() {
        let samples = vec![
            sample(0, &["a"]),
            sample(1, &["b"]),
            sample(2, &["c", "d"]),
            sample(3, &[]),
        ];
        let c = inputs(&samples);
        assert_eq!(c.lists[c.donor[0].unwrap()], ["b"]);
        assert_eq!(c.lists[c.donor[1].unwrap()], ["a"]);
        // The only two-image sample has no other two-image list to take.
        assert_eq!(c.lists[c.donor[2].unwrap()], ["c", "d"]);
        assert_eq!(c.donor[3], None);
        assert_eq!(c.unchanged(&samples), 1);
    }

    #[test]
    fn none_strips_image_placeholders_from_the_context() {
        let c = ControlledInputs {
            control: Control::None,
            fill: DEFAULT_BLANK_FILL,
            donor: Vec::new(),
            lists: Vec::new(),
            own: Vec::new(),
        };
        assert_eq!(c.context("<image>\nWhat is it?"), "What is it?");
        assert_eq!(c.context("see <image 1>"), "see <image 1>");
    }
}
