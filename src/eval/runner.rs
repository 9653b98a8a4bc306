//! Generation: the [`Generator`] trait the MLLM implements, and [`run_benchmark`], which answers
//! every sample of a benchmark into an append-only prediction cache. Samples are answered in
//! batches of [`RunOptions::batch`] (one decode for several prompts: much faster for small
//! models); each answer is written as one line and each batch fsync'd as it completes, so an
//! interrupted run loses at most the batch in flight and a rerun resumes at the next unanswered
//! sample. Scoring is separate ([`crate::eval::scoring`]).

use crate::atomic::write_atomic;
use crate::eval::control::{Control, ControlledInputs, DEFAULT_BLANK_FILL};
use crate::eval::format::{Benchmark, Sample};
use crate::eval::output::{write_results_json, write_samples_jsonl, RunInfo};
use crate::eval::predictions::{cache_header, load_predictions};
use crate::eval::prompt::{build_prompt, TemplateKind};
use crate::eval::scoring::{score_benchmark, ScoreReport};
use anyhow::{bail, Context, Result};
use image::DynamicImage;
use serde_json::json;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// A model that answers a prompt about images (greedy decoding).
pub trait Generator {
    /// Generate up to `max_new_tokens` tokens after `prompt` and return the decoded text (special
    /// tokens skipped). `prompt` is the full conversation string from
    /// [`crate::eval::prompt::build_prompt`]; it holds one `<image>` per entry of `images`, which
    /// the model replaces by that image's visual tokens (tokenise chunk by chunk around them, as
    /// LLaVA's `tokenizer_image_token` does).
    fn generate(
        &mut self,
        images: &[DynamicImage],
        prompt: &str,
        max_new_tokens: usize,
    ) -> Result<String>;

    /// Answers several samples; element `i` of the result must be what
    /// [`Generator::generate`] returns for `requests[i]` (batching is a speed-up, never a change
    /// of answers). The default answers one request at a time.
    fn generate_batch(
        &mut self,
        requests: &[Request<'_>],
        max_new_tokens: usize,
    ) -> Result<Vec<String>> {
        requests
            .iter()
            .map(|r| self.generate(r.images, r.prompt, max_new_tokens))
            .collect()
    }

    /// The chat template this model was trained with.
    fn template(&self) -> TemplateKind {
        TemplateKind::VicunaV1
    }

    /// The colour of the `blank` grounding control's images: what this model takes for "no
    /// image content" (the MLLM: its processor's mean colour; otherwise mid grey).
    fn blank_fill(&self) -> [u8; 3] {
        DEFAULT_BLANK_FILL
    }
}

/// One sample to answer, as [`Generator::generate`] takes it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub images: &'a [DynamicImage],
    pub prompt: &'a str,
}

/// Options of [`run_benchmark`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Answer only the first N samples (lmms-eval `--limit N`).
    pub limit: Option<usize>,
    /// Override the manifest's `generation.max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    /// Override the generator's template.
    pub template: Option<TemplateKind>,
    /// Samples per [`Generator::generate_batch`] call (0 and 1: one at a time).
    pub batch: usize,
    /// Answer under a grounding control instead of with the benchmark's images
    /// ([`crate::eval::control`]); recorded in the cache header.
    pub control: Option<Control>,
}

/// What [`run_benchmark`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Samples in scope (after `limit`).
    pub total: usize,
    /// Samples that already had a cached answer.
    pub cached: usize,
    /// Samples answered by this call.
    pub generated: usize,
    /// Whether a cut-off last line from an earlier, killed run was discarded.
    pub recovered_partial_line: bool,
    /// Samples in scope that the control could not change (shuffle: no other image list with
    /// as many images); 0 without a control.
    pub control_unchanged: usize,
}

/// Answer every sample of `bench` not yet in `predictions_path` in batches of `opts.batch`,
/// appending one JSONL line per answer and fsyncing after each batch. A batch the generator
/// fails on is answered again one sample at a time (a batch too big for memory still gets
/// answered; one bad sample is named). Returns after the last sample, or with the generator's
/// error (answers written so far stay valid and are not asked again).
pub fn run_benchmark(
    generator: &mut dyn Generator,
    bench: &Benchmark,
    predictions_path: &Path,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let template = opts.template.unwrap_or_else(|| generator.template());
    let existing = load_predictions(predictions_path, bench, true)?;
    if existing.header.is_none() && !existing.by_index.is_empty() {
        bail!(
            "{} holds predictions without an mlvf cache header (an lmms-eval samples log?); \
             generate into a new file, and score this one with `mlvf score`",
            predictions_path.display()
        );
    }
    if let Some(h) = &existing.header {
        let cached = h["template"].as_str().unwrap_or("");
        if cached != template.as_str() {
            bail!(
                "{} was generated with template {cached:?}, not {:?}; use another predictions file",
                predictions_path.display(),
                template.as_str()
            );
        }
        // A cache without a `control` holds answers with the benchmark's own images.
        let cached = h.get("control").and_then(|c| c.as_str());
        if cached != opts.control.map(Control::name) {
            let show = |c: Option<&str>| {
                c.map_or("the benchmark's images".to_string(), |c| {
                    format!("control {c:?}")
                })
            };
            bail!(
                "{} holds answers under {}, not {}; use another predictions file",
                predictions_path.display(),
                show(cached),
                show(opts.control.map(Control::name))
            );
        }
    }
    if let Some(dir) = predictions_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(predictions_path)
        .with_context(|| format!("cannot open {}", predictions_path.display()))?;
    // One writer per cache: a second process appending would interleave records.
    if !fs4::fs_std::FileExt::try_lock_exclusive(&file)? {
        bail!(
            "{} is being written by another process (an eval of the same benchmark is running); \
             wait for it or use another predictions file",
            predictions_path.display()
        );
    }
    // Cut a partial last line away before appending, so it cannot glue onto the next record.
    file.set_len(existing.valid_len)?;
    file.seek(SeekFrom::End(0))?;
    if existing.header.is_none() {
        let header = format!("{}\n", cache_header(bench, template.as_str(), opts.control));
        file.write_all(header.as_bytes())?;
        file.sync_data()?;
    }

    let max_new_tokens = opts
        .max_new_tokens
        .unwrap_or(bench.manifest.generation.max_new_tokens);
    let scope = opts
        .limit
        .map_or(bench.samples.len(), |l| l.min(bench.samples.len()));
    let controlled = opts
        .control
        .map(|c| ControlledInputs::new(c, bench, generator.blank_fill()));
    let mut summary = RunSummary {
        total: scope,
        cached: 0,
        generated: 0,
        recovered_partial_line: existing.dropped_partial_line,
        control_unchanged: controlled
            .as_ref()
            .map_or(0, |c| c.unchanged(&bench.samples[..scope])),
    };
    let pending: Vec<&Sample> = bench.samples[..scope]
        .iter()
        .filter(|s| !existing.by_index.contains_key(&s.index))
        .collect();
    summary.cached = scope - pending.len();
    let started = std::time::Instant::now();
    for chunk in pending.chunks(opts.batch.max(1)) {
        let inputs = chunk
            .iter()
            .map(|s| {
                let (images, context) = match &controlled {
                    None => (bench.load_images(s), s.prompt.as_str().into()),
                    Some(c) => (c.images(bench, s), c.context(&s.prompt)),
                };
                let images = images
                    .with_context(|| format!("sample {:?} of {}", s.id, bench.manifest.task))?;
                let prompt = build_prompt(template, &context, images.len());
                Ok((images, prompt))
            })
            .collect::<Result<Vec<_>>>()?;
        let requests: Vec<Request> = inputs
            .iter()
            .map(|(images, prompt)| Request { images, prompt })
            .collect();
        let batched = if chunk.len() > 1 {
            match generator.generate_batch(&requests, max_new_tokens) {
                Ok(r) if r.len() == chunk.len() => Some(r),
                Ok(r) => bail!(
                    "the generator returned {} answers for a batch of {} samples",
                    r.len(),
                    chunk.len()
                ),
                Err(e) => {
                    // Out of memory on a big batch, or one bad sample: answer one at a time, so
                    // every answer the model can give is kept and an error names its sample.
                    tracing::warn!(task = %bench.manifest.task,
                        "a batch of {} samples failed ({e:#}); answering them one at a time",
                        chunk.len());
                    None
                }
            }
        } else {
            None
        };
        match batched {
            Some(responses) => {
                for (sample, response) in chunk.iter().zip(&responses) {
                    write_answer(&mut file, sample, response, max_new_tokens)?;
                }
                file.sync_data()?;
            }
            None => {
                for (sample, r) in chunk.iter().zip(&requests) {
                    let response = generator
                        .generate(r.images, r.prompt, max_new_tokens)
                        .with_context(|| {
                            format!(
                                "generating an answer for sample {:?} of {}",
                                sample.id, bench.manifest.task
                            )
                        })?;
                    write_answer(&mut file, sample, &response, max_new_tokens)?;
                    file.sync_data()?;
                }
            }
        }
        let before = summary.generated;
        summary.generated += chunk.len();
        if summary.generated / 50 > before / 50 {
            let done = summary.cached + summary.generated;
            let rate = summary.generated as f64 / started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(task = %bench.manifest.task, "{done}/{scope} answered ({rate:.2} samples/s)");
        }
    }
    Ok(summary)
}

/// Appends one answer to the cache in one write (newline included): a kill leaves whole lines
/// only, or a cut-off last line that the loader discards. The caller fsyncs.
fn write_answer(
    file: &mut std::fs::File,
    sample: &Sample,
    response: &str,
    max_new_tokens: usize,
) -> Result<()> {
    let line = json!({"doc_id": sample.index, "id": sample.id, "response": response,
                      "max_new_tokens": max_new_tokens});
    file.write_all(format!("{line}\n").as_bytes())?;
    Ok(())
}

/// File names [`evaluate`] writes into its output directory.
pub const PREDICTIONS_FILE: &str = "predictions.jsonl";
/// lmms-eval-shaped results (`results[task]["<metric>,<filter>"]`).
pub const RESULTS_FILE: &str = "results.json";
/// The flat summary ([`ScoreReport::summary_json`]), same object as `mlvf score` prints.
pub const METRICS_FILE: &str = "metrics.json";

/// The samples-log file name for a task (`samples_<task>.jsonl`, like lmms-eval).
pub fn samples_file(task: &str) -> String {
    format!("samples_{task}.jsonl")
}

/// Generate (resumably) and score in one call: `out_dir/predictions.jsonl` (the cache),
/// `out_dir/samples_<task>.jsonl`, `out_dir/results.json` and `out_dir/metrics.json`. A rerun after an interruption
/// generates only what is missing; scoring always runs from the cache.
pub fn evaluate(
    generator: &mut dyn Generator,
    bench: &Benchmark,
    out_dir: &Path,
    opts: &RunOptions,
    info: &RunInfo,
) -> Result<(RunSummary, ScoreReport)> {
    let preds_path = out_dir.join(PREDICTIONS_FILE);
    let summary = run_benchmark(generator, bench, &preds_path, opts)?;
    let preds = load_predictions(&preds_path, bench, true)?;
    let report = score_benchmark(bench, &preds)?;
    write_samples_jsonl(
        &out_dir.join(samples_file(&bench.manifest.task)),
        bench,
        &report,
    )?;
    write_results_json(&out_dir.join(RESULTS_FILE), bench, &report, info)?;
    let metrics =
        serde_json::to_string_pretty(&report.summary_json(bench.manifest.report.scale))? + "\n";
    write_atomic(&out_dir.join(METRICS_FILE), metrics.as_bytes())?;
    Ok((summary, report))
}
