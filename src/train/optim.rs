//! AdamW with parameter groups and a saveable state (candle's `AdamW` has neither).
//!
//! The update is PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias correction):
//!
//! ```text
//! p ← p · (1 − lr·wd)
//! m ← β1·m + (1−β1)·g          v ← β2·v + (1−β2)·g²
//! p ← p − lr · (m / (1−β1^t)) / (√(v / (1−β2^t)) + ε)
//! ```
//!
//! `t` counts the updates of each parameter (a parameter without a gradient in a step is
//! skipped and its `t` does not advance, as in PyTorch). Moments are kept in f32 (f64 for f64
//! parameters), so bf16 parameters do not lose small updates in the moments.
//!
//! # Parameter groups and the weight-decay rule
//! Each group has its own base lr and weight decay; the schedule's multiplier scales every
//! group's lr. [`param_groups`] splits parameters as HF's Trainer does: **no decay** for biases
//! and normalisation weights, decay for everything else. By name: a parameter whose last path
//! segment is `bias`, or any of whose path segments contains `norm` (LayerNorm/RMSNorm modules:
//! `query_norm`, `input_layernorm`, `model.norm`, HF CLIP's `pre_layrnorm`, …) is not decayed.
//! Like HF, other 1-D parameters (E_M's gates γ) are decayed.

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// β1, β2, ε (HF defaults 0.9, 0.999, 1e-8).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Parameters that share a base learning rate and weight decay.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub name: String,
    pub lr: f64,
    pub weight_decay: f64,
    pub params: Vec<(String, Var)>,
}

/// HF's rule: biases and normalisation weights get no weight decay (see the module docs).
pub fn is_no_decay(name: &str) -> bool {
    let mut segments = name.split('.');
    let last = name.rsplit('.').next().unwrap_or(name);
    // CLIP/SigLIP's learnable temperature and bias are scalars, excluded from decay as
    // open_clip and big_vision do.
    last == "bias"
        || last == "logit_scale"
        || last == "logit_bias"
        || segments.any(|s| s.contains("norm") || s.contains("layrnorm"))
}

/// Splits named parameters into a `decay` group (weight decay `weight_decay`) and a `no_decay`
/// group (0), both at base lr `lr`. Names are sorted so the order is deterministic.
pub fn param_groups(
    named: impl IntoIterator<Item = (String, Var)>,
    lr: f64,
    weight_decay: f64,
) -> Vec<ParamGroup> {
    let mut named: Vec<_> = named.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let (no, yes): (Vec<_>, Vec<_>) = named.into_iter().partition(|(n, _)| is_no_decay(n));
    vec![
        ParamGroup {
            name: "decay".into(),
            lr,
            weight_decay,
            params: yes,
        },
        ParamGroup {
            name: "no_decay".into(),
            lr,
            weight_decay: 0.0,
            params: no,
        },
    ]
}

/// Named parameters of a `VarMap`, sorted by name.
pub fn named_vars(map: &candle_nn::VarMap) -> Vec<(String, Var)> {
    let mut v: Vec<_> = map
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

struct Moments {
    m: Tensor,
    v: Tensor,
    t: u64,
}

/// AdamW over parameter groups, with state that survives a restart.
pub struct AdamW {
    config: AdamWConfig,
    groups: Vec<ParamGroup>,
    state: HashMap<String, Moments>,
    updates: u64,
}

const STATE_FORMAT: &str = "mlvf-adamw-1";

fn moment_dtype(p: &Tensor) -> DType {
    if p.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

impl AdamW {
    /// An optimiser over `groups`; parameter names must be unique across groups.
    pub fn new(groups: Vec<ParamGroup>, config: AdamWConfig) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for g in &groups {
            for (n, _) in &g.params {
                if !seen.insert(n.clone()) {
                    bail!("parameter `{n}` appears in more than one optimiser group");
                }
            }
        }
        Ok(Self {
            config,
            groups,
            state: HashMap::new(),
            updates: 0,
        })
    }

    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// Every parameter the optimiser updates.
    pub fn vars(&self) -> Vec<Var> {
        self.groups
            .iter()
            .flat_map(|g| g.params.iter().map(|(_, v)| v.clone()))
            .collect()
    }

    /// Optimiser steps taken (calls of [`AdamW::step`]).
    pub fn steps(&self) -> u64 {
        self.updates
    }

    /// One update with lr = group lr × `lr_multiplier` (from the schedule).
    pub fn step(&mut self, grads: &GradStore, lr_multiplier: f64) -> Result<()> {
        let AdamWConfig { beta1, beta2, eps } = self.config;
        for g in &self.groups {
            let lr = g.lr * lr_multiplier;
            for (name, var) in &g.params {
                let Some(grad) = grads.get(var.as_tensor()) else {
                    continue;
                };
                let p = var.as_tensor();
                let dt = moment_dtype(p);
                // Detached: a gradient carries the op graph of its backward pass, and moments built
                // from it would keep every step's activations alive (memory grows each step).
                let grad = grad.to_dtype(dt)?.detach();
                let st = match self.state.remove(name) {
                    Some(s) => s,
                    None => Moments {
                        m: grad.zeros_like()?,
                        v: grad.zeros_like()?,
                        t: 0,
                    },
                };
                let t = st.t + 1;
                let m = ((st.m * beta1)? + (&grad * (1.0 - beta1))?)?;
                let v = ((st.v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
                let bc1 = 1.0 - beta1.powi(t as i32);
                let bc2 = 1.0 - beta2.powi(t as i32);
                let denom = ((&v / bc2)?.sqrt()? + eps)?;
                let update = ((&m / bc1)? / denom)?;
                let p32 = p.to_dtype(dt)?;
                let decayed = (p32 * (1.0 - lr * g.weight_decay))?;
                let new = (decayed - (update * lr)?)?;
                var.set(&new.to_dtype(p.dtype())?)
                    .with_context(|| format!("updating `{name}`"))?;
                self.state.insert(name.clone(), Moments { m, v, t });
            }
        }
        self.updates += 1;
        Ok(())
    }

    /// Writes m, v (tensors `{name}.exp_avg`, `{name}.exp_avg_sq`) and the per-parameter and
    /// global step counts (metadata) to a safetensors file.
    pub fn save_state(&self, path: &Path) -> Result<()> {
        let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut steps: BTreeMap<String, u64> = BTreeMap::new();
        for (name, s) in &self.state {
            tensors.insert(format!("{name}.exp_avg"), s.m.to_device(&Device::Cpu)?);
            tensors.insert(format!("{name}.exp_avg_sq"), s.v.to_device(&Device::Cpu)?);
            steps.insert(name.clone(), s.t);
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), STATE_FORMAT.to_string());
        meta.insert("updates".to_string(), self.updates.to_string());
        meta.insert("param_steps".to_string(), serde_json::to_string(&steps)?);
        meta.insert("config".to_string(), serde_json::to_string(&self.config)?);
        let list: Vec<(String, &Tensor)> = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
        safetensors::serialize_to_file(list, Some(meta), path)
            .with_context(|| format!("writing optimiser state {}", path.display()))?;
        Ok(())
    }

    /// Restores the state written by [`AdamW::save_state`] for the same parameters.
    /// Unknown or misshapen entries are errors that name the parameter.
    pub fn load_state(&mut self, path: &Path) -> Result<()> {
        let buf = std::fs::read(path)
            .with_context(|| format!("reading optimiser state {}", path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&buf)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
            bail!(
                "{} is not an mlvf AdamW state (format {:?}, expected {STATE_FORMAT})",
                path.display(),
                meta.get("format")
            );
        }
        let steps: BTreeMap<String, u64> =
            serde_json::from_str(meta.get("param_steps").map(String::as_str).unwrap_or("{}"))?;
        let updates: u64 = meta
            .get("updates")
            .context("optimiser state lacks `updates`")?
            .parse()?;
        let tensors = candle_core::safetensors::load_buffer(&buf, &Device::Cpu)?;
        let params: HashMap<&str, &Var> = self
            .groups
            .iter()
            .flat_map(|g| g.params.iter().map(|(n, v)| (n.as_str(), v)))
            .collect();
        let mut state = HashMap::new();
        for (name, &t) in &steps {
            let var = params.get(name.as_str()).with_context(|| {
                format!(
                    "optimiser state {} has an entry for `{name}`, which this model does not train; \
                     was it saved for a different fusion configuration?",
                    path.display()
                )
            })?;
            let p = var.as_tensor();
            let get = |suffix: &str| -> Result<Tensor> {
                let key = format!("{name}.{suffix}");
                let t = tensors
                    .get(&key)
                    .with_context(|| format!("optimiser state {} lacks `{key}`", path.display()))?;
                if t.dims() != p.dims() {
                    bail!(
                        "optimiser state `{key}` has shape {:?}, the parameter has {:?}",
                        t.dims(),
                        p.dims()
                    );
                }
                Ok(t.to_dtype(moment_dtype(p))?.to_device(p.device())?)
            };
            state.insert(
                name.clone(),
                Moments {
                    m: get("exp_avg")?,
                    v: get("exp_avg_sq")?,
                    t,
                },
            );
        }
        self.state = state;
        self.updates = updates;
        Ok(())
    }
}
