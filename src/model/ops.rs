//! Softmax, layer norm and RMS norm over the last dimension that are fast *and* differentiable,
//! shared by the vision towers and the LLM.
//!
//! candle's fused `softmax_last_dim` / `layer_norm` / `rms_norm` kernels have no backward
//! (candle.md §3), and the differentiable compositions (`ops::softmax`, `ops::layer_norm_slow`) make 5–8 passes over
//! memory with a fresh tensor each time; measured 13× (softmax) and 26× (layer norm) slower on
//! the project's CPU. Here the value comes from candle's fused kernel, and a custom op hands that
//! value to the autograd graph together with the backward the fused op lacks (written with tensor
//! ops, so it runs wherever the gradient lives). The custom op's forward is a copy of the fused
//! result, so the forward pass costs the fused kernel plus one memcpy, and stays optimised even
//! when this crate is built without optimisation. Off the CPU the compositions are used (GPU
//! element-wise ops are cheap and those are correct everywhere).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D,
};

/// Softmax over the last dimension with a backward.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_nn::ops::softmax(x, D::Minus1);
    }
    let value = candle_nn::ops::softmax_last_dim(&x.contiguous()?)?;
    x.apply_op1(Softmax { value })
}

/// `(x − mean) / sqrt(var + eps) · weight + bias` over the last dimension, with a backward for
/// all three inputs.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_nn::ops::layer_norm_slow(x, weight, bias, eps as f32);
    }
    let value = candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, eps as f32)?;
    x.apply_op3(weight, bias, LayerNorm { value, eps })
}

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension (LLaMA's RMSNorm), with a
/// backward for `x` and `weight`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return rms_norm_slow(x, weight, eps);
    }
    let value = candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32)?;
    x.apply_op2(weight, RmsNorm { value, eps })
}

/// The composition (statistics in f32 for half types, as transformers' `LlamaRMSNorm` does).
pub fn rms_norm_slow(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(work_dtype(dtype))?;
    let r = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    xf.broadcast_mul(&r)?.to_dtype(dtype)?.broadcast_mul(weight)
}

/// f32 for half types (statistics and backward), the type itself otherwise.
fn work_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

/// A norm backward's inputs as `[rows, d]` matrices (and the `[d]` weight) in the working
/// dtype: statistics in f32 at least, as the slow compositions compute them for half types.
fn as_rows(x: &Tensor, g: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let work = work_dtype(x.dtype());
    let d = x.dim(D::Minus1)?;
    let rows = x.elem_count() / d;
    Ok((
        x.reshape((rows, d))?.to_dtype(work)?,
        g.reshape((rows, d))?.to_dtype(work)?,
        w.to_dtype(work)?,
    ))
}

/// The CPU storage of a freshly computed (contiguous, unshared) tensor, copied.
fn copy_value(value: &Tensor) -> Result<(CpuStorage, Shape)> {
    let (storage, layout) = value.storage_and_layout();
    match &*storage {
        Storage::Cpu(c) if layout.is_contiguous() && layout.start_offset() == 0 => {
            Ok((c.clone(), layout.shape().clone()))
        }
        _ => candle_core::bail!("internal: fused kernel result is not a plain CPU tensor"),
    }
}

struct Softmax {
    value: Tensor,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "mlvf-softmax-last-dim"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        copy_value(&self.value)
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        // dx = y ⊙ (g − Σ g⊙y)
        let gy = (g * y)?;
        let s = gy.sum_keepdim(D::Minus1)?;
        Ok(Some((gy - y.broadcast_mul(&s)?)?))
    }
}

struct LayerNorm {
    value: Tensor,
    eps: f64,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "mlvf-layer-norm"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
        _s3: &CpuStorage,
        _l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_value(&self.value)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dtype = x.dtype();
        let (x2, g2, w) = as_rows(x, g, w)?;
        let mean = x2.mean_keepdim(1)?;
        let xc = x2.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(1)?;
        let rstd = (var + self.eps)?.sqrt()?.recip()?;
        let xhat = xc.broadcast_mul(&rstd)?;
        let dw = (&g2 * &xhat)?.sum(0)?;
        let db = g2.sum(0)?;
        // dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)), ĝ = g ⊙ w
        let gh = g2.broadcast_mul(&w)?;
        let m1 = gh.mean_keepdim(1)?;
        let m2 = (&gh * &xhat)?.mean_keepdim(1)?;
        let dx = gh
            .broadcast_sub(&m1)?
            .sub(&xhat.broadcast_mul(&m2)?)?
            .broadcast_mul(&rstd)?;
        Ok((
            Some(dx.reshape(x.shape())?.to_dtype(dtype)?),
            Some(dw.to_dtype(dtype)?),
            Some(db.to_dtype(dtype)?),
        ))
    }
}

struct RmsNorm {
    value: Tensor,
    eps: f64,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "mlvf-rms-norm"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_value(&self.value)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dtype = x.dtype();
        let (x2, g2, w) = as_rows(x, g, w)?;
        let r = (x2.sqr()?.mean_keepdim(1)? + self.eps)?.sqrt()?.recip()?;
        let xhat = x2.broadcast_mul(&r)?;
        let dw = (&g2 * &xhat)?.sum(0)?;
        // dx = r · (ĝ − x̂ · mean(ĝ ⊙ x̂)), ĝ = g ⊙ w
        let gh = g2.broadcast_mul(&w)?;
        let m = (&gh * &xhat)?.mean_keepdim(1)?;
        let dx = gh.sub(&xhat.broadcast_mul(&m)?)?.broadcast_mul(&r)?;
        Ok((
            Some(dx.reshape(x.shape())?.to_dtype(dtype)?),
            Some(dw.to_dtype(dtype)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar())
            .unwrap()
    }

    fn randn(mean: f32, std: f32, shape: &[usize]) -> Var {
        Var::from_tensor(&Tensor::randn(mean, std, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// The fused op and its composition agree in value (within `tol`) and in the gradient of a
    /// random linear functional of the output with respect to every input (within `10·tol`).
    fn assert_same(fast: Tensor, slow: Tensor, inputs: &[&Var], tol: f32) {
        assert!(
            max_diff(&fast, &slow) < tol,
            "value: {}",
            max_diff(&fast, &slow)
        );
        let coef = Tensor::randn(0f32, 1.0, fast.shape(), &Device::Cpu).unwrap();
        let grads = |y: Tensor| (y * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gs) = (grads(fast), grads(slow));
        for v in inputs {
            let d = max_diff(
                gf.get(v.as_tensor()).unwrap(),
                gs.get(v.as_tensor()).unwrap(),
            );
            assert!(d < 10.0 * tol, "gradient: {d}");
        }
    }

    #[test]
    fn softmax_matches_the_composition_in_value_and_gradient() {
        let x = randn(0.0, 3.0, &[2, 3, 7]);
        let fast = softmax_last_dim(x.as_tensor()).unwrap();
        let slow = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
        assert_same(fast, slow, &[&x], 1e-6);
    }

    #[test]
    fn layer_norm_matches_the_composition_in_value_and_gradients() {
        let (x, w, b) = (
            randn(1.0, 2.0, &[3, 4, 10]),
            randn(1.0, 0.3, &[10]),
            randn(0.0, 0.3, &[10]),
        );
        let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
        let fast = layer_norm(xt, wt, bt, 1e-5).unwrap();
        let slow = candle_nn::ops::layer_norm_slow(xt, wt, bt, 1e-5).unwrap();
        assert_same(fast, slow, &[&x, &w, &b], 1e-5);
    }

    #[test]
    fn rms_norm_matches_the_composition_in_value_and_gradients() {
        let (x, w) = (randn(0.5, 2.0, &[3, 4, 10]), randn(1.0, 0.3, &[10]));
        let fast = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
        let slow = rms_norm_slow(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
        assert_same(fast, slow, &[&x, &w], 1e-5);
    }

    #[test]
    fn non_contiguous_and_other_dtypes_work() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap().t().unwrap();
        let fast = softmax_last_dim(&x).unwrap();
        assert!(max_diff(&fast, &candle_nn::ops::softmax(&x, D::Minus1).unwrap()) < 1e-6);
        let xh = x.to_dtype(DType::F64).unwrap();
        let sh = softmax_last_dim(&xh).unwrap().to_dtype(DType::F32).unwrap();
        assert!(max_diff(&fast, &sh) < 1e-6);
    }
}
