//! The offline world: synthetic images, captions, instructions and benchmarks, so that the whole
//! study runs on a laptop with no downloads.
//!
//! # The world
//!
//! A scene (`scene`) is a noisy background with one to six objects on a 3×3 grid. An object has a
//! **shape** (circle, square, triangle, star, cross, diamond), a **colour** from a named palette of
//! eight, a **size** (small, large), a **texture** (solid, striped, dotted, checkered) and a **cell**
//! (top left … bottom right). Some scenes carry a **sign**: a light rectangle with black 8×8-pixel
//! glyphs (a word, a digit string, random letters or a sum such as `3+4`). Some scenes instead show
//! two **overlapping** objects, one partly hiding the other. Shapes, colours and textures are drawn
//! uniformly (world 4; earlier worlds skewed them, which let a model score by guessing the common
//! answer), so POPE's subsets are graded by how near a miss the absent object is (`bench::pope`).
//!
//! Every question is computed from the scene, never from pixels, so answers are right by
//! construction; referring expressions (`language::refer`) always name exactly one object and never
//! give away the attribute asked about.
//!
//! # What each question family needs
//!
//! | family | example | evidence |
//! |---|---|---|
//! | color | What color is the star? | low-level: pixel colour |
//! | texture | What pattern does the red square have? | low-level: 2–4 px stripes, dots, checks |
//! | size | Is the blue circle small or large? | low-level: extent |
//! | position | Where is the cross in the image? | low-level: exact cell |
//! | text | What does the yellow sign say? | low-level: 8 px glyphs (finest detail) |
//! | shape | What shape is the green object? | high-level: outline identity |
//! | count | How many stars are there? | high-level: instances across the image |
//! | relation | Is the star to the left or to the right of the circle? | high-level: composition |
//! | existence | Is there a pink diamond in the image? | high-level: binding colour to shape |
//! | depth | Which object is closer to the camera? | high-level: occlusion order |
//! | arithmetic | What is the result of the sum on the sign? | reading, then reasoning |
//! | compare | Are there more circles or more squares? | counting, then reasoning |
//!
//! The paper (§4.5) finds that early vision layers carry low-level detail and middle/late layers
//! composition; every benchmark record carries `meta.family` and `meta.level` so results can be
//! split along that line.
//!
//! # Files
//!
//! ```text
//! <out>/world.json                         what was generated: config, version, counts, paths (written last)
//! <out>/pretrain/captions.json             LLaVA JSON, one short caption per image (LLaVA-558k style)
//! <out>/pretrain/cells.json               what each grid cell of each caption image shows (cells::SceneCells)
//! <out>/pretrain/images/pt000000.png
//! <out>/finetune/instructions.json         LLaVA JSON, 1–3 QA turns per image + a few text-only records
//! <out>/finetune/images/ft000000.png
//! <out>/benchmarks/<task>/{manifest.json,data.jsonl,images/<sha256[:16]>.png}   mmeval-jsonl/1
//! <out>/corpus.txt                         all training text, for training the tiny LLM's tokenizer
//! <out>/text/train.json                    LLaVA JSON, no images: scenes written as cell tokens + questions (scene_text)
//! <out>/text/captions.json                 scene blocks with the captions their images would get
//! <out>/text/heldout.jsonl                 held-out text questions the LM's lookup is scored on
//! ```
//!
//! Benchmarks: `synth_gqa` (exact_match_hf), `synth_pope` (pope_exact; subsets adversarial, popular,
//! random), `synth_mme` (mme_yesno; perception and cognition categories), `synth_mmbench`
//! (mmbench_circular), `synth_cvbench_2d` / `synth_cvbench_3d` (cvbench_letter), `synth_textvqa`
//! (vqa_acc) and `synth_ocrbench` (ocrbench_contains).
//!
//! # Guarantees
//!
//! - Deterministic: each item draws from its own ChaCha8 stream seeded by (seed, split, index), so
//!   the same config gives byte-identical files whatever the thread count.
//! - Disjoint: pretrain, finetune and every benchmark use different streams; no image is shared.
//! - Atomic: the world is written to a sibling staging directory (`.<name>.partial-<pid>`) and
//!   renamed into place when complete, `world.json` last. A failed run removes its staging
//!   directory; a killed one leaves only that hidden directory, never a half-written `<out>`.

pub mod bench;
pub mod cells;
pub mod config;
pub mod foundation;
pub mod geometry;
pub mod language;
pub mod llava;
pub mod output;
pub mod prompts;
pub mod questions;
pub mod render;
pub mod rng;
pub mod scene;
pub mod scene_text;
pub mod sheet;
pub mod world;

pub use bench::{BenchRecord, BenchSummary, Benchmark};
pub use config::{Scale, SynthConfig, GENERATOR_VERSION};
pub use llava::{LlavaRecord, Turn};

use anyhow::Context;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `format` of `world.json`.
pub const WORLD_FORMAT: &str = "mlvf-synth-world/1";
/// The file that describes a generated world; its presence means the world is complete.
pub const WORLD_FILE: &str = "world.json";

/// A LLaVA-format training split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// LLaVA JSON, relative to the world root.
    pub json: String,
    /// Image folder the records' `image` fields are relative to (relative to the world root).
    pub images: String,
    pub records: usize,
    /// Records without an image (text-only).
    pub text_only: usize,
    /// Per-cell labels of the split's images (`cells::SceneCells`, one per record, in order),
    /// relative to the world root; written for the pretraining split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells: Option<String>,
}

/// The contents of `world.json`: what was generated, from what, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldSummary {
    pub format: String,
    pub generator: String,
    pub config: SynthConfig,
    pub pretrain: SplitSummary,
    pub finetune: SplitSummary,
    pub benchmarks: Vec<BenchSummary>,
    /// Tokenizer training text, relative to the world root.
    pub corpus: String,
    /// Text scenes for the LM (`scene_text`); absent in worlds from before `mlvf-synth/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSummary>,
}

/// Where the text scenes are: LLaVA JSON without images to train on, and held-out questions
/// (`text/heldout.jsonl`: `id`, `prompt` = the human turn, `answer`, `family`) to score on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSummary {
    /// Conversations about text scenes (rendered with the chat template).
    pub train: String,
    pub train_records: usize,
    /// Scene block → caption pairs (rendered in the `plain` template's shape).
    pub captions: String,
    pub caption_records: usize,
    pub heldout: String,
    pub heldout_records: usize,
}

/// One held-out text question, as `text/heldout.jsonl` stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldoutQuestion {
    pub id: String,
    /// The human turn: the scene block, a newline, the question with its answer-format prompt.
    pub prompt: String,
    pub answer: String,
    /// The question family (`questions::Family::name`).
    pub family: String,
}

impl HeldoutQuestion {
    /// Reads every held-out question of the world at `root` (empty for a world without text).
    pub fn load_all(root: &Path, summary: &WorldSummary) -> anyhow::Result<Vec<HeldoutQuestion>> {
        let Some(text) = &summary.text else {
            return Ok(Vec::new());
        };
        let path = root.join(&text.heldout);
        let data =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        data.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).with_context(|| {
                    format!("{}:{}: not a held-out question", path.display(), n + 1)
                })
            })
            .collect()
    }
}

/// Writes the text scenes: `text/train.json` and `text/heldout.jsonl`.
fn write_text(root: &Path, cfg: &SynthConfig) -> anyhow::Result<TextSummary> {
    let dir = root.join("text");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let train: Vec<LlavaRecord> = (0..cfg.n_text)
        .into_par_iter()
        .map(|i| scene_text::text_record(cfg, i))
        .collect();
    output::write_json_array(&dir.join("train.json"), &train)?;
    let captions: Vec<LlavaRecord> = (0..cfg.n_text / 2)
        .into_par_iter()
        .map(|i| scene_text::caption_record(cfg, i))
        .collect();
    output::write_json_array(&dir.join("captions.json"), &captions)?;
    let held: Vec<HeldoutQuestion> = (0..cfg.n_text_heldout)
        .into_par_iter()
        .map(|i| {
            let (r, family) = scene_text::heldout_record(cfg, i);
            HeldoutQuestion {
                id: r.id,
                prompt: r.conversations[0].value.clone(),
                answer: r.conversations[1].value.clone(),
                family: family.name().to_string(),
            }
        })
        .collect();
    let mut lines = String::new();
    for q in &held {
        lines.push_str(&serde_json::to_string(q)?);
        lines.push('\n');
    }
    let path = dir.join("heldout.jsonl");
    fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    Ok(TextSummary {
        train: "text/train.json".into(),
        train_records: train.len(),
        captions: "text/captions.json".into(),
        caption_records: captions.len(),
        heldout: "text/heldout.jsonl".into(),
        heldout_records: held.len(),
    })
}

impl WorldSummary {
    /// Reads `<root>/world.json`; an absent file means the world is missing or incomplete.
    pub fn load(root: &Path) -> anyhow::Result<Self> {
        let path = root.join(WORLD_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} a world written by `mlvf synth`?)",
                path.display(),
                root.display()
            )
        })?;
        let summary: WorldSummary =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            summary.format == WORLD_FORMAT,
            "{}: format is `{}`, expected `{WORLD_FORMAT}`",
            path.display(),
            summary.format
        );
        Ok(summary)
    }
}

impl WorldSummary {
    /// The directory of benchmark `name` (any name [`Benchmark::from_name`] accepts) in the world
    /// at `root`.
    pub fn benchmark_dir(&self, root: &Path, name: &str) -> Option<PathBuf> {
        let task = Benchmark::from_name(name)?.spec().task;
        self.benchmarks
            .iter()
            .find(|b| b.task == task)
            .map(|b| root.join(&b.dir))
    }
}

type RecordFn = fn(&SynthConfig, usize) -> anyhow::Result<llava::ImageRecord>;

/// Renders `n` records of a training split in parallel, writing images as they come, and the
/// LLaVA JSON at the end.
fn write_split(
    root: &Path,
    name: &str,
    json_name: &str,
    n: usize,
    cfg: &SynthConfig,
    make: RecordFn,
) -> anyhow::Result<(SplitSummary, Vec<LlavaRecord>)> {
    let images_rel = format!("{name}/images");
    let images_dir = root.join(&images_rel);
    fs::create_dir_all(&images_dir)
        .with_context(|| format!("creating {}", images_dir.display()))?;
    let items: Vec<(LlavaRecord, Option<cells::SceneCells>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let item = make(cfg, i)?;
            if let (Some(png), Some(file)) = (&item.png, &item.record.image) {
                let path = images_dir.join(file);
                fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
            }
            Ok((item.record, item.cells))
        })
        .collect::<anyhow::Result<_>>()?;
    let (records, cells): (Vec<LlavaRecord>, Vec<Option<cells::SceneCells>>) =
        items.into_iter().unzip();
    let json_rel = format!("{name}/{json_name}");
    output::write_json_array(&root.join(&json_rel), &records)?;
    let cells_rel = if cells.iter().any(Option::is_some) {
        let rel = format!("{name}/cells.json");
        let all: Vec<cells::SceneCells> = cells.into_iter().flatten().collect();
        output::write_json_array(&root.join(&rel), &all)?;
        Some(rel)
    } else {
        None
    };
    let text_only = records.iter().filter(|r| r.image.is_none()).count();
    Ok((
        SplitSummary {
            json: json_rel,
            images: images_rel,
            records: n,
            text_only,
            cells: cells_rel,
        },
        records,
    ))
}

/// Writes every turn of the training splits, one utterance after another, without the image
/// placeholder. Benchmarks are left out so no evaluation text leaks into training.
fn write_corpus(path: &Path, splits: &[&[LlavaRecord]]) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let prefix = format!("{}\n", llava::IMAGE_TOKEN);
    for split in splits {
        for record in *split {
            for turn in &record.conversations {
                let text = turn.value.strip_prefix(&prefix).unwrap_or(&turn.value);
                out.write_all(text.as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Generates the world described by `cfg` into `out` (which must not exist, or be an empty
/// directory). Runs on the current rayon pool; the output does not depend on its size.
pub fn generate(cfg: &SynthConfig, out: &Path) -> anyhow::Result<WorldSummary> {
    cfg.validate()?;
    let staging = output::Staging::new(out)?;
    let root = staging.path().to_path_buf();
    let start = std::time::Instant::now();
    let (pretrain, pt_records) = write_split(
        &root,
        "pretrain",
        "captions.json",
        cfg.n_pretrain,
        cfg,
        llava::pretrain_record,
    )?;
    let (finetune, ft_records) = write_split(
        &root,
        "finetune",
        "instructions.json",
        cfg.n_finetune,
        cfg,
        llava::finetune_record,
    )?;
    tracing::info!(
        seconds = start.elapsed().as_secs_f64(),
        "synth: pretrain and finetune splits written"
    );
    let benchmarks = Benchmark::ALL
        .iter()
        .map(|&b| bench::write_benchmark(&root, cfg, b))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tracing::info!(
        seconds = start.elapsed().as_secs_f64(),
        "synth: benchmarks written"
    );
    let corpus = "corpus.txt".to_string();
    write_corpus(&root.join(&corpus), &[&pt_records, &ft_records])?;
    let text = write_text(&root, cfg)?;
    let summary = WorldSummary {
        format: WORLD_FORMAT.into(),
        generator: GENERATOR_VERSION.into(),
        config: cfg.clone(),
        pretrain,
        finetune,
        benchmarks,
        corpus,
        text: Some(text),
    };
    output::write_pretty_json(&root.join(WORLD_FILE), &summary)?;
    staging.commit()?;
    Ok(summary)
}

/// One benchmark's first images, each with a line describing the first question asked about it
/// (for contact sheets).
pub struct Preview {
    pub task: String,
    pub items: Vec<(PathBuf, String)>,
}

/// The first `per_benchmark` distinct images of every benchmark of the world at `root`.
pub fn preview(root: &Path, per_benchmark: usize) -> anyhow::Result<Vec<Preview>> {
    let world = WorldSummary::load(root)?;
    let mut out = Vec::new();
    for b in &world.benchmarks {
        let data_path = root.join(&b.dir).join("data.jsonl");
        let data = fs::read_to_string(&data_path)
            .with_context(|| format!("reading {}", data_path.display()))?;
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::new();
        for (n, line) in data.lines().enumerate() {
            let r: BenchRecord = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a record", data_path.display(), n + 1))?;
            let Some(image) = r.images.first() else {
                continue;
            };
            if !seen.insert(image.clone()) {
                continue;
            }
            items.push((
                root.join(&b.dir).join(image),
                format!("{}: {} -> {}", r.id, r.question, r.answer),
            ));
            if items.len() == per_benchmark {
                break;
            }
        }
        out.push(Preview {
            task: b.task.clone(),
            items,
        });
    }
    Ok(out)
}
