//! Training toolkit: masked cross-entropy, clipping, accumulation, AdamW (+ state round trip),
//! the cosine schedule, checkpoints.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use mlvf::model::loss::*;
use mlvf::train::checkpoint::*;
use mlvf::train::grad::*;
use mlvf::train::optim::*;
use mlvf::train::schedule::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn t1(v: &[f64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
}

fn vec1(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

#[test]
fn masked_cross_entropy_is_the_mean_over_non_ignored_tokens() {
    let logits = [[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [3.0, -1.0, 2.0]];
    let labels = [0i64, -100, 2];
    let t = Tensor::new(&[logits], &Device::Cpu).unwrap(); // [1, 3, 3] f64
    let l = Tensor::new(&[labels], &Device::Cpu).unwrap();
    let got = masked_cross_entropy(&t, &l)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let nll = |row: &[f64; 3], y: usize| {
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        lse - row[y]
    };
    let want = (nll(&logits[0], 0) + nll(&logits[2], 2)) / 2.0;
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    // Causal shift: logits at t predict label t+1; the first label never counts.
    let l2 = Tensor::new(&[[7i64, 1, -100]], &Device::Cpu).unwrap();
    let got = causal_lm_loss(&t, &l2).unwrap().to_scalar::<f64>().unwrap();
    assert!((got - nll(&logits[0], 1)).abs() < 1e-12);
    // f32 logits give the same value (computed in f32).
    let got32 = masked_cross_entropy(&t.to_dtype(DType::F32).unwrap(), &l)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((got32 as f64 - want).abs() < 1e-5);
}

#[test]
fn bad_labels_are_reported() {
    let t = Tensor::zeros((1, 2, 3), DType::F32, &Device::Cpu).unwrap();
    let all_ignored = Tensor::new(&[[-100i64, -100]], &Device::Cpu).unwrap();
    let e = masked_cross_entropy(&t, &all_ignored)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no target token"), "{e}");
    let out_of_vocab = Tensor::new(&[[1i64, 3]], &Device::Cpu).unwrap();
    let e = masked_cross_entropy(&t, &out_of_vocab)
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 3") && e.contains("0..3"), "{e}");
    let wrong_shape = Tensor::new(&[1i64, 2], &Device::Cpu).unwrap();
    assert!(masked_cross_entropy(&t, &wrong_shape).is_err());
}

#[test]
fn masked_cross_entropy_gradient_is_softmax_minus_onehot_over_count() {
    let v = Var::new(&[[0.2f64, -0.3, 0.9], [1.0, 0.0, -1.0]], &Device::Cpu).unwrap();
    let labels = Tensor::new(&[1i64, -100], &Device::Cpu).unwrap();
    let g = masked_cross_entropy(v.as_tensor(), &labels)
        .unwrap()
        .backward()
        .unwrap();
    let g = g.get(v.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
    let row = [0.2f64, -0.3, 0.9];
    let z: f64 = row.iter().map(|x| x.exp()).sum();
    for (j, x) in row.iter().enumerate() {
        let want = x.exp() / z - if j == 1 { 1.0 } else { 0.0 };
        assert!((g[0][j] - want).abs() < 1e-12);
    }
    assert_eq!(g[1], vec![0.0, 0.0, 0.0], "ignored rows get no gradient");
}

#[test]
fn clipping_scales_to_the_max_norm_and_returns_the_pre_clip_norm() {
    let a = Var::from_tensor(&t1(&[1.0, 1.0])).unwrap();
    let b = Var::from_tensor(&t1(&[1.0])).unwrap();
    // grads: a → [0, 3], b → [4]: global norm 5.
    let loss = ((a.as_tensor() * t1(&[0.0, 3.0]))
        .unwrap()
        .sum_all()
        .unwrap()
        + (b.as_tensor() * 4.0).unwrap().sum_all().unwrap())
    .unwrap();
    let vars = vec![a.clone(), b.clone()];
    let mut g = loss.backward().unwrap();
    assert!((grad_norm(&g, &vars).unwrap() - 5.0).abs() < 1e-12);
    let pre = clip_grad_norm(&mut g, &vars, 1.0).unwrap();
    assert!((pre - 5.0).abs() < 1e-12);
    let ga = vec1(g.get(a.as_tensor()).unwrap());
    let gb = vec1(g.get(b.as_tensor()).unwrap());
    assert!((ga[1] - 0.6).abs() < 1e-6 && (gb[0] - 0.8).abs() < 1e-6);
    assert!((grad_norm(&g, &vars).unwrap() - 1.0).abs() < 1e-6);
    // Below the threshold nothing changes.
    let mut g = loss.backward().unwrap();
    assert!((clip_grad_norm(&mut g, &vars, 10.0).unwrap() - 5.0).abs() < 1e-12);
    assert_eq!(vec1(g.get(b.as_tensor()).unwrap()), vec![4.0]);
}

#[test]
fn accumulated_micro_batch_gradients_equal_the_full_batch_gradient() {
    let w = Var::from_tensor(&t1(&[0.5, -1.0, 2.0])).unwrap();
    let xs = [t1(&[1.0, 2.0, 3.0]), t1(&[-1.0, 0.5, 0.0])];
    let loss_of = |x: &Tensor| {
        (w.as_tensor() * x)
            .unwrap()
            .sum_all()
            .unwrap()
            .sqr()
            .unwrap()
    };
    // Full batch: mean of the two losses.
    let full = ((loss_of(&xs[0]) + loss_of(&xs[1])).unwrap() / 2.0).unwrap();
    let gf = full.backward().unwrap();
    let mut acc = GradAccumulator::new(vec![w.clone()]);
    for x in &xs {
        acc.add(loss_of(x).backward().unwrap()).unwrap();
    }
    assert_eq!(acc.micro_batches(), 2);
    let ga = acc.take(0.5).unwrap();
    let (a, b) = (
        vec1(ga.get(w.as_tensor()).unwrap()),
        vec1(gf.get(w.as_tensor()).unwrap()),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-12);
    }
    assert_eq!(acc.micro_batches(), 0);
    assert!(missing_grads(&ga, &[("w".into(), w.clone())]).is_empty());
    let other = Var::from_tensor(&t1(&[1.0])).unwrap();
    assert_eq!(
        missing_grads(&ga, &[("other".into(), other)]),
        vec!["other"]
    );
}

/// A scalar AdamW written out by hand (PyTorch's algorithm), for comparison.
fn reference_adamw(p0: f64, grads: &[f64], lr: f64, wd: f64) -> f64 {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
    for (i, g) in grads.iter().enumerate() {
        let t = (i + 1) as i32;
        p *= 1.0 - lr * wd;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        p -= lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps);
    }
    p
}

fn quadratic_grads(vars: &[(String, Var)]) -> candle_core::backprop::GradStore {
    // loss = Σ 0.5·(p − 3)²  → grad p − 3.
    let mut loss = Tensor::new(0f64, &Device::Cpu).unwrap();
    for (_, v) in vars {
        let d = (v.as_tensor() - 3.0).unwrap();
        loss = (loss + (d.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap()).unwrap();
    }
    loss.backward().unwrap()
}

#[test]
fn adamw_matches_the_reference_with_decay_only_on_weights() {
    let w = Var::from_tensor(&t1(&[1.0])).unwrap();
    let b = Var::from_tensor(&t1(&[1.0])).unwrap();
    let named = vec![
        ("proj.0.weight".to_string(), w.clone()),
        ("proj.0.bias".to_string(), b.clone()),
    ];
    let groups = param_groups(named.clone(), 0.1, 0.05);
    assert_eq!(groups[0].params[0].0, "proj.0.weight");
    assert_eq!(groups[1].params[0].0, "proj.0.bias");
    let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
    let (mut wg, mut bg) = (vec![], vec![]);
    for _ in 0..3 {
        let g = quadratic_grads(&named);
        wg.push(vec1(g.get(w.as_tensor()).unwrap())[0]);
        bg.push(vec1(g.get(b.as_tensor()).unwrap())[0]);
        opt.step(&g, 1.0).unwrap();
    }
    // Each step's grad depends on p, so replay the same grads in the reference.
    let want_w = reference_adamw(1.0, &wg, 0.1, 0.05);
    assert!((vec1(w.as_tensor())[0] - want_w).abs() < 1e-12);
    // First step by hand, grad −2: 1·(1 − 0.1·0.05) + 0.1 = 1.095 (the normalised step is ±lr).
    assert!((reference_adamw(1.0, &[-2.0], 0.1, 0.05) - 1.095).abs() < 1e-9);
    // The bias is not decayed.
    let want_b = reference_adamw(1.0, &bg, 0.1, 0.0);
    assert!((want_b - reference_adamw(1.0, &bg, 0.1, 0.05)).abs() > 1e-4);
    assert!((vec1(b.as_tensor())[0] - want_b).abs() < 1e-12);
    assert_eq!(opt.steps(), 3);
}

#[test]
fn no_decay_rule_follows_hf() {
    for n in [
        "mm_projector.0.bias",
        "mm_fuser.query_norm.weight",
        "model.layers.3.input_layernorm.weight",
        "model.norm.weight",
        "vision_model.pre_layrnorm.weight",
    ] {
        assert!(is_no_decay(n), "{n}");
    }
    for n in [
        "mm_projector.0.weight",
        "mm_fuser.gamma1",
        "mm_fuser.cross_attn.value_proj.weight",
    ] {
        assert!(!is_no_decay(n), "{n}");
    }
}

fn fresh_params(seed: u64) -> (VarMap, Vec<(String, Var)>) {
    let map = VarMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, n) in [("a.weight", 4), ("a.bias", 2), ("n.norm.weight", 3)] {
        let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let var = Var::from_tensor(&t1(&v)).unwrap();
        map.data().lock().unwrap().insert(name.into(), var);
    }
    let named = named_vars(&map);
    (map, named)
}

#[test]
fn adamw_state_round_trips_and_resumed_runs_are_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let sched = CosineSchedule::new(6, Warmup::Steps(2)).unwrap();
    // Uninterrupted: 6 steps.
    let (_, named) = fresh_params(1);
    let mut opt = AdamW::new(param_groups(named.clone(), 0.05, 0.1), Default::default()).unwrap();
    for s in 0..6 {
        opt.step(&quadratic_grads(&named), sched.multiplier(s))
            .unwrap();
    }
    let want: Vec<Vec<f64>> = named.iter().map(|(_, v)| vec1(v.as_tensor())).collect();
    // Interrupted after 3: checkpoint, rebuild everything, restore, 3 more.
    let (map, named) = fresh_params(1);
    let mut opt = AdamW::new(param_groups(named.clone(), 0.05, 0.1), Default::default()).unwrap();
    for s in 0..3 {
        opt.step(&quadratic_grads(&named), sched.multiplier(s))
            .unwrap();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let _: u64 = rng.random();
    let state = TrainState {
        step: 3,
        data_position: 12,
        seed: 77,
        rng: RngState::capture(&rng),
        extra: serde_json::json!({"loss": 0.5}),
    };
    save_checkpoint(dir.path(), &state, &map, &opt).unwrap();
    let next_draw: u64 = rng.random();

    let (mut map2, named2) = fresh_params(2); // different values: restore must overwrite them
    let mut opt2 = AdamW::new(param_groups(named2.clone(), 0.05, 0.1), Default::default()).unwrap();
    let ck = latest_checkpoint(dir.path()).unwrap().unwrap();
    let st = ck.restore(&mut map2, &mut opt2).unwrap();
    assert_eq!(st, state);
    assert_eq!(opt2.steps(), 3);
    let mut rng2 = st.rng.restore().unwrap();
    assert_eq!(rng2.random::<u64>(), next_draw, "RNG continues mid-stream");
    for s in st.step..6 {
        opt2.step(&quadratic_grads(&named2), sched.multiplier(s))
            .unwrap();
    }
    let got: Vec<Vec<f64>> = named2.iter().map(|(_, v)| vec1(v.as_tensor())).collect();
    assert_eq!(got, want);
}

#[test]
fn optimiser_state_for_another_model_is_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("opt.safetensors");
    let (_, named) = fresh_params(1);
    let mut opt = AdamW::new(param_groups(named.clone(), 0.05, 0.1), Default::default()).unwrap();
    opt.step(&quadratic_grads(&named), 1.0).unwrap();
    opt.save_state(&p).unwrap();
    let other = Var::from_tensor(&t1(&[1.0])).unwrap();
    let mut opt2 = AdamW::new(
        param_groups(vec![("x.weight".to_string(), other)], 0.1, 0.0),
        Default::default(),
    )
    .unwrap();
    let e = format!("{:#}", opt2.load_state(&p).unwrap_err());
    assert!(e.contains("a.weight") || e.contains("a.bias"), "{e}");
}

#[test]
fn cosine_schedule_matches_hf_at_key_points() {
    let s = CosineSchedule::new(100, Warmup::Steps(10)).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(s.multiplier(0), 0.0));
    assert!(close(s.multiplier(5), 0.5));
    assert!(close(s.multiplier(10), 1.0));
    assert!(close(s.multiplier(55), 0.5));
    assert!(close(
        s.multiplier(25),
        0.5 * (1.0 + (std::f64::consts::PI * 15.0 / 90.0).cos())
    ));
    assert!(close(s.multiplier(100), 0.0));
    // Ratio: ceil(total · ratio).
    assert_eq!(
        CosineSchedule::new(1000, Warmup::Ratio(0.03))
            .unwrap()
            .warmup_steps,
        30
    );
    assert_eq!(
        CosineSchedule::new(10, Warmup::Ratio(0.03))
            .unwrap()
            .warmup_steps,
        1
    );
    // No warmup: full lr at the first step.
    assert!(close(
        CosineSchedule::new(4, Warmup::Steps(0))
            .unwrap()
            .multiplier(0),
        1.0
    ));
    assert!(CosineSchedule::new(0, Warmup::Steps(0)).is_err());
    assert!(CosineSchedule::new(10, Warmup::Ratio(1.5)).is_err());
}

#[test]
fn the_newest_valid_checkpoint_wins_and_pruning_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    assert!(latest_checkpoint(dir.path()).unwrap().is_none());
    let (map, named) = fresh_params(3);
    let opt = AdamW::new(param_groups(named, 0.1, 0.0), Default::default()).unwrap();
    let state = |step| TrainState {
        step,
        data_position: step * 4,
        seed: 1,
        rng: RngState::capture(&ChaCha8Rng::seed_from_u64(1)),
        extra: serde_json::Value::Null,
    };
    for step in [10, 20, 30] {
        save_checkpoint(dir.path(), &state(step), &map, &opt).unwrap();
    }
    // Saving the same step again replaces it.
    save_checkpoint(dir.path(), &state(30), &map, &opt).unwrap();
    assert_eq!(
        latest_checkpoint(dir.path()).unwrap().unwrap().state.step,
        30
    );
    // Truncate the newest weights: it no longer verifies, 20 wins.
    let w = dir.path().join("checkpoint-00000030/weights.safetensors");
    let len = std::fs::metadata(&w).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&w)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = read_checkpoint(&dir.path().join("checkpoint-00000030")).unwrap_err();
    assert!(format!("{e:#}").contains("checksum"), "{e:#}");
    assert_eq!(
        latest_checkpoint(dir.path()).unwrap().unwrap().state.step,
        20
    );
    // A half-written temp dir is never taken for a checkpoint.
    std::fs::create_dir(dir.path().join(".tmp-checkpoint-00000040-1")).unwrap();
    assert_eq!(list_checkpoints(dir.path()).unwrap().len(), 3);
    prune_checkpoints(dir.path(), 2).unwrap();
    let left: Vec<u64> = list_checkpoints(dir.path())
        .unwrap()
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(left, vec![30, 20]);
}

#[test]
fn atomic_weight_saves_leave_no_temp_files_and_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let (map, named) = fresh_params(4);
    let path = dir.path().join("out/fusion.safetensors");
    save_varmap_atomic(&map, &path).unwrap();
    let (mut map2, named2) = fresh_params(5);
    map2.load(&path).unwrap();
    for ((_, a), (_, b)) in named.iter().zip(&named2) {
        assert_eq!(vec1(a.as_tensor()), vec1(b.as_tensor()));
    }
    let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec!["fusion.safetensors"]);
}
