//! Seeded, reproducible parameter initialisation for a candle `VarMap`.
//!
//! candle's `VarMap` draws initial values from the device RNG, and the CPU device cannot be
//! seeded (`Device::set_seed` bails on CPU). Two runs of the same study would start from
//! different weights. [`seeded_var_builder`] fixes that: it returns a `VarBuilder` whose backend
//! creates every missing variable from a ChaCha8 stream seeded by the caller, in the order the
//! module constructor asks for them (constructors are deterministic, so the order is too). Values
//! are drawn in f64 on the host and then moved to the target device and dtype, so CPU and GPU
//! start from the same numbers. Variables already in the map are returned unchanged (this is
//! what makes "build, then `VarMap::load`" resume work).
//!
//! [`shape_only_var_builder`] is the opposite extreme: it allocates nothing (every tensor is a
//! broadcast scalar) and records names and shapes, so parameter counts of big configurations come
//! from the module's own constructor without allocating its weights.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};

/// A `VarMap` backend that initialises new variables from a seeded ChaCha8 stream.
struct SeededVarMap {
    map: VarMap,
    rng: Mutex<ChaCha8Rng>,
}

/// Draws `n` values of `init` for a tensor of shape `shape` from `rng`.
pub fn sample_init(init: Init, shape: &Shape, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = shape.elem_count();
    let uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| lo + (up - lo) * rng.random::<f64>();
    // Box–Muller; rand_distr is not a dependency and one transform is all we need.
    let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| {
        let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
        let u2 = rng.random::<f64>();
        mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    match init {
        Init::Const(c) => vec![c; n],
        Init::Uniform { lo, up } => (0..n).map(|_| uniform(rng, lo, up)).collect(),
        Init::Randn { mean, stdev } => (0..n).map(|_| normal(rng, mean, stdev)).collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = match fan {
                FanInOut::FanIn | FanInOut::FanOut => fan.for_shape(shape),
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    (0..n).map(|_| uniform(rng, -b, b)).collect()
                }
                NormalOrUniform::Normal => (0..n).map(|_| normal(rng, 0.0, std)).collect(),
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.map.data().lock().unwrap();
        if let Some(var) = data.get(name) {
            let t = var.as_tensor();
            if t.shape() != &s {
                candle_core::bail!(
                    "variable `{name}` already exists with shape {:?}, the model asks for {s:?}",
                    t.shape()
                );
            }
            return Ok(t.clone());
        }
        let values = sample_init(h, &s, &mut self.rng.lock().unwrap());
        let t = Tensor::from_vec(values, s, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        match self.map.data().lock().unwrap().get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("variable `{name}` is not in the map and has no shape"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.data().lock().unwrap().contains_key(name)
    }
}

/// A `VarBuilder` that puts trainable variables into `map`, initialising new ones from a ChaCha8
/// stream seeded with `seed`. Same seed, same constructor → bit-identical initial weights.
pub fn seeded_var_builder(
    map: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend = SeededVarMap {
        map: map.clone(),
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
    };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

/// `(name, dims)` of one parameter.
pub type ParamShape = (String, Vec<usize>);

/// Records the name and shape of every parameter a constructor asks for; allocates nothing.
#[derive(Clone, Default)]
pub struct ShapeRecorder {
    seen: Arc<Mutex<Vec<ParamShape>>>,
}

impl ShapeRecorder {
    /// `(name, shape)` of every parameter requested so far, in request order.
    pub fn shapes(&self) -> Vec<ParamShape> {
        self.seen.lock().unwrap().clone()
    }

    /// Total number of scalars over all recorded parameters.
    pub fn count(&self) -> usize {
        self.shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

impl SimpleBackend for ShapeRecorder {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.seen
            .lock()
            .unwrap()
            .push((name.to_string(), s.dims().to_vec()));
        // A stride-0 view of one scalar: the right shape, one element of memory.
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("shape recorder cannot provide `{name}` without a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

/// A `VarBuilder` over a [`ShapeRecorder`] (CPU, f32): build a module with it to learn its
/// parameter names and shapes without allocating them.
pub fn shape_only_var_builder(recorder: &ShapeRecorder) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu)
}
