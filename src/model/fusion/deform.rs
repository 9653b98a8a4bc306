//! Multi-scale deformable attention (Deformable-DETR's `MSDeformAttn`) in pure candle.
//!
//! The official code calls a CUDA op; here the sampling is bilinear interpolation written with
//! `floor`, `index_select` and weights, so it runs on any device and is differentiable with
//! respect to the values, the sampling offsets and the attention weights (the integer corner
//! positions are detached; between pixel centres the interpolation is linear in the offsets,
//! which is the exact gradient away from the kinks at integer coordinates, as with PyTorch's
//! `grid_sample`).
//!
//! Conventions are PyTorch's `grid_sample(mode="bilinear", padding_mode="zeros",
//! align_corners=False)` as Deformable-DETR uses it: a normalised location `(x, y) ∈ [0, 1]²`
//! is the pixel coordinate `x·W − 0.5` (pixel centres at integers), and neighbours outside the
//! map contribute zero. Sampling offsets are in pixels of each level (Deformable-DETR divides
//! them by the level's `(W, H)` before adding them to the normalised reference point).
//!
//! Parameter names (Deformable-DETR's): `sampling_offsets [H·L·P·2, dv]`,
//! `attention_weights [H·L·P, dv]`, `value_proj [dv, dv]`, `output_proj [dv, dv]`, each with bias.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};

/// The spatial layout of a level: `rows × cols` patch tokens, flattened row-major (ViT order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
}

impl Grid {
    /// The square grid of `tokens` patch tokens; an error explains non-square counts.
    pub fn square(tokens: usize) -> Result<Grid> {
        let side = (tokens as f64).sqrt().round() as usize;
        if side * side != tokens {
            let hint = if is_square(tokens.wrapping_sub(1)) {
                format!(
                    " ({} + 1: the input still carries a CLS token; drop it first, e.g. with \
                     `patch_tokens(hidden, true)`)",
                    tokens - 1
                )
            } else if is_square(tokens + 1) {
                format!(
                    " ({} − 1: a patch token was dropped; SigLIP's official code drops one of \
                     its 729 tokens, mlvf keeps all of them)",
                    tokens + 1
                )
            } else {
                String::new()
            };
            bail!("{tokens} visual tokens do not form a square patch grid{hint}");
        }
        Ok(Grid {
            rows: side,
            cols: side,
        })
    }

    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn is_square(n: usize) -> bool {
    let s = (n as f64).sqrt().round() as usize;
    n > 0 && s * s == n
}

/// Normalised reference points at the patch centres of `grid`: `[tokens, 2]` as `(x, y)`,
/// `x = (col + 0.5) / cols`, `y = (row + 0.5) / rows` (Deformable-DETR's encoder references).
pub fn reference_points(grid: Grid, dtype: DType, device: &Device) -> Result<Tensor> {
    let mut v = Vec::with_capacity(grid.len() * 2);
    for r in 0..grid.rows {
        for c in 0..grid.cols {
            v.push((c as f64 + 0.5) / grid.cols as f64);
            v.push((r as f64 + 0.5) / grid.rows as f64);
        }
    }
    Ok(Tensor::from_vec(v, (grid.len(), 2), device)?.to_dtype(dtype)?)
}

/// Bilinearly samples value maps at pixel coordinates and sums the samples with weights.
///
/// * `values`: `[N, L·S, c]`: N independent maps (batch × heads), L levels of S = rows·cols
///   positions each, all levels on `grid`, concatenated along axis 1.
/// * `px`, `py`: `[N, Q, L, P]` pixel coordinates (centres at integers) in the level's map.
/// * `weights`: `[N, Q, L, P]` weight of each sample.
///
/// Returns `[N, Q, c]` = Σ_{l,p} weights · bilinear(values_l, px, py). Samples outside the map
/// see zeros (`padding_mode="zeros"`). Coordinates are handled in f32 (f64 for f64 inputs) so
/// that half-precision models still hit the right pixels.
pub fn sample_bilinear(
    values: &Tensor,
    px: &Tensor,
    py: &Tensor,
    weights: &Tensor,
    grid: Grid,
) -> Result<Tensor> {
    let (n, total, c) = values.dims3()?;
    let (n2, q, levels, points) = px.dims4()?;
    if n2 != n || total != levels * grid.len() {
        bail!(
            "sample_bilinear: values {:?} do not match {levels} level(s) of a {}×{} grid for {n2} maps",
            values.dims(),
            grid.rows,
            grid.cols
        );
    }
    let dtype = values.dtype();
    let cdt = if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let device = values.device();
    let px = px.to_dtype(cdt)?;
    let py = py.to_dtype(cdt)?;
    let weights = weights.to_dtype(cdt)?;
    if (n * total) as u64 > u32::MAX as u64 {
        bail!("sample_bilinear: {n}×{total} positions exceed u32 indexing; use smaller batches");
    }
    let (w_max, h_max) = ((grid.cols - 1) as f64, (grid.rows - 1) as f64);
    // Integer corners carry no gradient; the fractional parts do.
    let x0 = px.detach().floor()?;
    let y0 = py.detach().floor()?;
    let fx = (&px - &x0)?;
    let fy = (&py - &y0)?;
    let gx = fx.affine(-1.0, 1.0)?;
    let gy = fy.affine(-1.0, 1.0)?;
    // Whether the left/right (top/bottom) neighbours lie inside the map, as 0/1.
    let inside = |t: &Tensor, lo: f64, hi: f64| -> Result<Tensor> {
        Ok(t.ge(lo)?.mul(&t.le(hi)?)?.to_dtype(cdt)?)
    };
    let vx = [inside(&x0, 0.0, w_max)?, inside(&x0, -1.0, w_max - 1.0)?];
    let vy = [inside(&y0, 0.0, h_max)?, inside(&y0, -1.0, h_max - 1.0)?];
    // Row of the top-left corner inside one map: level start + y·cols + x (exact in f32:
    // below L·S).
    let level_start: Vec<f64> = (0..levels).map(|l| (l * grid.len()) as f64).collect();
    let level_start = Tensor::from_vec(level_start, (1, 1, levels, 1), device)?.to_dtype(cdt)?;
    let top_left = ((&y0 * grid.cols as f64)? + &x0)?.broadcast_add(&level_start)?;

    let mut index = Vec::with_capacity(4);
    let mut weight = Vec::with_capacity(4);
    for (dx, dy) in [(0usize, 0usize), (1, 0), (0, 1), (1, 1)] {
        let valid = (&vx[dx] * &vy[dy])?;
        // Outside corners point at row 0 of the map (valid memory) with weight 0.
        index.push(((&top_left + (dy * grid.cols + dx) as f64)? * &valid)?);
        let wx = if dx == 0 { &gx } else { &fx };
        let wy = if dy == 0 { &gy } else { &fy };
        weight.push((wx * wy)?.mul(&valid)?.mul(&weights)?);
    }
    // [N, Q, 4, L, P]: one gather and one weighted sum for all corners.
    let map_start: Vec<u32> = (0..n).map(|i| (i * total) as u32).collect();
    let map_start = Tensor::from_vec(map_start, (n, 1, 1, 1, 1), device)?;
    let index = Tensor::stack(&index, 2)?
        .to_dtype(DType::U32)?
        .broadcast_add(&map_start)?
        .flatten_all()?;
    let k = 4 * levels * points;
    let weight = Tensor::stack(&weight, 2)?
        .reshape((n * q, k, 1))?
        .to_dtype(dtype)?;
    let gathered = values
        .reshape((n * total, c))?
        .index_select(&index, 0)?
        .reshape((n * q, k, c))?;
    // A broadcast multiply and a sum, not a batched matmul: the latter would be N·Q tiny GEMM
    // calls, which is slow on CPU.
    Ok(gathered
        .broadcast_mul(&weight)?
        .sum(1)?
        .reshape((n, q, c))?)
}

/// Deformable attention of `heads` heads, `levels` levels and `points` samples per level.
#[derive(Clone, Debug)]
pub struct DeformAttn {
    sampling_offsets: Linear,
    attention_weights: Linear,
    value_proj: Linear,
    output_proj: Linear,
    dim: usize,
    heads: usize,
    levels: usize,
    points: usize,
}

impl DeformAttn {
    /// Builds (or loads) the module under `vb`'s prefix. `heads` must divide `dim`.
    pub fn new(
        dim: usize,
        heads: usize,
        levels: usize,
        points: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if heads == 0 || dim % heads != 0 {
            bail!("deformable attention: {heads} heads do not divide the width {dim}");
        }
        if levels == 0 || points == 0 {
            bail!("deformable attention needs at least one level and one point");
        }
        let hlp = heads * levels * points;
        // Fresh values follow Deformable-DETR's `_reset_parameters`: zero offset and attention
        // weights, Xavier-uniform value/output projections, zero biases; `FusionModel::init`
        // then writes the offset-bias pattern (`offset_bias_init`).
        let zero_linear = |i: usize, o: usize, vb: VarBuilder| -> Result<Linear> {
            Ok(Linear::new(
                vb.get_with_hints((o, i), "weight", Init::Const(0.0))?,
                Some(vb.get_with_hints(o, "bias", Init::Const(0.0))?),
            ))
        };
        let xavier = |i: usize, o: usize, vb: VarBuilder| -> Result<Linear> {
            let b = (6.0 / (i + o) as f64).sqrt();
            Ok(Linear::new(
                vb.get_with_hints((o, i), "weight", Init::Uniform { lo: -b, up: b })?,
                Some(vb.get_with_hints(o, "bias", Init::Const(0.0))?),
            ))
        };
        Ok(Self {
            sampling_offsets: zero_linear(dim, hlp * 2, vb.pp("sampling_offsets"))?,
            attention_weights: zero_linear(dim, hlp, vb.pp("attention_weights"))?,
            value_proj: xavier(dim, dim, vb.pp("value_proj"))?,
            output_proj: xavier(dim, dim, vb.pp("output_proj"))?,
            dim,
            heads,
            levels,
            points,
        })
    }

    /// Deformable-DETR's initial sampling-offset bias `[H·L·P·2]`: head h looks in direction
    /// θ_h = 2πh/H (scaled so the larger component is 1), point p at distance p+1, same for
    /// every level.
    pub fn offset_bias_init(heads: usize, levels: usize, points: usize) -> Vec<f64> {
        let mut v = Vec::with_capacity(heads * levels * points * 2);
        for h in 0..heads {
            let t = 2.0 * std::f64::consts::PI * h as f64 / heads as f64;
            let (x, y) = (t.cos(), t.sin());
            let m = x.abs().max(y.abs());
            for _ in 0..levels {
                for p in 0..points {
                    v.push(x / m * (p + 1) as f64);
                    v.push(y / m * (p + 1) as f64);
                }
            }
        }
        v
    }

    /// The sampling-offset bias tensor to install in a fresh module (see [`Self::offset_bias_init`]).
    pub fn sampling_offsets_bias(&self) -> &Tensor {
        self.sampling_offsets
            .bias()
            .expect("sampling_offsets has a bias")
    }

    /// Attends from `query` `[B, Q, dv]` (reference points `refs` `[Q, 2]`, normalised `(x, y)`)
    /// to `input` `[B, L·S, dv]`: L levels of `grid`, concatenated along tokens.
    pub fn forward(
        &self,
        query: &Tensor,
        refs: &Tensor,
        input: &Tensor,
        grid: Grid,
    ) -> Result<Tensor> {
        let (b, q, dim) = query.dims3()?;
        let (b2, total, dim2) = input.dims3()?;
        if b2 != b || dim != self.dim || dim2 != self.dim || total != self.levels * grid.len() {
            bail!(
                "deformable attention ({} levels of {}×{}, width {}): query {:?} and input {:?} do not fit",
                self.levels,
                grid.rows,
                grid.cols,
                self.dim,
                query.dims(),
                input.dims()
            );
        }
        let (h, l, p) = (self.heads, self.levels, self.points);
        let dh = dim / h;
        let value = self
            .value_proj
            .forward(input)?
            .reshape((b, total, h, dh))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * h, total, dh))?;
        let offsets = self
            .sampling_offsets
            .forward(query)?
            .reshape((b, q, h, l, p, 2))?;
        let attn = candle_nn::ops::softmax(
            &self
                .attention_weights
                .forward(query)?
                .reshape((b, q, h, l * p))?,
            D::Minus1,
        )?
        .reshape((b, q, h, l, p))?
        .permute((0, 2, 1, 3, 4))?
        .contiguous()?
        .reshape((b * h, q, l, p))?;
        // Pixel coordinates: ref·size − 0.5 + offset (offsets are in pixels of the level).
        let pix = |axis: usize, size: usize| -> Result<Tensor> {
            let r = refs
                .narrow(1, axis, 1)?
                .affine(size as f64, -0.5)?
                .reshape((1, q, 1, 1, 1))?;
            let o = offsets.narrow(5, axis, 1)?.squeeze(5)?;
            Ok(o.broadcast_add(&r.to_dtype(o.dtype())?)?
                .permute((0, 2, 1, 3, 4))?
                .contiguous()?
                .reshape((b * h, q, l, p))?)
        };
        let px = pix(0, grid.cols)?;
        let py = pix(1, grid.rows)?;
        let out = sample_bilinear(&value, &px, &py, &attn, grid)?
            .reshape((b, h, q, dh))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, q, dim))?;
        Ok(self.output_proj.forward(&out)?)
    }
}

impl DeformAttn {
    /// `(heads, levels, points)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.heads, self.levels, self.points)
    }
}
