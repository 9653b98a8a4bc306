//! What to generate: a serde struct the `prepare` stage deserialises from a manifest table, and
//! named scales for the command line.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Bump when a change to the generator changes its output for the same config, so that task keys
/// built from (config, version) stop matching stale worlds.
pub const GENERATOR_VERSION: &str = "mlvf-synth/5";

/// Smallest and largest supported image side in pixels: below 48 a five-character sign no longer
/// fits, above 512 the world stops being "small".
pub const MIN_IMAGE_SIZE: u32 = 48;
pub const MAX_IMAGE_SIZE: u32 = 512;

/// Everything that determines a generated world. Same config → byte-identical files.
///
/// Only integers, so the canonical JSON of a config (and hence a task key) has no float-formatting
/// ambiguity. Unknown fields are rejected, so a typo in a manifest is an error, not a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// World seed; every item's random stream derives from it.
    pub seed: u64,
    /// Image side in pixels (square images).
    pub image_size: u32,
    /// Caption records for alignment pretraining (one image each).
    pub n_pretrain: usize,
    /// Instruction records for finetuning (image conversations plus a few text-only ones).
    pub n_finetune: usize,
    /// Records per benchmark (rounded to each benchmark's unit: POPE asks 6 questions per image,
    /// MME 2, MMBench writes 4 circular rows per question).
    pub n_per_benchmark: usize,
    /// Most objects in a scene (2–6: relation questions need two; a 3×3 grid minus a sign row
    /// holds six).
    pub max_objects: usize,
    /// Percentage of training scenes that carry a sign with text.
    pub text_percent: u32,
    /// Percentage of training scenes with two overlapping objects (occlusion / depth).
    pub occlusion_percent: u32,
    /// Percentage of finetuning records that are text-only (no image), as in LLaVA-665k.
    pub text_only_percent: u32,
    /// Most question turns in one finetuning conversation (each has 1..=max_turns). LLaVA-665k
    /// merges all of an image's VQA questions into one record; more turns mean more supervised
    /// tokens per image token the model processes.
    pub max_turns: usize,
    /// Text scenes for the LM (`scene_text`): a scene written as nine cell tokens, then questions
    /// about it. No images; the world's LM learns to look things up in its context from them.
    pub n_text: usize,
    /// Question turns per text scene.
    pub text_turns: usize,
    /// Held-out text scenes (one question each) on which the LM's lookup is scored.
    pub n_text_heldout: usize,
    /// How a text scene's block (and an alignment caption's first line) writes the scene.
    /// Left out of the serialised config at its default, so worlds from before it keep their keys.
    #[serde(skip_serializing_if = "is_default")]
    pub text_block: TextBlock,
    /// Which questions text scenes ask (their held-out questions too).
    #[serde(skip_serializing_if = "is_default")]
    pub text_questions: TextQuestions,
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

/// The form of a text scene's block: nine tokens in raster order either way, one per grid cell,
/// as a 3×3-patch tower gives nine visual tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextBlock {
    /// `top_left/red_star top/empty …`: each token binds its cell with what it holds.
    #[default]
    Cells,
    /// `red_star empty_cell …`: each token is what its cell holds, shared by every cell; where
    /// it is, only by its place in the block — as a visual token is content plus a position.
    /// On the world's own scenes and one-lookup questions an LM learned the lookup from this
    /// form and not from `cells` (tests/lookup_phase.rs).
    Contents,
}

/// The questions text scenes ask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextQuestions {
    /// Every text family, each referent named by the fewest attributes that single it out
    /// (position included), counts by attribute too.
    #[default]
    All,
    /// One lookup each: the colour of the only star, the shape of the only red object, where
    /// the only star is, how many shapes there are, whether there is a red star. The lookup is
    /// learned on these and not on the full mix (tests/lookup_phase.rs).
    OneLookup,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig::for_scale(Scale::Tiny)
    }
}

/// Named sizes of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Tests and smoke runs: a few hundred records, well under a second.
    Test,
    /// The quickstart: trains tiny models on a laptop in minutes.
    Tiny,
    /// A mini study: enough data for fusion differences to show.
    Small,
    /// Longer runs, still CPU-generated in about a minute.
    Medium,
}

impl Scale {
    pub const ALL: [Scale; 4] = [Scale::Test, Scale::Tiny, Scale::Small, Scale::Medium];

    pub fn name(self) -> &'static str {
        match self {
            Scale::Test => "test",
            Scale::Tiny => "tiny",
            Scale::Small => "small",
            Scale::Medium => "medium",
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scale::ALL
            .into_iter()
            .find(|scale| scale.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scale `{s}`; expected one of: {}",
                    Scale::ALL.map(|s| s.name()).join(", ")
                )
            })
    }
}

impl SynthConfig {
    /// The preset for `scale` (seed 0, 64-pixel images).
    pub fn for_scale(scale: Scale) -> Self {
        let (n_pretrain, n_finetune, n_per_benchmark, n_text) = match scale {
            Scale::Test => (48, 48, 24, 64),
            Scale::Tiny => (2_000, 2_000, 240, 20_000),
            Scale::Small => (20_000, 20_000, 1_000, 50_000),
            Scale::Medium => (100_000, 100_000, 3_000, 100_000),
        };
        SynthConfig {
            seed: 0,
            image_size: 64,
            n_pretrain,
            n_finetune,
            n_per_benchmark,
            max_objects: 5,
            text_percent: 30,
            occlusion_percent: 12,
            text_only_percent: 3,
            max_turns: 3,
            n_text,
            text_turns: 4,
            n_text_heldout: if scale == Scale::Test { 30 } else { 600 },
            text_block: TextBlock::Cells,
            text_questions: TextQuestions::All,
        }
    }

    /// Checks ranges; the error names the field and the allowed values.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !(MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&self.image_size) {
            problems.push(format!(
                "image_size = {} is outside {MIN_IMAGE_SIZE}..={MAX_IMAGE_SIZE}",
                self.image_size
            ));
        }
        if !(2..=6).contains(&self.max_objects) {
            problems.push(format!(
                "max_objects = {} is outside 2..=6 (relations and comparisons need two objects; a 3x3 grid minus the sign row holds six)",
                self.max_objects
            ));
        }
        if !(1..=32).contains(&self.text_turns) {
            problems.push(format!(
                "text_turns = {} is outside 1..=32 (question turns per text scene)",
                self.text_turns
            ));
        }
        if !(1..=32).contains(&self.max_turns) {
            problems.push(format!(
                "max_turns = {} is outside 1..=32 (question turns per finetuning conversation)",
                self.max_turns
            ));
        }
        if self.n_per_benchmark < 12 {
            problems.push(format!(
                "n_per_benchmark = {} is below 12 (POPE needs 6 questions per image, MMBench 4 rows per question)",
                self.n_per_benchmark
            ));
        }
        for (name, value) in [
            ("text_percent", self.text_percent),
            ("occlusion_percent", self.occlusion_percent),
            ("text_only_percent", self.text_only_percent),
        ] {
            if value > 100 {
                problems.push(format!("{name} = {value} is above 100"));
            }
        }
        if self.text_percent + self.occlusion_percent > 100 {
            problems.push(format!(
                "text_percent + occlusion_percent = {} is above 100 (a scene is one or the other)",
                self.text_percent + self.occlusion_percent
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid synth config: {}", problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_a_partial_manifest_table_over_defaults() {
        let cfg: SynthConfig = toml::from_str("seed = 3\nimage_size = 96").unwrap();
        assert_eq!(cfg.seed, 3);
        assert_eq!(cfg.image_size, 96);
        assert_eq!(cfg.n_pretrain, SynthConfig::default().n_pretrain);
        cfg.validate().unwrap();
    }

    #[test]
    fn rejects_typos_and_out_of_range_values() {
        let err = toml::from_str::<SynthConfig>("n_pretrian = 5").unwrap_err();
        assert!(err.to_string().contains("n_pretrian"), "{err}");
        let cfg = SynthConfig {
            image_size: 16,
            ..SynthConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("image_size = 16"), "{err}");
    }

    #[test]
    fn scales_parse_by_name() {
        assert_eq!("small".parse::<Scale>().unwrap(), Scale::Small);
        assert!("huge".parse::<Scale>().unwrap_err().contains("tiny"));
    }
}
