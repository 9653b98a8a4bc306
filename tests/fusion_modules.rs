//! Fusion modules: shapes for every paradigm × layer set, the zero-init identities, parameter
//! counts against paper.md §1.5, seeded init, save/load.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use mlvf::layers::{resolve, EncoderDepth, Fusion, LayerSet, ResolvedLayers};
use mlvf::model::fusion::*;

const CLIP: EncoderDepth = EncoderDepth {
    layers: 24,
    drop_last: false,
};
const SIGLIP: EncoderDepth = EncoderDepth {
    layers: 27,
    drop_last: true,
};

fn resolved(f: Fusion, set: &str, enc: EncoderDepth, llm_layers: usize) -> ResolvedLayers {
    let set = (f != Fusion::Baseline).then(|| LayerSet::parse(set).unwrap());
    resolve(f, set.as_ref(), enc, llm_layers).unwrap()
}

fn config(f: Fusion, set: &str, enc: EncoderDepth, dv: usize, d: usize) -> FusionConfig {
    let mut c = FusionConfig::new(f, resolved(f, set, enc, 8), dv, d);
    c.mmfuser.heads = 4;
    c.mmfuser.points = 2;
    c
}

/// Hidden states 0..=effective depth, `[b, n, dv]` each, seeded.
fn hidden_states(enc: EncoderDepth, b: usize, n: usize, dv: usize, seed: u64) -> Vec<Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..=enc.effective())
        .map(|_| {
            let v: Vec<f32> = (0..b * n * dv)
                .map(|_| rng.random::<f32>() * 2.0 - 1.0)
                .collect();
            Tensor::from_vec(v, (b, n, dv), &Device::Cpu).unwrap()
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn build(c: &FusionConfig, seed: u64) -> (VarMap, FusionModel) {
    let map = VarMap::new();
    let m = FusionModel::init(c.clone(), &map, seed, DType::F32, &Device::Cpu).unwrap();
    (map, m)
}

fn copy_shared(from: &VarMap, to: &VarMap) {
    let from = from.data().lock().unwrap();
    for (name, var) in to.data().lock().unwrap().iter() {
        var.set(from[name].as_tensor()).unwrap();
    }
}

#[test]
fn every_paradigm_and_layer_set_has_the_right_shapes_on_clip_and_siglip_grids() {
    let (dv, d, b) = (8, 12, 2);
    // CLIP-shaped: 24 layers on a 24×24 grid; SigLIP-shaped: 26 effective layers on 27×27 (all
    // 729 tokens); then tiny 4×4 and 5×5 grids.
    for (enc, n) in [(CLIP, 576), (SIGLIP, 729), (CLIP, 16), (SIGLIP, 25)] {
        let hs = hidden_states(enc, b, n, dv, 1);
        for f in [
            Fusion::ExternalDirect,
            Fusion::ExternalModular,
            Fusion::InternalDirect,
            Fusion::InternalModular,
        ] {
            for set in LayerSet::NAMED {
                let c = config(f, set, enc, dv, d);
                let (_, m) = build(&c, 0);
                let out = m
                    .forward(&hs)
                    .unwrap_or_else(|e| panic!("{f} {set} n={n}: {e:#}"));
                assert_eq!(out.input_tokens.dims(), &[b, n, d], "{f} {set} n={n}");
                match &c.layers {
                    ResolvedLayers::Internal { injections, .. } => {
                        assert_eq!(out.injections.len(), injections.len());
                        for ((l, t), inj) in out.injections.iter().zip(injections) {
                            assert_eq!(*l, inj.llm);
                            assert_eq!(t.dims(), &[b, n, d]);
                        }
                    }
                    _ => assert!(out.injections.is_empty(), "{f} {set}"),
                }
                let v = out
                    .input_tokens
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert!(v.iter().all(|x| x.is_finite()), "{f} {set} n={n}");
            }
        }
    }
}

#[test]
fn e_d_concatenates_selected_layers_and_group_means_before_the_base() {
    let hs = hidden_states(CLIP, 1, 4, 3, 2);
    let c = config(Fusion::ExternalDirect, "all", CLIP, 3, 5);
    let ResolvedLayers::External { groups, base } = &c.layers else {
        panic!()
    };
    let g: Vec<Vec<&Tensor>> = groups
        .iter()
        .map(|g| g.iter().map(|&k| &hs[k]).collect())
        .collect();
    let cat = ExternalDirect::concat(&hs[*base], &g).unwrap();
    assert_eq!(cat.dims(), &[1, 4, 9]);
    // Channels 0..3: mean of layers 1..=12, by hand.
    let mut mean = hs[1].clone();
    for h in &hs[2..=12] {
        mean = (mean + h).unwrap();
    }
    let mean = (mean / 12.0).unwrap();
    assert!(max_abs_diff(&cat.narrow(2, 0, 3).unwrap(), &mean) < 1e-6);
    assert_eq!(max_abs_diff(&cat.narrow(2, 6, 3).unwrap(), &hs[23]), 0.0);
    // Sparse: [V3; V18; V23].
    let c = config(Fusion::ExternalDirect, "3-18-23", CLIP, 3, 5);
    let ResolvedLayers::External { groups, base } = &c.layers else {
        panic!()
    };
    let g: Vec<Vec<&Tensor>> = groups
        .iter()
        .map(|g| g.iter().map(|&k| &hs[k]).collect())
        .collect();
    let cat = ExternalDirect::concat(&hs[*base], &g).unwrap();
    let want = Tensor::cat(&[&hs[3], &hs[18], &hs[23]], 2).unwrap();
    assert_eq!(max_abs_diff(&cat, &want), 0.0);
}

#[test]
fn fresh_e_m_is_exactly_the_baseline_projector_on_the_base_layer() {
    let (dv, d) = (8, 6);
    for (enc, n, set) in [
        (CLIP, 16, "3-18-23"),
        (CLIP, 25, "all"),
        (SIGLIP, 729, "latter"),
    ] {
        let hs = hidden_states(enc, 2, n, dv, 3);
        let em_cfg = config(Fusion::ExternalModular, set, enc, dv, d);
        let (em_map, em) = build(&em_cfg, 7);
        // A baseline that shares the projector weights (`mm_projector.*` copied from E_M's map).
        let (base_map, baseline) = build(&config(Fusion::Baseline, "", enc, dv, d), 99);
        copy_shared(&em_map, &base_map);
        let a = em.forward(&hs).unwrap().input_tokens;
        let b = baseline.forward(&hs).unwrap().input_tokens;
        assert_eq!(max_abs_diff(&a, &b), 0.0, "{set} n={n}");
        // …and a non-zero gate makes it differ (the identity is the gate, not a dead branch).
        em_map.data().lock().unwrap()["mm_fuser.gamma1"]
            .set(&Tensor::full(0.5f32, dv, &Device::Cpu).unwrap())
            .unwrap();
        let a = em.forward(&hs).unwrap().input_tokens;
        assert!(
            max_abs_diff(&a, &b) > 1e-4,
            "{set}: the fuser has no effect"
        );
    }
}

#[test]
fn internal_fusion_input_is_the_baseline_and_a_zero_injection_projector_injects_zero() {
    let (dv, d) = (8, 6);
    let hs = hidden_states(CLIP, 2, 16, dv, 4);
    let c = config(Fusion::InternalDirect, "3-18-23", CLIP, dv, d);
    let (map, m) = build(&c, 5);
    let (base_map, baseline) = build(&config(Fusion::Baseline, "", CLIP, dv, d), 6);
    copy_shared(&map, &base_map);
    let out = m.forward(&hs).unwrap();
    let want = baseline.forward(&hs).unwrap().input_tokens;
    assert_eq!(max_abs_diff(&out.input_tokens, &want), 0.0);
    // Injections are P_j(V_{k_j}) with their own projectors: distinct from each other.
    assert!(max_abs_diff(&out.injections[0].1, &out.injections[1].1) > 1e-4);
    for j in 0..3 {
        for p in ["weight", "bias"] {
            let v = &map.data().lock().unwrap()[&format!("mm_projectors.{j}.2.{p}")];
            v.set(&v.as_tensor().zeros_like().unwrap()).unwrap();
        }
    }
    for (_, t) in m.forward(&hs).unwrap().injections {
        let s = t
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(s, 0.0);
    }
}

#[test]
fn parameter_counts_match_the_paper_for_clip_large_and_mobilellama_1_4b() {
    let count = |f: Fusion, set: &str| {
        let c = FusionConfig::new(f, resolved(f, set, CLIP, 24), 1024, 2048);
        parameter_count(&c).unwrap()
    };
    let m = |x: usize| (x as f64 / 1e6 * 100.0).round() / 100.0;
    assert_eq!(count(Fusion::Baseline, ""), 6_295_552);
    assert_eq!(m(count(Fusion::Baseline, "")), 6.30);
    assert_eq!(m(count(Fusion::ExternalDirect, "18")), 8.39);
    assert_eq!(m(count(Fusion::ExternalDirect, "3-18-23")), 10.49);
    assert_eq!(m(count(Fusion::ExternalDirect, "all")), 10.49);
    assert_eq!(m(count(Fusion::InternalDirect, "3-18-23")), 25.18);
    assert_eq!(m(count(Fusion::InternalDirect, "all")), 157.39);
    assert_eq!(m(count(Fusion::ExternalModular, "3-18-23")), 11.09);
    assert_eq!(m(count(Fusion::ExternalModular, "18")), 10.90);
    assert_eq!(m(count(Fusion::ExternalModular, "former")), 13.06);
    assert_eq!(m(count(Fusion::ExternalModular, "all")), 15.42);
    // I_M's projector bank is I_D's; its sub-blocks are counted by the LLM.
    assert_eq!(
        count(Fusion::InternalModular, "3-18-23"),
        count(Fusion::InternalDirect, "3-18-23")
    );
}

#[test]
fn parameter_shapes_are_exactly_what_a_built_module_holds() {
    for f in [
        Fusion::ExternalDirect,
        Fusion::ExternalModular,
        Fusion::InternalDirect,
    ] {
        let c = config(f, "3-18-23", CLIP, 8, 6);
        let (map, _) = build(&c, 0);
        let mut built: Vec<(String, Vec<usize>)> = map
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().dims().to_vec()))
            .collect();
        built.sort();
        let mut declared = parameter_shapes(&c).unwrap();
        declared.sort();
        assert_eq!(built, declared, "{f}");
    }
}

#[test]
fn seeded_init_is_reproducible_and_the_seed_matters() {
    let c = config(Fusion::ExternalModular, "3-18-23", CLIP, 8, 6);
    let hs = hidden_states(CLIP, 1, 16, 8, 8);
    let out = |seed| build(&c, seed).1.forward(&hs).unwrap().input_tokens;
    assert_eq!(max_abs_diff(&out(3), &out(3)), 0.0);
    assert!(max_abs_diff(&out(3), &out(4)) > 1e-4);
    // Deformable-DETR's offset pattern is installed: head 0 samples along +x at distances 1, 2.
    let (map, _) = build(&c, 3);
    let data = map.data().lock().unwrap();
    let bias = data["mm_fuser.cross_attn.sampling_offsets.bias"]
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(&bias[..4], &[1.0, 0.0, 2.0, 0.0]);
    let gamma = data["mm_fuser.gamma2"].as_tensor().sum_all().unwrap();
    assert_eq!(gamma.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn saved_weights_load_back_frozen_and_missing_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fusion.safetensors");
    let c = config(Fusion::ExternalModular, "former", CLIP, 8, 6);
    let (map, m) = build(&c, 11);
    map.data().lock().unwrap()["mm_fuser.gamma1"]
        .set(&Tensor::full(0.3f32, 8, &Device::Cpu).unwrap())
        .unwrap();
    map.save(&path).unwrap();
    let hs = hidden_states(CLIP, 1, 16, 8, 9);
    let loaded = FusionModel::load(c.clone(), &[&path], DType::F32, &Device::Cpu).unwrap();
    let a = m.forward(&hs).unwrap().input_tokens;
    assert_eq!(
        max_abs_diff(&a, &loaded.forward(&hs).unwrap().input_tokens),
        0.0
    );
    // Resume into a trainable map: init (any seed) then VarMap::load.
    let mut map2 = VarMap::new();
    let m2 = FusionModel::init(c.clone(), &map2, 0, DType::F32, &Device::Cpu).unwrap();
    map2.load(&path).unwrap();
    assert_eq!(
        max_abs_diff(&a, &m2.forward(&hs).unwrap().input_tokens),
        0.0
    );
    // A baseline file cannot be loaded as E_M: the error names the missing tensor.
    let base_path = dir.path().join("baseline.safetensors");
    build(&config(Fusion::Baseline, "", CLIP, 8, 6), 0)
        .0
        .save(&base_path)
        .unwrap();
    let err = FusionModel::load(c, &[&base_path], DType::F32, &Device::Cpu).unwrap_err();
    assert!(format!("{err:#}").contains("mm_fuser"), "{err:#}");
}

#[test]
fn bad_inputs_get_errors_that_say_what_to_do() {
    let c = config(Fusion::ExternalModular, "3-18-23", CLIP, 8, 6);
    let (_, m) = build(&c, 0);
    // CLS left in: 577 tokens.
    let hs = hidden_states(CLIP, 1, 577, 8, 0);
    let e = format!("{:#}", m.forward(&hs).unwrap_err());
    assert!(e.contains("CLS"), "{e}");
    // SigLIP's official 728 tokens.
    let hs = hidden_states(CLIP, 1, 728, 8, 0);
    let e = format!("{:#}", m.forward(&hs).unwrap_err());
    assert!(e.contains("729"), "{e}");
    // Too few hidden states.
    let hs = hidden_states(CLIP, 1, 16, 8, 0);
    let e = format!("{:#}", m.forward(&hs[..10]).unwrap_err());
    assert!(e.contains("hidden state 23"), "{e}");
    // Wrong width.
    let hs = hidden_states(CLIP, 1, 16, 4, 0);
    assert!(format!("{:#}", m.forward(&hs).unwrap_err()).contains("width 4"));
    // Heads must divide dv.
    let mut c2 = c.clone();
    c2.mmfuser.heads = 3;
    let e = format!(
        "{:#}",
        FusionModel::init(c2, &VarMap::new(), 0, DType::F32, &Device::Cpu).unwrap_err()
    );
    assert!(e.contains("divide"), "{e}");
    // Paradigm and layers must agree.
    let mut c3 = c;
    c3.fusion = Fusion::InternalDirect;
    assert!(FusionModel::init(c3, &VarMap::new(), 0, DType::F32, &Device::Cpu).is_err());
    // patch_tokens drops CLIP's CLS.
    let hs = hidden_states(CLIP, 1, 17, 8, 0);
    assert_eq!(patch_tokens(&hs, true).unwrap()[5].dims(), &[1, 16, 8]);
}

#[test]
fn half_precision_modules_track_f32() {
    // GPUs run these in bf16: coordinates stay in f32 inside the sampler, LayerNorm statistics
    // in f32, so a bf16 E_M stays close to the f32 one (bf16 has ~3 significant digits).
    let c = config(Fusion::ExternalModular, "3-18-23", CLIP, 8, 6);
    let (map, m32) = build(&c, 21);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("em.safetensors");
    for (name, var) in map.data().lock().unwrap().iter() {
        if name.contains("gamma") {
            var.set(&Tensor::full(0.5f32, 8, &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    map.save(&path).unwrap();
    let m16 = FusionModel::load(c, &[&path], DType::BF16, &Device::Cpu).unwrap();
    let hs = hidden_states(CLIP, 1, 25, 8, 22);
    let hs16: Vec<Tensor> = hs
        .iter()
        .map(|h| h.to_dtype(DType::BF16).unwrap())
        .collect();
    let a = m32.forward(&hs).unwrap().input_tokens;
    let b = m16.forward(&hs16).unwrap().input_tokens;
    assert_eq!(b.dtype(), DType::BF16);
    let b = b.to_dtype(DType::F32).unwrap();
    let scale = a
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(
        diff < 0.05 * scale,
        "bf16 differs by {diff} (scale {scale})"
    );
}
