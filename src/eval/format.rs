//! The local benchmark format `mmeval-jsonl/1` (eval.md §6): one directory per benchmark,
//!
//! ```text
//! <dir>/manifest.json     what the benchmark is, how to generate, which scorer, what to report
//! <dir>/data.jsonl        one sample per line (id, images, prompt, answer, …)
//! <dir>/images/<hash>.<ext>   original encoded image bytes, stored once per content hash
//! ```
//!
//! This is a public contract: a directory written by hand or by another tool (for example
//! `scripts/export_lmms_task.py`) loads and scores as long as it follows the rules checked here.
//! Every check fails with the file, the line, the field and what was expected.

use crate::eval::scorers;
use crate::eval::sha256;
use anyhow::{bail, Context, Result};
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// The only format id this loader understands.
pub const FORMAT_ID: &str = "mmeval-jsonl/1";

/// `manifest.json` of a benchmark directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchmarkManifest {
    /// Must be [`FORMAT_ID`].
    pub format: String,
    /// Task name; keep it equal to the lmms-eval task name (`gqa`, `mme`, `pope_adv`, …).
    pub task: String,
    /// Where the data came from (HF dataset, config, split, revisions). Kept verbatim.
    #[serde(default)]
    pub source: Map<String, Value>,
    /// Number of records in `data.jsonl`; checked on load.
    pub count: usize,
    /// Which prompt kwargs produced `prompt` (e.g. `lmms-eval/default`).
    #[serde(default)]
    pub prompt_profile: Option<String>,
    /// Decoding settings.
    pub generation: GenerationSpec,
    /// Scorer name, one of [`scorers::SCORER_NAMES`].
    pub scorer: String,
    /// `head-2026-08` (default) or `classic-v0.4` where the scorer differs between versions.
    #[serde(default)]
    pub scorer_version: Option<String>,
    /// Informational list of aggregations (`[{"name": "exact_match", "fn": "mean"}]`).
    #[serde(default)]
    pub aggregates: Vec<Value>,
    /// Which metric the study reports for this benchmark, and how to scale it for tables. Left
    /// out, it is the scorer's default ([`scorers::Scorer::default_report`]: its lmms-eval
    /// headline metric, scaled to 0–100), so a benchmark written by another tool loads.
    #[serde(default = "ReportSpec::unset")]
    pub report: ReportSpec,
    /// Hex SHA-256 of `data.jsonl`; verified on load when present.
    #[serde(default)]
    pub sha256_data: Option<String>,
    /// Scorer-specific switches (e.g. `{"normalize": "punct_digit"}` for `vqa_acc`). Written
    /// only when set, and last: key order means nothing to readers, and this is where the
    /// synthetic world's manifests have always had it, so they stay byte-identical.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub scorer_options: Map<String, Value>,
}

/// `generation` block of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationSpec {
    /// Token budget per answer (lmms-eval's per-task `max_new_tokens`).
    pub max_new_tokens: usize,
    /// Greedy decoding; the only mode lmms-eval uses for these tasks.
    #[serde(default = "default_true")]
    pub greedy: bool,
}

fn default_true() -> bool {
    true
}

/// `report` block of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportSpec {
    /// The primary metric, one of the scorer's metric names.
    pub primary: String,
    /// Multiply the primary metric by this for tables (100 for fractions, 1 for MME sums).
    /// Whole numbers are written as integers (`"scale": 100`), as the format's examples are.
    #[serde(default = "default_scale", serialize_with = "whole_as_integer")]
    pub scale: f64,
}

fn default_scale() -> f64 {
    1.0
}

impl ReportSpec {
    /// The marker of a manifest that has no `report` (a NaN scale, which JSON cannot write):
    /// [`Benchmark::load`] replaces it with the scorer's default.
    fn unset() -> ReportSpec {
        ReportSpec {
            primary: String::new(),
            scale: f64::NAN,
        }
    }

    fn is_unset(&self) -> bool {
        self.primary.is_empty() && self.scale.is_nan()
    }
}

/// Serialises a float with no fractional part (and within ±2^53, where that is exact) as an
/// integer, anything else as the float.
fn whole_as_integer<S: serde::Serializer>(x: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if x.fract() == 0.0 && x.abs() <= EXACT {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

/// One record of `data.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Row index in `data.jsonl` (0-based); equals lmms-eval's `doc_id` for a full export.
    #[serde(skip)]
    pub index: usize,
    /// Unique, stable id within the task (numbers are kept as their decimal text).
    pub id: String,
    /// Image paths relative to the benchmark directory, in lmms-eval `doc_to_visual` order.
    pub images: Vec<String>,
    /// The exact context string lmms-eval's `doc_to_text` produces (no image token, no template).
    pub prompt: String,
    /// Canonical target: an option letter, `yes`/`no`, or a string.
    pub answer: String,
    /// All references when there are several (VQA's 10 answers, DocVQA, OCRBench).
    pub answers: Option<Vec<String>>,
    /// The raw question, for reference and re-prompting.
    pub question: Option<String>,
    /// Option texts; letters A, B, C… are implied by position.
    pub options: Option<Vec<String>>,
    /// Grouping for pairwise/circular metrics (MME image, MMBench index % 1e6, MMVP pair).
    pub group: Option<String>,
    /// MME category, MMStar category, MMMU subject, OCRBench question type, …
    pub category: Option<String>,
    /// MMStar L2 category, MMBench L2 category, …
    pub subcategory: Option<String>,
    /// POPE adversarial|popular|random, ChartQA human|augmented, SEED image|video, CV-Bench source.
    pub subset: Option<String>,
    /// MMMU `multiple-choice`|`open`; OCRBench source dataset.
    pub qtype: Option<String>,
    /// Everything else, kept verbatim.
    pub meta: Map<String, Value>,
}

impl Sample {
    /// A sample with the required fields; the optional ones empty (for writers).
    pub fn new(id: String, images: Vec<String>, prompt: String, answer: String) -> Sample {
        Sample {
            index: 0,
            id,
            images,
            prompt,
            answer,
            answers: None,
            question: None,
            options: None,
            group: None,
            category: None,
            subcategory: None,
            subset: None,
            qtype: None,
            meta: Map::new(),
        }
    }

    /// The references to score against: `answers` when given, else `[answer]`.
    pub fn references(&self) -> Vec<&str> {
        match &self.answers {
            Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
            _ => vec![self.answer.as_str()],
        }
    }

    /// Option letters implied by `options` (`A`, `B`, …).
    pub fn option_letters(&self) -> Vec<String> {
        let n = self.options.as_ref().map_or(0, Vec::len);
        (0..n)
            .map(|i| ((b'A' + i as u8) as char).to_string())
            .collect()
    }
}

/// A loaded, validated benchmark directory.
#[derive(Debug, Clone)]
pub struct Benchmark {
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// Parsed `manifest.json`.
    pub manifest: BenchmarkManifest,
    /// Records of `data.jsonl`, in file order.
    pub samples: Vec<Sample>,
    /// blake3 of `data.jsonl`, used to tie a prediction cache to exactly this data.
    pub data_digest: String,
}

impl Benchmark {
    /// Load and validate `dir/manifest.json` and `dir/data.jsonl`; checks that every image file
    /// exists (images are decoded later, one sample at a time).
    pub fn load(dir: &Path) -> Result<Benchmark> {
        let manifest_path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path).with_context(|| {
            format!(
                "cannot read {} (a benchmark directory needs manifest.json, data.jsonl and images/)",
                manifest_path.display()
            )
        })?;
        let mut manifest: BenchmarkManifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid manifest", manifest_path.display()))?;
        default_report(&mut manifest, &manifest_path)?;
        validate_manifest(&manifest, &manifest_path)?;

        let data_path = dir.join("data.jsonl");
        let bytes = std::fs::read(&data_path)
            .with_context(|| format!("cannot read {}", data_path.display()))?;
        if let Some(want) = &manifest.sha256_data {
            let got = sha256::hex_digest(&bytes);
            if !got.eq_ignore_ascii_case(want.trim()) {
                bail!(
                    "{}: sha256 is {got} but manifest.json says sha256_data = {want}; the data was \
                     changed after export (re-export it, or fix/remove sha256_data)",
                    data_path.display()
                );
            }
        }
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{}: not valid UTF-8", data_path.display()))?;
        let mut samples = Vec::new();
        let mut seen = HashSet::new();
        let mut checked_images: HashSet<String> = HashSet::new();
        for (lineno, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let where_ = format!("{} line {}", data_path.display(), lineno + 1);
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{where_}: not a JSON object"))?;
            let mut sample = parse_sample(&value, &where_)?;
            sample.index = samples.len();
            for image in &sample.images {
                // Images are shared (POPE: 9000 questions, 500 images): check each file once.
                if !checked_images.contains(image.as_str()) {
                    check_image_path(dir, image)
                        .with_context(|| format!("{where_}: field `images`"))?;
                    checked_images.insert(image.clone());
                }
            }
            if !seen.insert(sample.id.clone()) {
                bail!(
                    "{where_}: field `id`: duplicate id {:?}; ids must be unique within a task",
                    sample.id
                );
            }
            samples.push(sample);
        }
        if samples.len() != manifest.count {
            bail!(
                "{}: manifest.json says count = {} but data.jsonl has {} records",
                dir.display(),
                manifest.count,
                samples.len()
            );
        }
        let data_digest = blake3::hash(text.as_bytes()).to_hex().to_string();
        Ok(Benchmark {
            dir: dir.to_path_buf(),
            manifest,
            samples,
            data_digest,
        })
    }

    /// Decode a sample's images as RGB, like PIL `.convert("RGB")` (alpha dropped without
    /// compositing, grayscale and palette expanded).
    pub fn load_images(&self, sample: &Sample) -> Result<Vec<DynamicImage>> {
        sample
            .images
            .iter()
            .map(|rel| load_rgb(&self.dir.join(rel)))
            .collect()
    }

    /// The scorer the manifest names, configured by `scorer_version` / `scorer_options`.
    pub fn scorer(&self) -> Result<Box<dyn scorers::Scorer>> {
        scorers::build(&self.manifest)
    }

    /// A content key of everything generation depends on: the data (prompts, image names, which
    /// are content hashes), the token budget and the prompt profile. The scorer is deliberately
    /// left out: changing it re-scores cached predictions instead of regenerating them.
    pub fn generation_key(&self) -> String {
        let g = &self.manifest.generation;
        let pre = serde_json::json!({
            "format": self.manifest.format,
            "data_blake3": self.data_digest,
            "max_new_tokens": g.max_new_tokens,
            "greedy": g.greedy,
            "prompt_profile": self.manifest.prompt_profile,
        });
        blake3::hash(pre.to_string().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// Decode an image file to 8-bit RGB the way PIL's `.convert("RGB")` does.
pub fn load_rgb(path: &Path) -> Result<DynamicImage> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?
        .decode()
        .with_context(|| {
            format!(
                "cannot decode image {} (PNG and JPEG are supported)",
                path.display()
            )
        })?;
    Ok(DynamicImage::ImageRgb8(to_rgb8_like_pil(img)))
}

/// PIL `.convert("RGB")` semantics for every layout the PNG/JPEG decoders produce.
fn to_rgb8_like_pil(img: DynamicImage) -> image::RgbImage {
    use image::{ImageBuffer, Rgb};
    let (w, h) = (img.width(), img.height());
    let gray = |v: u8| Rgb([v, v, v]);
    match img {
        // PIL opens 16-bit grayscale as mode "I;16" and clamps to 255 when converting to RGB.
        DynamicImage::ImageLuma16(b) => {
            ImageBuffer::from_fn(w, h, |x, y| gray(b.get_pixel(x, y)[0].min(255) as u8))
        }
        // 16-bit LA/RGB/RGBA open as 8-bit modes holding the high byte of each sample.
        DynamicImage::ImageLumaA16(b) => {
            ImageBuffer::from_fn(w, h, |x, y| gray((b.get_pixel(x, y)[0] >> 8) as u8))
        }
        DynamicImage::ImageRgb16(b) => ImageBuffer::from_fn(w, h, |x, y| {
            let p = b.get_pixel(x, y);
            Rgb([(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
        }),
        DynamicImage::ImageRgba16(b) => ImageBuffer::from_fn(w, h, |x, y| {
            let p = b.get_pixel(x, y);
            Rgb([(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
        }),
        // 8-bit: to_rgb8 drops alpha without blending and replicates luma, as PIL does for RGBA,
        // LA and L (palette images arrive already expanded by the decoder).
        other => other.to_rgb8(),
    }
}

/// Fills a manifest's missing `report` from its scorer's default.
fn default_report(m: &mut BenchmarkManifest, path: &Path) -> Result<()> {
    if m.report.is_unset() {
        let scorer =
            scorers::build(m).with_context(|| format!("{}: field `scorer`", path.display()))?;
        let (primary, scale) = scorer.default_report();
        m.report = ReportSpec {
            primary: primary.to_string(),
            scale,
        };
    }
    Ok(())
}

fn validate_manifest(m: &BenchmarkManifest, path: &Path) -> Result<()> {
    let p = path.display();
    if m.format != FORMAT_ID {
        bail!(
            "{p}: field `format`: expected \"{FORMAT_ID}\", found {:?}",
            m.format
        );
    }
    if m.task.trim().is_empty() {
        bail!("{p}: field `task`: expected a non-empty task name");
    }
    if m.generation.max_new_tokens == 0 {
        bail!("{p}: field `generation.max_new_tokens`: expected a positive number of tokens");
    }
    let scorer = scorers::build(m).with_context(|| format!("{p}: field `scorer`"))?;
    if !scorer.metric_names().contains(&m.report.primary.as_str()) {
        bail!(
            "{p}: field `report.primary`: {:?} is not a metric of scorer `{}`; expected one of {:?}",
            m.report.primary,
            m.scorer,
            scorer.metric_names()
        );
    }
    if !(m.report.scale.is_finite() && m.report.scale > 0.0) {
        bail!(
            "{p}: field `report.scale`: expected a positive number, found {}",
            m.report.scale
        );
    }
    Ok(())
}

fn check_image_path(dir: &Path, rel: &str) -> Result<()> {
    let path = Path::new(rel);
    let inside = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if rel.is_empty() || !inside {
        bail!("{rel:?} must be a relative path inside the benchmark directory (like images/<hash>.jpg)");
    }
    let full = dir.join(path);
    if !full.is_file() {
        bail!("image {} does not exist", full.display());
    }
    Ok(())
}

fn parse_sample(v: &Value, where_: &str) -> Result<Sample> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("{where_}: expected a JSON object, found {}", kind(v)))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        other => bail!(
            "{where_}: field `id`: expected a non-empty string or a number, found {}",
            opt_kind(other)
        ),
    };
    let images = match obj.get("images") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{where_}: field `images`: expected strings, found {}",
                        kind(x)
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?,
        other => bail!(
            "{where_}: field `images`: expected a list of image paths (may be empty), found {}",
            opt_kind(other)
        ),
    };
    let prompt = req_string(obj, "prompt", where_)?;
    let answer = req_string(obj, "answer", where_)?;
    let meta = match obj.get("meta") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => bail!(
            "{where_}: field `meta`: expected an object, found {}",
            kind(other)
        ),
    };
    Ok(Sample {
        index: 0,
        id,
        images,
        prompt,
        answer,
        answers: opt_string_list(obj, "answers", where_)?,
        question: opt_string(obj, "question", where_)?,
        options: opt_string_list(obj, "options", where_)?,
        group: opt_string_or_number(obj, "group", where_)?,
        category: opt_string(obj, "category", where_)?,
        subcategory: opt_string(obj, "subcategory", where_)?,
        subset: opt_string(obj, "subset", where_)?,
        qtype: opt_string(obj, "qtype", where_)?,
        meta,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn opt_kind(v: Option<&Value>) -> &'static str {
    v.map_or("nothing (field missing)", kind)
}

fn req_string(obj: &Map<String, Value>, field: &str, where_: &str) -> Result<String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => bail!(
            "{where_}: field `{field}`: expected a string, found {}",
            opt_kind(other)
        ),
    }
}

fn opt_string(obj: &Map<String, Value>, field: &str, where_: &str) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!(
            "{where_}: field `{field}`: expected a string or null, found {}",
            kind(other)
        ),
    }
}

fn opt_string_or_number(
    obj: &Map<String, Value>,
    field: &str,
    where_: &str,
) -> Result<Option<String>> {
    match obj.get(field) {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        _ => opt_string(obj, field, where_),
    }
}

fn opt_string_list(
    obj: &Map<String, Value>,
    field: &str,
    where_: &str,
) -> Result<Option<Vec<String>>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                other => bail!("{where_}: field `{field}`: expected a list of strings, found an item that is {}", kind(other)),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(other) => bail!("{where_}: field `{field}`: expected a list of strings or null, found {}", kind(other)),
    }
}

/// Writes a benchmark directory in this format (for generators such as the synthetic world):
/// images stored once under `images/<sha256[:16]>.<ext>`, `data.jsonl`, and a manifest whose
/// `count` and `sha256_data` are filled in. Everything is written into a temporary sibling
/// directory and renamed into place by [`BenchmarkWriter::finish`], which then loads and validates
/// the result, so a half-written benchmark never exists under the final name.
pub struct BenchmarkWriter {
    final_dir: PathBuf,
    tmp: tempfile::TempDir,
    manifest: BenchmarkManifest,
    data: String,
    ids: HashSet<String>,
}

impl BenchmarkWriter {
    /// Start a benchmark that will live at `dir` (replaced if it exists).
    pub fn new(dir: &Path, manifest: BenchmarkManifest) -> Result<Self> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".benchmark-")
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "cannot create a temporary directory in {}",
                    parent.display()
                )
            })?;
        std::fs::create_dir_all(tmp.path().join("images"))?;
        Ok(BenchmarkWriter {
            final_dir: dir.to_path_buf(),
            tmp,
            manifest,
            data: String::new(),
            ids: HashSet::new(),
        })
    }

    /// Store encoded image bytes (PNG or JPEG) once; returns the path to put in `Sample::images`.
    pub fn add_image_bytes(&mut self, bytes: &[u8], ext: &str) -> Result<String> {
        if !matches!(ext, "png" | "jpg" | "jpeg") {
            bail!("image extension {ext:?}: the loader reads png and jpg/jpeg");
        }
        let name = format!("images/{}.{ext}", &sha256::hex_digest(bytes)[..16]);
        let path = self.tmp.path().join(&name);
        if !path.exists() {
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(name)
    }

    /// Store an image as PNG (lossless, so it loads back to the same RGB pixels).
    pub fn add_image(&mut self, img: &DynamicImage) -> Result<String> {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png)
            .context("cannot encode PNG")?;
        self.add_image_bytes(&buf.into_inner(), "png")
    }

    /// Append one sample (its `index` is ignored; file order is the order of `push`).
    pub fn push(&mut self, sample: &Sample) -> Result<()> {
        if !self.ids.insert(sample.id.clone()) {
            bail!("duplicate sample id {:?}", sample.id);
        }
        self.data.push_str(&serde_json::to_string(sample)?);
        self.data.push('\n');
        Ok(())
    }

    /// Write data.jsonl and manifest.json, move the directory into place, and load it back.
    pub fn finish(mut self) -> Result<Benchmark> {
        self.manifest.format = FORMAT_ID.to_string();
        self.manifest.count = self.ids.len();
        self.manifest.sha256_data = Some(sha256::hex_digest(self.data.as_bytes()));
        std::fs::write(self.tmp.path().join("data.jsonl"), &self.data)?;
        let manifest = serde_json::to_string_pretty(&self.manifest)? + "\n";
        std::fs::write(self.tmp.path().join("manifest.json"), manifest)?;
        let tmp = self.tmp.keep();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Temporary directories are private; a benchmark is meant to be shared.
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        }
        if self.final_dir.exists() {
            std::fs::remove_dir_all(&self.final_dir)
                .with_context(|| format!("cannot replace {}", self.final_dir.display()))?;
        }
        std::fs::rename(&tmp, &self.final_dir).with_context(|| {
            format!(
                "cannot move {} to {}",
                tmp.display(),
                self.final_dir.display()
            )
        })?;
        Benchmark::load(&self.final_dir)
    }
}
