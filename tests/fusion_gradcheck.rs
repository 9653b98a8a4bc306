//! Finite-difference gradient checks (f64, tiny configurations) for every fusion module and for
//! the bilinear sampler of E_M's deformable attention, plus hand-computed sampling values.
//!
//! Every parameter is set to generic random values first (E_M's fresh offsets/gates are zero,
//! which would make many gradients trivially zero), and the loss is ⟨output, R⟩ for a fixed
//! random R, so every output element contributes. The tolerance (relative 1e-4) leaves room
//! for candle's GELU-erf backward, which uses 0.398942 for 1/√(2π) (errors up to ~3e-5 here);
//! a wrong gradient is off by O(1). The bilinear sampler alone agrees to ~1e-8.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use mlvf::layers::{resolve, EncoderDepth, Fusion, LayerSet};
use mlvf::model::fusion::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TINY: EncoderDepth = EncoderDepth {
    layers: 6,
    drop_last: false,
};

fn rand_tensor(rng: &mut ChaCha8Rng, dims: &[usize], lo: f64, hi: f64) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| lo + (hi - lo) * rng.random::<f64>())
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

fn set_entry(var: &Var, i: usize, value: f64) {
    let mut v = flat(var.as_tensor());
    v[i] = value;
    var.set(&Tensor::from_vec(v, var.as_tensor().dims(), &Device::Cpu).unwrap())
        .unwrap();
}

/// Compares analytic and central-difference gradients of `loss` for up to `per_var` entries
/// of every var; returns the largest relative error seen.
fn check(vars: &[(String, Var)], loss: &dyn Fn() -> Tensor, per_var: usize) -> f64 {
    let l = loss();
    let grads = l.backward().unwrap();
    let h = 1e-6;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut worst = 0.0f64;
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient reached `{name}`"));
        let g = flat(g);
        let n = g.len();
        let picks: Vec<usize> = if n <= per_var {
            (0..n).collect()
        } else {
            (0..per_var).map(|_| rng.random_range(0..n)).collect()
        };
        for i in picks {
            let orig = flat(var.as_tensor())[i];
            set_entry(var, i, orig + h);
            let up = loss().to_scalar::<f64>().unwrap();
            set_entry(var, i, orig - h);
            let down = loss().to_scalar::<f64>().unwrap();
            set_entry(var, i, orig);
            let numeric = (up - down) / (2.0 * h);
            let err = (numeric - g[i]).abs() / (1e-3 + numeric.abs().max(g[i].abs()));
            assert!(
                err < 1e-4,
                "{name}[{i}]: analytic {} vs numeric {numeric} (rel err {err:e})",
                g[i]
            );
            worst = worst.max(err);
        }
    }
    worst
}

fn randomized_module(
    f: Fusion,
    set: &str,
    dv: usize,
    d: usize,
    seed: u64,
) -> (VarMap, FusionModel) {
    let layers = (f != Fusion::Baseline).then(|| LayerSet::parse(set).unwrap());
    let resolved = resolve(f, layers.as_ref(), TINY, 4).unwrap();
    let mut cfg = FusionConfig::new(f, resolved, dv, d);
    cfg.mmfuser.heads = 2;
    cfg.mmfuser.points = 2;
    let map = VarMap::new();
    let m = FusionModel::init(cfg, &map, seed, DType::F64, &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    // Sorted, so the same values land on the same parameters in every run (HashMap order is not).
    for (name, var) in named_vars(&map) {
        // Offsets of a couple of pixels reach neighbouring and border pixels; all else O(1).
        let scale = if name.contains("sampling_offsets") {
            1.7
        } else {
            0.6
        };
        var.set(&rand_tensor(
            &mut rng,
            var.as_tensor().dims(),
            -scale,
            scale,
        ))
        .unwrap();
    }
    (map, m)
}

fn named_vars(map: &VarMap) -> Vec<(String, Var)> {
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

fn module_gradcheck(f: Fusion, set: &str, n: usize) -> f64 {
    let (dv, d) = (4, 3);
    let (map, m) = randomized_module(f, set, dv, d, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let hs: Vec<Var> = (0..=TINY.effective())
        .map(|_| Var::from_tensor(&rand_tensor(&mut rng, &[2, n, dv], -1.0, 1.0)).unwrap())
        .collect();
    let out0 = m
        .forward(&hs.iter().map(|v| v.as_tensor().clone()).collect::<Vec<_>>())
        .unwrap();
    let r_in = rand_tensor(&mut rng, out0.input_tokens.dims(), -1.0, 1.0);
    let r_inj: Vec<Tensor> = out0
        .injections
        .iter()
        .map(|(_, t)| rand_tensor(&mut rng, t.dims(), -1.0, 1.0))
        .collect();
    let loss = || {
        let hs: Vec<Tensor> = hs.iter().map(|v| v.as_tensor().clone()).collect();
        let out = m.forward(&hs).unwrap();
        let mut l = (out.input_tokens * &r_in).unwrap().sum_all().unwrap();
        for ((_, t), r) in out.injections.iter().zip(&r_inj) {
            l = (l + (t * r).unwrap().sum_all().unwrap()).unwrap();
        }
        l
    };
    let mut vars = named_vars(&map);
    // Gradients w.r.t. the vision features the module reads (values of the deformable sampling).
    for k in m.config().layers.vision_indices() {
        vars.push((format!("hidden_states[{k}]"), hs[k].clone()));
    }
    let worst = check(&vars, &loss, 6);
    eprintln!("{f} {set} n={n}: worst relative error {worst:e}");
    worst
}

#[test]
fn baseline_projector_gradients_match_finite_differences() {
    module_gradcheck(Fusion::Baseline, "", 4);
}

#[test]
fn e_d_gradients_match_finite_differences() {
    module_gradcheck(Fusion::ExternalDirect, "3-18-23", 4);
    module_gradcheck(Fusion::ExternalDirect, "all", 4);
}

#[test]
fn e_m_gradients_match_finite_differences_including_offsets_and_values() {
    module_gradcheck(Fusion::ExternalModular, "3-18-23", 9);
    module_gradcheck(Fusion::ExternalModular, "former", 16);
}

#[test]
fn internal_fusion_gradients_match_finite_differences() {
    module_gradcheck(Fusion::InternalDirect, "3-18-23", 4);
    module_gradcheck(Fusion::InternalModular, "latter", 4);
}

#[test]
fn bilinear_sampling_gradients_wrt_coordinates_values_and_weights() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let grid = Grid { rows: 3, cols: 4 };
    let (n, q, l, p, c) = (2, 3, 2, 2, 3);
    let values = Var::from_tensor(&rand_tensor(&mut rng, &[n, l * 12, c], -1.0, 1.0)).unwrap();
    // Coordinates cover the interior and half a pixel beyond every border (zero padding).
    let px = Var::from_tensor(&rand_tensor(&mut rng, &[n, q, l, p], -1.4, 4.4)).unwrap();
    let py = Var::from_tensor(&rand_tensor(&mut rng, &[n, q, l, p], -1.4, 3.4)).unwrap();
    let w = Var::from_tensor(&rand_tensor(&mut rng, &[n, q, l, p], 0.0, 1.0)).unwrap();
    let r = rand_tensor(&mut rng, &[n, q, c], -1.0, 1.0);
    let loss = || {
        sample_bilinear(
            values.as_tensor(),
            px.as_tensor(),
            py.as_tensor(),
            w.as_tensor(),
            grid,
        )
        .unwrap()
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap()
    };
    let vars = vec![
        ("values".to_string(), values.clone()),
        ("px".to_string(), px.clone()),
        ("py".to_string(), py.clone()),
        ("weights".to_string(), w.clone()),
    ];
    let worst = check(&vars, &loss, 100);
    eprintln!("sample_bilinear: worst relative error {worst:e}");
}

#[test]
fn bilinear_sampling_matches_grid_sample_by_hand() {
    // One map, one channel, a 2×3 grid with values 0..6 (row-major).
    let grid = Grid { rows: 2, cols: 3 };
    let values =
        Tensor::from_vec((0..6).map(|x| x as f64).collect(), (1, 6, 1), &Device::Cpu).unwrap();
    let at = |x: f64, y: f64| {
        let t = |v: f64| Tensor::from_vec(vec![v], (1, 1, 1, 1), &Device::Cpu).unwrap();
        sample_bilinear(&values, &t(x), &t(y), &t(1.0), grid)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[0]
    };
    // Pixel centres return the value itself.
    assert!((at(2.0, 1.0) - 5.0).abs() < 1e-12);
    // Between (0,0)=0, (1,0)=1, (0,1)=3, (1,1)=4 at (0.25, 0.5): 0.25·1 + 0.5·3 = 1.75.
    assert!((at(0.25, 0.5) - 1.75).abs() < 1e-12);
    // Half a pixel left of (0,1)=3: half the weight falls outside and reads zero.
    assert!((at(-0.5, 1.0) - 1.5).abs() < 1e-12);
    // Far outside: zero.
    assert_eq!(at(-3.0, 7.0), 0.0);
}

#[test]
fn zero_offsets_sample_each_query_at_its_own_patch() {
    // Reference points at the patch centres + zero offsets hit pixel centres exactly, so a
    // deformable attention with zero offset weights/bias reads each query's own position.
    let grid = Grid { rows: 5, cols: 5 };
    let refs = reference_points(grid, DType::F64, &Device::Cpu).unwrap();
    let r = refs.to_vec2::<f64>().unwrap();
    assert_eq!(r[0], vec![0.1, 0.1]);
    assert_eq!(r[7], vec![0.5, 0.3]); // row 1, col 2
    let px = refs
        .narrow(1, 0, 1)
        .unwrap()
        .affine(5.0, -0.5)
        .unwrap()
        .reshape((1, 25, 1, 1))
        .unwrap();
    let py = refs
        .narrow(1, 1, 1)
        .unwrap()
        .affine(5.0, -0.5)
        .unwrap()
        .reshape((1, 25, 1, 1))
        .unwrap();
    let values = Tensor::arange(0f64, 25.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 25, 1))
        .unwrap();
    let ones = Tensor::ones((1, 25, 1, 1), DType::F64, &Device::Cpu).unwrap();
    let out = sample_bilinear(&values, &px, &py, &ones, grid).unwrap();
    let got = out.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    for (i, v) in got.iter().enumerate() {
        assert!((v - i as f64).abs() < 1e-9, "query {i} read {v}");
    }
}
