//! Overfit smoke test: a tiny E_D and a tiny E_M module, followed by a frozen linear "LLM"
//! read-out, learn a handful of samples with our AdamW, schedule, clipping and gradient
//! accumulation. A working training path drives the loss down by more than 90 %.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use mlvf::layers::{resolve, EncoderDepth, Fusion, LayerSet};
use mlvf::model::fusion::*;
use mlvf::model::loss::{masked_cross_entropy, IGNORE_INDEX};
use mlvf::train::grad::{clip_grad_norm, missing_grads, GradAccumulator};
use mlvf::train::optim::{named_vars, param_groups, AdamW, AdamWConfig};
use mlvf::train::schedule::{CosineSchedule, Warmup};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TINY: EncoderDepth = EncoderDepth {
    layers: 6,
    drop_last: false,
};
const VOCAB: usize = 5;

struct Sample {
    hidden: Vec<Tensor>,
    labels: Tensor,
}

fn samples(n: usize, tokens: usize, dv: usize) -> Vec<Sample> {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    (0..n)
        .map(|_| {
            let hidden = (0..=TINY.effective())
                .map(|_| {
                    let v: Vec<f32> = (0..tokens * dv)
                        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
                        .collect();
                    Tensor::from_vec(v, (1, tokens, dv), &Device::Cpu).unwrap()
                })
                .collect();
            // Random targets per visual token; every fourth position is ignored.
            let labels: Vec<i64> = (0..tokens)
                .map(|t| {
                    if t % 4 == 3 {
                        IGNORE_INDEX
                    } else {
                        rng.random_range(0..VOCAB as i64)
                    }
                })
                .collect();
            Sample {
                hidden,
                labels: Tensor::from_vec(labels, (1, tokens), &Device::Cpu).unwrap(),
            }
        })
        .collect()
}

fn overfit(fusion: Fusion, set: &str) -> (f32, f32, VarMap) {
    let (dv, d, tokens) = (8, 32, 16);
    let layers = resolve(fusion, Some(&LayerSet::parse(set).unwrap()), TINY, 4).unwrap();
    let mut cfg = FusionConfig::new(fusion, layers, dv, d);
    cfg.mmfuser.heads = 2;
    cfg.mmfuser.points = 2;
    let map = VarMap::new();
    let model = FusionModel::init(cfg, &map, 0, DType::F32, &Device::Cpu).unwrap();
    // The frozen "LLM": a fixed linear read-out from width d to the vocabulary (a plain tensor,
    // not a Var, so the optimiser never sees it).
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let w: Vec<f32> = (0..d * VOCAB)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * 0.5)
        .collect();
    let readout =
        candle_nn::Linear::new(Tensor::from_vec(w, (VOCAB, d), &Device::Cpu).unwrap(), None);

    let data = samples(4, tokens, dv);
    let named = named_vars(&map);
    let vars: Vec<_> = named.iter().map(|(_, v)| v.clone()).collect();
    let steps = 150;
    let schedule = CosineSchedule::new(steps, Warmup::Ratio(0.05)).unwrap();
    let mut opt = AdamW::new(
        param_groups(named.clone(), 1e-2, 0.0),
        AdamWConfig::default(),
    )
    .unwrap();
    let loss_of = |s: &Sample| {
        let out = model.forward(&s.hidden).unwrap();
        masked_cross_entropy(&readout.forward(&out.input_tokens).unwrap(), &s.labels).unwrap()
    };
    let mean_loss = || {
        data.iter()
            .map(|s| loss_of(s).to_scalar::<f32>().unwrap())
            .sum::<f32>()
            / data.len() as f32
    };
    let first = mean_loss();
    let mut acc = GradAccumulator::new(vars.clone());
    for step in 0..steps {
        // Two micro-batches of two samples each, averaged.
        for pair in data.chunks(2) {
            let l = ((loss_of(&pair[0]) + loss_of(&pair[1])).unwrap() / 2.0).unwrap();
            let grads = l.backward().unwrap();
            if step == 0 {
                // Every trainable tensor must be reached by backprop (with E_M's gates at zero
                // the fuser's inner weights get zero gradients, but they are in the graph).
                let missing = missing_grads(&grads, &named);
                assert!(missing.is_empty(), "{fusion}: no gradient for {missing:?}");
            }
            acc.add(grads).unwrap();
        }
        let mut g = acc.take(0.5).unwrap();
        let norm = clip_grad_norm(&mut g, &vars, 1.0).unwrap();
        assert!(norm.is_finite());
        opt.step(&g, schedule.multiplier(step)).unwrap();
    }
    (first, mean_loss(), map)
}

#[test]
fn tiny_e_d_overfits_a_handful_of_samples() {
    let t = std::time::Instant::now();
    let (first, last, _) = overfit(Fusion::ExternalDirect, "3-18-23");
    eprintln!("E_D: loss {first:.4} → {last:.4} in {:?}", t.elapsed());
    assert!(last < 0.1 * first, "E_D loss {first} → {last}");
}

#[test]
fn tiny_e_m_overfits_a_handful_of_samples() {
    let t = std::time::Instant::now();
    let (first, last, map) = overfit(Fusion::ExternalModular, "3-18-23");
    eprintln!("E_M: loss {first:.4} → {last:.4} in {:?}", t.elapsed());
    assert!(last < 0.1 * first, "E_M loss {first} → {last}");
    // The fuser took part: its zero-initialised gates moved.
    let data = map.data().lock().unwrap();
    for g in ["mm_fuser.gamma1", "mm_fuser.gamma2"] {
        let moved = data[g].as_tensor().abs().unwrap().sum_all().unwrap();
        assert!(
            moved.to_scalar::<f32>().unwrap() > 1e-3,
            "{g} stayed at zero"
        );
    }
}
