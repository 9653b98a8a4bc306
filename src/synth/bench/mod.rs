//! Benchmarks in the local benchmark format (`mmeval-jsonl/1`, research/eval.md §6):
//!
//! ```text
//! benchmarks/<task>/manifest.json   format, task, count, prompt_profile, generation, scorer, aggregates, report
//! benchmarks/<task>/data.jsonl      one record per line: id, images, prompt, answer, answers, question,
//!                                   options, group, category, subcategory, subset, qtype, meta
//! benchmarks/<task>/images/<sha256[:16]>.png   content-addressed, each image stored once
//! ```
//!
//! Each benchmark mirrors one family of the paper's metrics (§4.2) with the scorer name of eval.md §7;
//! `meta.family` and `meta.level` ("low" / "high") say what visual evidence a record needs.

mod cvbench;
mod gqa;
mod mmbench;
mod mme;
mod pope;
mod text;

use super::config::{SynthConfig, GENERATOR_VERSION};
use super::output::encode_png;
use super::questions::Family;
use super::render::render;
use super::scene::Scene;
use crate::eval::format::{GenerationSpec, ReportSpec};
use crate::eval::{BenchmarkManifest, BenchmarkWriter, Sample};
use anyhow::Context;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::path::Path;

/// One `data.jsonl` record as the generators build it: [`crate::eval::Sample`] with the question
/// required (every synthetic record has one); written through [`BenchRecord::into_sample`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    pub id: String,
    pub images: Vec<String>,
    pub prompt: String,
    pub answer: String,
    pub answers: Option<Vec<String>>,
    pub question: String,
    pub options: Option<Vec<String>>,
    pub group: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub subset: Option<String>,
    pub qtype: Option<String>,
    pub meta: Map<String, Value>,
}

impl BenchRecord {
    /// A record with the required fields; optional ones start empty.
    pub fn new(id: String, prompt: String, question: String, answer: String) -> Self {
        BenchRecord {
            id,
            images: Vec::new(),
            prompt,
            answer,
            answers: None,
            question,
            options: None,
            group: None,
            category: None,
            subcategory: None,
            subset: None,
            qtype: None,
            meta: Map::new(),
        }
    }

    /// The record as the evaluation format's [`Sample`] (same fields, same JSON).
    pub fn into_sample(self) -> Sample {
        Sample {
            index: 0,
            id: self.id,
            images: self.images,
            prompt: self.prompt,
            answer: self.answer,
            answers: self.answers,
            question: Some(self.question),
            options: self.options,
            group: self.group,
            category: self.category,
            subcategory: self.subcategory,
            subset: self.subset,
            qtype: self.qtype,
            meta: self.meta,
        }
    }

    /// Records which question family and feature level this record probes.
    pub fn with_family(mut self, family: Family) -> Self {
        self.meta.insert("family".into(), family.name().into());
        self.meta
            .insert("level".into(), family.level().name().into());
        self
    }
}

/// One image and the records asked about it.
pub struct Unit {
    pub scene: Scene,
    pub records: Vec<BenchRecord>,
}

/// The benchmarks the world ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Benchmark {
    Gqa,
    Pope,
    Mme,
    MmBench,
    CvBench2d,
    CvBench3d,
    TextVqa,
    OcrBench,
}

/// How a benchmark is named, scored and reported.
pub struct BenchSpec {
    /// Task (and directory) name.
    pub task: &'static str,
    /// The lmms-eval task it imitates.
    pub mirrors: &'static str,
    pub scorer: &'static str,
    pub scorer_options: Option<Value>,
    /// (metric name, aggregation).
    pub aggregates: &'static [(&'static str, &'static str)],
    pub primary: &'static str,
    /// Multiplier to the table's 0–100 scale, so that the paper's Avg is a plain row mean.
    pub scale: f64,
    pub max_new_tokens: u32,
    /// Records per image unit (rows written per call of the builder).
    pub records_per_unit: usize,
}

impl Benchmark {
    pub const ALL: [Benchmark; 8] = [
        Benchmark::Gqa,
        Benchmark::Pope,
        Benchmark::Mme,
        Benchmark::MmBench,
        Benchmark::CvBench2d,
        Benchmark::CvBench3d,
        Benchmark::TextVqa,
        Benchmark::OcrBench,
    ];

    /// Naming, scoring and reporting. Short answers everywhere, so generation is capped well below
    /// lmms-eval's defaults (which allow long free-form answers).
    pub fn spec(self) -> BenchSpec {
        match self {
            Benchmark::Gqa => BenchSpec {
                task: "synth_gqa",
                mirrors: "gqa",
                scorer: "exact_match_hf",
                scorer_options: None,
                aggregates: &[("exact_match", "mean")],
                primary: "exact_match",
                scale: 100.0,
                max_new_tokens: 16,
                records_per_unit: 1,
            },
            Benchmark::Pope => BenchSpec {
                task: "synth_pope",
                mirrors: "pope",
                scorer: "pope_exact",
                scorer_options: None,
                aggregates: &[
                    ("pope_accuracy", "pope"),
                    ("pope_precision", "pope"),
                    ("pope_recall", "pope"),
                    ("pope_f1_score", "pope"),
                    ("pope_yes_ratio", "pope"),
                ],
                primary: "pope_f1_score",
                scale: 100.0,
                max_new_tokens: 16,
                records_per_unit: 6,
            },
            Benchmark::Mme => BenchSpec {
                task: "synth_mme",
                mirrors: "mme",
                scorer: "mme_yesno",
                scorer_options: None,
                aggregates: &[
                    ("mme_perception_score", "mme"),
                    ("mme_cognition_score", "mme"),
                ],
                primary: "mme_perception_score",
                scale: mme::perception_scale(),
                max_new_tokens: 16,
                records_per_unit: 2,
            },
            Benchmark::MmBench => BenchSpec {
                task: "synth_mmbench",
                mirrors: "mmbench_en_dev",
                scorer: "mmbench_circular",
                scorer_options: None,
                aggregates: &[("gpt_eval_score", "group_all_correct")],
                primary: "gpt_eval_score",
                scale: 1.0,
                max_new_tokens: 16,
                records_per_unit: 4,
            },
            Benchmark::CvBench2d => BenchSpec {
                task: "synth_cvbench_2d",
                mirrors: "cv_bench_2d",
                scorer: "cvbench_letter",
                scorer_options: None,
                aggregates: &[("cv_bench_acc", "mean")],
                primary: "cv_bench_acc",
                scale: 100.0,
                max_new_tokens: 16,
                records_per_unit: 1,
            },
            Benchmark::CvBench3d => BenchSpec {
                task: "synth_cvbench_3d",
                mirrors: "cv_bench_3d",
                scorer: "cvbench_letter",
                scorer_options: None,
                aggregates: &[("cv_bench_acc", "mean")],
                primary: "cv_bench_acc",
                scale: 100.0,
                max_new_tokens: 16,
                records_per_unit: 1,
            },
            Benchmark::TextVqa => BenchSpec {
                task: "synth_textvqa",
                mirrors: "textvqa_val",
                scorer: "vqa_acc",
                scorer_options: Some(json!({"normalize": "evalai_full"})),
                aggregates: &[("exact_match", "mean")],
                primary: "exact_match",
                scale: 100.0,
                max_new_tokens: 16,
                records_per_unit: 1,
            },
            Benchmark::OcrBench => BenchSpec {
                task: "synth_ocrbench",
                mirrors: "ocrbench",
                scorer: "ocrbench_contains",
                scorer_options: None,
                // The real OCRBench reports a count out of its 1000 questions (lmms-eval's
                // `ocrbench_accuracy` is that count ÷ 1000), which the paper's Avg divides by 10.
                // This set has N questions, so the comparable number is the mean per question × 100.
                aggregates: &[("ocrbench_mean", "mean")],
                primary: "ocrbench_mean",
                scale: 100.0,
                max_new_tokens: 32,
                records_per_unit: 1,
            },
        }
    }

    /// Finds a benchmark by its task name (`synth_pope`), its short name (`pope`, `cvbench_2d`) or
    /// the lmms-eval task it mirrors (`pope`, `cv_bench_2d`, `textvqa_val`).
    pub fn from_name(name: &str) -> Option<Benchmark> {
        Benchmark::ALL.into_iter().find(|b| {
            let spec = b.spec();
            name == spec.task
                || Some(name) == spec.task.strip_prefix("synth_")
                || name == spec.mirrors
        })
    }

    /// Number of image units for a target record count.
    pub fn units(self, n_records: usize) -> usize {
        n_records.div_ceil(self.spec().records_per_unit).max(1)
    }

    /// Builds unit `index` (its own random stream: `bench/<task>`).
    fn unit(self, cfg: &SynthConfig, index: usize) -> anyhow::Result<Unit> {
        let stream = format!("bench/{}", self.spec().task);
        let mut rng = super::rng::item_rng(cfg.seed, &stream, index as u64);
        let unit = match self {
            Benchmark::Gqa => gqa::unit(cfg, index, &mut rng),
            Benchmark::Pope => pope::unit(cfg, index, &mut rng),
            Benchmark::Mme => mme::unit(cfg, index, &mut rng),
            Benchmark::MmBench => mmbench::unit(cfg, index, &mut rng),
            Benchmark::CvBench2d => cvbench::unit_2d(cfg, index, &mut rng),
            Benchmark::CvBench3d => cvbench::unit_3d(cfg, index, &mut rng),
            Benchmark::TextVqa => text::textvqa_unit(cfg, index, &mut rng),
            Benchmark::OcrBench => text::ocrbench_unit(cfg, index, &mut rng),
        };
        unit.with_context(|| format!("building {} unit {index}", self.spec().task))
    }
}

/// What one written benchmark holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchSummary {
    pub task: String,
    /// Relative to the world root.
    pub dir: String,
    pub records: usize,
    pub images: usize,
}

/// Retries a scene-dependent builder on fresh scenes until it yields (some scenes cannot carry a
/// question: no two objects for a relation, no differing counts for a comparison, ...).
pub(crate) fn retry<T>(mut attempt: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    for _ in 0..200 {
        if let Some(v) = attempt() {
            return Ok(v);
        }
    }
    anyhow::bail!("no scene supported the question after 200 attempts (a generator bug)")
}

/// Generates benchmark `bench` under `root/benchmarks/<task>/` with the evaluation engine's own
/// [`BenchmarkWriter`], so the world's benchmarks are written (content-addressed images,
/// `data.jsonl`, `count` and `sha256_data`) and validated by the code that reads them.
pub fn write_benchmark(
    root: &Path,
    cfg: &SynthConfig,
    bench: Benchmark,
) -> anyhow::Result<BenchSummary> {
    let spec = bench.spec();
    let rel_dir = format!("benchmarks/{}", spec.task);
    let dir = root.join(&rel_dir);
    let n_units = bench.units(cfg.n_per_benchmark);
    let rendered: Vec<(Vec<u8>, Vec<BenchRecord>)> = (0..n_units)
        .into_par_iter()
        .map(|i| {
            let unit = bench.unit(cfg, i)?;
            let png = encode_png(&render(&unit.scene, cfg.image_size))?;
            Ok((png, unit.records))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut writer = BenchmarkWriter::new(&dir, manifest(cfg, &spec))?;
    let mut images: HashSet<String> = HashSet::new();
    let mut records = 0;
    for (png, unit_records) in rendered {
        let name = writer.add_image_bytes(&png, "png")?;
        images.insert(name.clone());
        for mut r in unit_records {
            r.images = vec![name.clone()];
            r.meta.insert("mirrors".into(), spec.mirrors.into());
            writer
                .push(&r.into_sample())
                .with_context(|| format!("{} (a generator bug)", spec.task))?;
            records += 1;
        }
    }
    writer
        .finish()
        .with_context(|| format!("writing {}", dir.display()))?;
    Ok(BenchSummary {
        task: spec.task.into(),
        dir: rel_dir,
        records,
        images: images.len(),
    })
}

/// The benchmark's `manifest.json` (the writer fills in `format`, `count` and `sha256_data`).
fn manifest(cfg: &SynthConfig, spec: &BenchSpec) -> BenchmarkManifest {
    let source = json!({
        "generator": GENERATOR_VERSION,
        "mirrors": spec.mirrors,
        "seed": cfg.seed,
        "image_size": cfg.image_size,
        "stream": format!("bench/{}", spec.task),
    });
    BenchmarkManifest {
        format: crate::eval::format::FORMAT_ID.into(),
        task: spec.task.into(),
        source: match source {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        },
        count: 0,
        prompt_profile: Some("lmms-eval/default".into()),
        generation: GenerationSpec {
            max_new_tokens: spec.max_new_tokens as usize,
            greedy: true,
        },
        scorer: spec.scorer.into(),
        scorer_version: Some("head-2026-08".into()),
        aggregates: spec
            .aggregates
            .iter()
            .map(|(name, f)| json!({"name": name, "fn": f}))
            .collect(),
        report: ReportSpec {
            primary: spec.primary.into(),
            scale: spec.scale,
        },
        sha256_data: None,
        scorer_options: match &spec.scorer_options {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmarks_are_found_by_task_short_and_mirrored_names() {
        assert_eq!(Benchmark::from_name("synth_pope"), Some(Benchmark::Pope));
        assert_eq!(
            Benchmark::from_name("cvbench_2d"),
            Some(Benchmark::CvBench2d)
        );
        assert_eq!(
            Benchmark::from_name("cv_bench_3d"),
            Some(Benchmark::CvBench3d)
        );
        assert_eq!(
            Benchmark::from_name("textvqa_val"),
            Some(Benchmark::TextVqa)
        );
        assert_eq!(Benchmark::from_name("mmbench"), Some(Benchmark::MmBench));
        assert_eq!(Benchmark::from_name("vqav2"), None);
        let tasks: HashSet<&str> = Benchmark::ALL.iter().map(|b| b.spec().task).collect();
        assert_eq!(tasks.len(), Benchmark::ALL.len());
    }

    #[test]
    fn unit_counts_round_up_to_whole_images() {
        assert_eq!(Benchmark::Pope.units(240), 40);
        assert_eq!(Benchmark::Pope.units(241), 41);
        assert_eq!(Benchmark::MmBench.units(10), 3);
        assert_eq!(Benchmark::Gqa.units(7), 7);
    }
}
