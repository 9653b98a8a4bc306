//! Prediction files: our append-only generation cache, and lmms-eval `--log_samples` JSONL.
//!
//! Our cache (`predictions.jsonl`) starts with one header line and then holds one line per
//! answered sample, flushed and fsync'd as it is written:
//!
//! ```text
//! {"mlvf_predictions": 1, "task": "gqa", "data_blake3": "<hash of data.jsonl>", "template": "vicuna_v1"}
//! {"doc_id": 0, "id": "201307251", "response": "no", "max_new_tokens": 16}
//! ```
//!
//! A last line without its newline (a kill mid-write) is ignored; any other broken line is an
//! error naming the file and line. lmms-eval lines are recognised by `resps`/`filtered_resps`;
//! they are matched to samples by `id` when it names one of ours, else by `doc_id` taken as the row
//! index of `data.jsonl` (which is what lmms-eval's `doc_id` is for a full, unshuffled export).

use crate::eval::control::Control;
use crate::eval::format::Benchmark;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Format marker of our cache's header line.
pub const CACHE_VERSION: u64 = 1;

/// One response to one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Row index of the sample in `data.jsonl`.
    pub index: usize,
    /// The raw model response (before any filter).
    pub response: String,
}

/// Which writer produced a prediction file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionSource {
    /// Our generation cache.
    Mlvf,
    /// lmms-eval `--log_samples` (or our lmms-eval-shaped samples log).
    LmmsEval,
}

/// Predictions of one benchmark, keyed by sample row index.
#[derive(Debug, Clone)]
pub struct PredictionSet {
    /// Responses by sample index.
    pub by_index: BTreeMap<usize, Prediction>,
    /// Detected writer (None for an empty file).
    pub source: Option<PredictionSource>,
    /// Byte length of the well-formed prefix (what an appender keeps).
    pub valid_len: u64,
    /// The header line of our cache, when the file has one.
    pub header: Option<Value>,
    /// Lines that could not be matched to a sample (bad id / doc_id out of range).
    pub unmatched: usize,
    /// Whether a truncated last line was ignored.
    pub dropped_partial_line: bool,
}

impl PredictionSet {
    fn empty() -> Self {
        PredictionSet {
            by_index: BTreeMap::new(),
            source: None,
            valid_len: 0,
            header: None,
            unmatched: 0,
            dropped_partial_line: false,
        }
    }
}

/// The header line of our cache for `bench`, the template name and the grounding control the
/// answers were given under (written only when there is one, so with-image caches keep the
/// header they always had).
pub fn cache_header(bench: &Benchmark, template: &str, control: Option<Control>) -> Value {
    let mut h = json!({"mlvf_predictions": CACHE_VERSION, "task": bench.manifest.task,
           "data_blake3": bench.data_digest, "template": template});
    if let Some(c) = control {
        h["control"] = json!(c.name());
    }
    h
}

/// Load predictions for `bench` from `path` (missing file = no predictions). With
/// `strict_digest`, a cache generated for a different `data.jsonl` is an error.
pub fn load_predictions(
    path: &Path,
    bench: &Benchmark,
    strict_digest: bool,
) -> Result<PredictionSet> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PredictionSet::empty()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read predictions {}", path.display()))
        }
    };
    let mut set = PredictionSet::empty();
    let ids: HashMap<&str, usize> = bench
        .samples
        .iter()
        .map(|s| (s.id.as_str(), s.index))
        .collect();
    let mut offset = 0usize;
    let mut lineno = 0usize;
    while offset < bytes.len() {
        lineno += 1;
        let end = bytes[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| offset + p);
        let (line, next, complete) = match end {
            Some(e) => (&bytes[offset..e], e + 1, true),
            None => (&bytes[offset..], bytes.len(), false),
        };
        let where_ = || format!("{} line {lineno}", path.display());
        let text = std::str::from_utf8(line).ok().map(str::trim);
        if text.is_some_and(str::is_empty) {
            if complete {
                set.valid_len = next as u64;
            }
            offset = next;
            continue;
        }
        let value: Option<Value> = text.and_then(|t| serde_json::from_str(t).ok());
        let Some(value) = value else {
            if !complete {
                // A kill mid-write leaves a partial last line: not a result, ignore it.
                set.dropped_partial_line = true;
                break;
            }
            bail!("{}: not a JSON object; fix or delete this line (predictions are one JSON object per line)", where_());
        };
        if !complete && (value.get("response").is_some() || value.get("mlvf_predictions").is_some())
        {
            // Our writer ends every line with a newline in the same write; without it the
            // line was cut short. Drop it (a cut header is rewritten, a cut answer regenerated).
            set.dropped_partial_line = true;
            break;
        }
        if value.get("mlvf_predictions").is_some() {
            check_header(&value, bench, strict_digest).with_context(where_)?;
            set.header = Some(value.clone());
        } else {
            let (pred, source) = parse_line(&value, bench, &ids).with_context(where_)?;
            match (set.source, source) {
                (Some(a), b) if a != b => bail!(
                    "{}: mixes our cache lines with lmms-eval sample lines",
                    where_()
                ),
                _ => set.source = Some(source),
            }
            match pred {
                Some(p) => {
                    set.by_index.insert(p.index, p);
                }
                None => set.unmatched += 1,
            }
        }
        if complete {
            set.valid_len = next as u64;
        }
        offset = next;
    }
    Ok(set)
}

fn check_header(h: &Value, bench: &Benchmark, strict_digest: bool) -> Result<()> {
    if h["mlvf_predictions"] != json!(CACHE_VERSION) {
        bail!(
            "unsupported prediction cache version {}",
            h["mlvf_predictions"]
        );
    }
    let task = h["task"].as_str().unwrap_or("");
    if task != bench.manifest.task {
        bail!(
            "these predictions are for task {task:?} but the benchmark is {:?}; use the matching benchmark directory",
            bench.manifest.task
        );
    }
    let digest = h["data_blake3"].as_str().unwrap_or("");
    if digest != bench.data_digest {
        let msg = format!(
            "these predictions were generated for a different data.jsonl of {task:?} \
             (blake3 {digest} ≠ {}); delete the cache to regenerate",
            bench.data_digest
        );
        if strict_digest {
            bail!(msg);
        }
        tracing::warn!("{msg}");
    }
    Ok(())
}

/// A response field that may be a string, `["…"]` (classic filtered_resps) or `[["…"]]`.
fn response_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.first().and_then(response_text),
        _ => None,
    }
}

fn parse_line(
    v: &Value,
    bench: &Benchmark,
    ids: &HashMap<&str, usize>,
) -> Result<(Option<Prediction>, PredictionSource)> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("expected a JSON object"))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let doc_id = obj
        .get("doc_id")
        .and_then(Value::as_u64)
        .map(|d| d as usize);
    let (response, source) = if let Some(r) = obj.get("response") {
        let r = r
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("field `response`: expected a string"))?;
        (r.to_string(), PredictionSource::Mlvf)
    } else if let Some(r) = obj.get("resps").or_else(|| obj.get("filtered_resps")) {
        // Prefer the raw `resps`: our scorers apply the task's filter themselves.
        let r = response_text(r).ok_or_else(|| {
            anyhow::anyhow!(
                "field `resps`/`filtered_resps`: expected a string or a list holding one"
            )
        })?;
        (r, PredictionSource::LmmsEval)
    } else {
        bail!("expected a `response` (mlvf cache) or `resps`/`filtered_resps` (lmms-eval samples) field");
    };
    let index = match id.as_deref().and_then(|i| ids.get(i).copied()) {
        Some(i) => Some(i),
        None => doc_id.filter(|d| *d < bench.samples.len()),
    };
    if source == PredictionSource::Mlvf && index.is_none() {
        bail!(
            "prediction for id {id:?} / doc_id {doc_id:?} matches no sample of {:?}",
            bench.manifest.task
        );
    }
    Ok((index.map(|index| Prediction { index, response }), source))
}
