//! Trainable towers are differentiable end to end: every weight and the pixels get a finite,
//! non-zero gradient. This catches candle's fused kernels, which silently cut the graph.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use mlvf::model::vision::{Kernels, VisionArch, VisionConfig, VisionTower};

fn tiny(arch: VisionArch) -> VisionConfig {
    VisionConfig {
        hidden_size: 16,
        intermediate_size: 20,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        image_size: 13,
        patch_size: 4,
        ..VisionConfig::hf_defaults(arch)
    }
}

/// Gradients of a loss on the last hidden state plus the pooled output (the only consumer of
/// `post_layernorm`); returns the names of Vars whose gradient is missing, zero or not finite.
fn bad_gradients(arch: VisionArch, kernels: Kernels) -> (Vec<String>, usize) {
    let dev = Device::Cpu;
    let cfg = tiny(arch);
    let map = VarMap::new();
    let mut tower = VisionTower::new_trainable(&cfg, &map, DType::F32, &dev).unwrap();
    tower.set_kernels(kernels);
    let pixels =
        Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 13, 13), &dev).unwrap()).unwrap();
    let hs = tower.forward_hidden_states(pixels.as_tensor()).unwrap();
    let target = Tensor::randn(0f32, 1.0, hs[2].dims(), &dev).unwrap();
    let pooled = tower.post_layernorm(&hs[2]).unwrap();
    let loss = ((&hs[2] - &target)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        + pooled.sin().unwrap().mean_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let mut bad = Vec::new();
    let mut vars: Vec<(String, Var)> = map
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.push(("<pixels>".into(), pixels));
    let total = vars.len();
    for (name, var) in vars {
        let ok = grads.get(var.as_tensor()).is_some_and(|g| {
            let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0)
        });
        if !ok {
            bad.push(name);
        }
    }
    (bad, total)
}

#[test]
fn every_clip_weight_and_the_pixels_get_gradients() {
    let (bad, total) = bad_gradients(VisionArch::Clip, Kernels::Differentiable);
    assert!(bad.is_empty(), "no usable gradient for {bad:?}");
    assert_eq!(total, 3 + 2 + 2 * 16 + 2 + 1); // embeddings, pre-ln, 2 layers, post-ln, pixels
}

#[test]
fn every_siglip_weight_and_the_pixels_get_gradients() {
    let (bad, _) = bad_gradients(VisionArch::Siglip, Kernels::Differentiable);
    assert!(bad.is_empty(), "no usable gradient for {bad:?}");
}

#[test]
fn fused_kernels_really_cut_the_graph() {
    // Documents why trainable towers must not use Kernels::Fused (candle.md §3).
    let (bad, _) = bad_gradients(VisionArch::Clip, Kernels::Fused);
    assert!(
        bad.contains(&"<pixels>".to_string()),
        "fused kernels now have a backward? {bad:?}"
    );
}

#[test]
fn a_tiny_tower_learns_and_saves_what_it_learned() {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    let dev = Device::Cpu;
    let cfg = tiny(VisionArch::Siglip);
    let map = VarMap::new();
    let tower = VisionTower::new_trainable(&cfg, &map, DType::F32, &dev).unwrap();
    let px = Tensor::randn(0f32, 1.0, (4, 3, 13, 13), &dev).unwrap();
    let target = Tensor::randn(0f32, 1.0, (4, 9, 16), &dev).unwrap();
    let loss_of = |t: &VisionTower| -> Tensor {
        let hs = t.forward_hidden_states(&px).unwrap();
        (&hs[2] - &target)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
    };
    let mut opt = AdamW::new(
        map.all_vars(),
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let first = loss_of(&tower).to_scalar::<f32>().unwrap();
    for _ in 0..30 {
        opt.backward_step(&loss_of(&tower)).unwrap();
    }
    let last = loss_of(&tower).to_scalar::<f32>().unwrap();
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    // The saved tower is the trained one.
    let dir = tempfile::tempdir().unwrap();
    tower.save(dir.path()).unwrap();
    let back = VisionTower::from_dir(dir.path(), &dev, DType::F32).unwrap();
    let reloaded = loss_of(&back).to_scalar::<f32>().unwrap();
    assert!((reloaded - last).abs() < 1e-5, "{reloaded} vs {last}");
}
