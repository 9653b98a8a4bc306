//! HF checkpoint layout for vision towers: finding the safetensors files of a model directory,
//! checking every tensor the config needs before anything is loaded (so a wrong checkpoint fails
//! with the file, the tensor and the expected vs found shape rather than candle's bare message),
//! and writing a tower back in the same layout.

use super::config::{VisionArch, VisionConfig};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Every tensor a tower of `cfg` reads, relative to the tower root (`embeddings.…`,
/// `encoder.layers.{i}.…`, `pre_layrnorm.…`, `post_layernorm.…`), with its shape.
/// Only the first `layers` encoder layers are listed.
pub fn expected_tensors(cfg: &VisionConfig, layers: usize) -> Vec<(String, Vec<usize>)> {
    let (d, f, c, p) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_channels,
        cfg.patch_size,
    );
    let mut v: Vec<(String, Vec<usize>)> =
        vec![("embeddings.patch_embedding.weight".into(), vec![d, c, p, p])];
    match cfg.arch {
        VisionArch::Clip => v.push(("embeddings.class_embedding".into(), vec![d])),
        VisionArch::Siglip => v.push(("embeddings.patch_embedding.bias".into(), vec![d])),
    }
    v.push((
        "embeddings.position_embedding.weight".into(),
        vec![cfg.num_tokens(), d],
    ));
    if cfg.arch == VisionArch::Clip {
        v.push(("pre_layrnorm.weight".into(), vec![d]));
        v.push(("pre_layrnorm.bias".into(), vec![d]));
    }
    for i in 0..layers {
        let l = format!("encoder.layers.{i}");
        for ln in ["layer_norm1", "layer_norm2"] {
            v.push((format!("{l}.{ln}.weight"), vec![d]));
            v.push((format!("{l}.{ln}.bias"), vec![d]));
        }
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            v.push((format!("{l}.self_attn.{proj}.weight"), vec![d, d]));
            v.push((format!("{l}.self_attn.{proj}.bias"), vec![d]));
        }
        v.push((format!("{l}.mlp.fc1.weight"), vec![f, d]));
        v.push((format!("{l}.mlp.fc1.bias"), vec![f]));
        v.push((format!("{l}.mlp.fc2.weight"), vec![d, f]));
        v.push((format!("{l}.mlp.fc2.bias"), vec![d]));
    }
    v.push(("post_layernorm.weight".into(), vec![d]));
    v.push(("post_layernorm.bias".into(), vec![d]));
    v
}

/// The safetensors files of a model directory: `model.safetensors`, the shards named by
/// `model.safetensors.index.json`, or else every `*.safetensors` file in it.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("cannot read {}", index.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .with_context(|| format!("{} has no `weight_map` object", index.display()))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(Value::as_str)
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list model directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        let hint = if dir.join("pytorch_model.bin").exists() {
            " (only pytorch_model.bin is there: convert it with transformers' \
             `save_pretrained(dir, safe_serialization=True)`)"
        } else {
            ""
        };
        bail!("no safetensors weights in {}{hint}", dir.display());
    }
    Ok(files)
}

/// Where each tensor of a checkpoint lives and its shape, read from the safetensors headers only.
#[derive(Debug, Default)]
pub struct CheckpointIndex {
    pub files: Vec<PathBuf>,
    /// tensor name → (file index, shape)
    pub tensors: HashMap<String, (usize, Vec<usize>)>,
}

impl CheckpointIndex {
    /// Reads the headers of `files`.
    pub fn read(files: &[PathBuf]) -> Result<CheckpointIndex> {
        let mut idx = CheckpointIndex {
            files: files.to_vec(),
            tensors: HashMap::new(),
        };
        for (fi, path) in files.iter().enumerate() {
            for (name, shape) in read_header(path)? {
                idx.tensors.insert(name, (fi, shape));
            }
        }
        Ok(idx)
    }

    /// The prefix in front of `embeddings.patch_embedding.weight`: `vision_model.` for
    /// CLIPVisionModel / SiglipVisionModel / CLIPModel / SiglipModel, `vision_tower.vision_model.`
    /// and similar for multimodal checkpoints.
    pub fn tower_prefix(&self) -> Result<String> {
        const ANCHOR: &str = "embeddings.patch_embedding.weight";
        let mut found: Vec<&str> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_suffix(ANCHOR))
            .filter(|p| p.is_empty() || p.ends_with('.'))
            .collect();
        found.sort();
        match found.as_slice() {
            [one] => Ok(one.to_string()),
            [] => bail!(
                "no vision tower in {}: no tensor named `vision_model.{ANCHOR}` (or `…{ANCHOR}`); \
                 is this a CLIP or SigLIP checkpoint?",
                self.describe_files()
            ),
            many => bail!(
                "several vision towers in {} (prefixes {:?}); save the one you want on its own",
                self.describe_files(),
                many
            ),
        }
    }

    /// Checks that every tensor `cfg` needs is present with the right shape.
    pub fn check(&self, prefix: &str, cfg: &VisionConfig, layers: usize) -> Result<()> {
        for (rel, shape) in expected_tensors(cfg, layers) {
            let name = format!("{prefix}{rel}");
            match self.tensors.get(&name) {
                None => bail!(
                    "tensor `{name}` is missing from {}; check that config.json (num_hidden_layers = {}, \
                     model_type {}) describes this checkpoint",
                    self.describe_files(),
                    cfg.num_hidden_layers,
                    cfg.arch.vision_model_type()
                ),
                Some((fi, found)) if *found != shape => bail!(
                    "tensor `{name}` in {} has shape {found:?}, but config.json implies {shape:?} \
                     (hidden_size {}, intermediate_size {}, patch_size {}, image_size {})",
                    self.files[*fi].display(),
                    cfg.hidden_size,
                    cfg.intermediate_size,
                    cfg.patch_size,
                    cfg.image_size
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn describe_files(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        names.join(", ")
    }
}

/// Tensor names and shapes from a safetensors header (8-byte little-endian length + JSON).
fn read_header(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = f.metadata()?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{} is too short to be safetensors", path.display()))?;
    let n = u64::from_le_bytes(len);
    if n > file_len.saturating_sub(8) || n > 100 << 20 {
        bail!(
            "{} is not a safetensors file (header length {n} bytes)",
            path.display()
        );
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf)?;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&buf)
        .with_context(|| format!("{} has a corrupt safetensors header", path.display()))?;
    let mut out = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let shape = info
            .get("shape")
            .and_then(Value::as_array)
            .with_context(|| format!("{}: tensor `{name}` has no shape", path.display()))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<usize>>>()
            .with_context(|| {
                format!("{}: tensor `{name}` has a malformed shape", path.display())
            })?;
        out.push((name, shape));
    }
    Ok(out)
}

/// Writes `tensors` to `path` atomically ([`crate::atomic`]), so a crash never leaves a
/// half-written checkpoint under the final name.
pub fn write_safetensors_atomic(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    crate::atomic::write_atomic_via(path, |tmp| Ok(candle_core::safetensors::save(&map, tmp)?))
}
