//! The fusion hooks of the LLM: gradients reach every trainable variable, the zero-init identities
//! the paper relies on hold exactly, I_D acts only where and when it should, and the KV cache
//! agrees with full forwards when hooks are active.

use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use candle_nn::{Module, VarBuilder, VarMap};
use mlvf::model::llm::{
    generate_greedy, CrossAttn, CrossAttnBlocks, CrossAttnConfig, CrossAttnInputs, ForwardOptions,
    GenerateConfig, Injections, Llama, LlamaConfig, VisualSpans, XAttnPlacement, XAttnVisibility,
};

const N_VIS: usize = 4;
const VIS_START: usize = 2;
const SEQ: usize = 10;

fn tiny() -> (LlamaConfig, VarMap, Llama) {
    let mut cfg = LlamaConfig::tiny(50);
    cfg.num_hidden_layers = 3;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let llm = Llama::new(&cfg, vb).unwrap();
    (cfg, vm, llm)
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic pseudo-random values without touching candle's global RNG.
    let n: usize = shape.iter().product();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn ids(batch: usize) -> Tensor {
    let v: Vec<u32> = (0..batch * SEQ).map(|i| (i as u32 * 7 + 3) % 50).collect();
    Tensor::from_vec(v, (batch, SEQ), &Device::Cpu).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn set_gates(vm: &VarMap, value: f32) {
    for (name, var) in vm.data().lock().unwrap().iter() {
        if name.ends_with("_gate") {
            var.set(&Tensor::new(&[value], &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

fn masked_ce(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Tensor {
    let (b, t, v) = logits.dims3().unwrap();
    let lp = candle_nn::ops::log_softmax(&logits.reshape((b * t, v)).unwrap(), D::Minus1).unwrap();
    let nll = lp
        .gather(&targets.reshape((b * t, 1)).unwrap(), 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
        .neg()
        .unwrap();
    let m = mask.reshape(b * t).unwrap();
    ((nll * &m).unwrap().sum_all().unwrap()
        / m.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64)
        .unwrap()
}

#[test]
fn every_trainable_var_gets_a_finite_nonzero_gradient() {
    for placement in [
        XAttnPlacement::Pre,
        XAttnPlacement::Post,
        XAttnPlacement::Parallel,
    ] {
        let (cfg, vm, llm) = tiny();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        // Stand-ins for the fusion module's projectors: vision width 16 → LLM width.
        let proj_base = candle_nn::linear(16, cfg.hidden_size, vb.pp("proj_base")).unwrap();
        let proj_id = candle_nn::linear(16, cfg.hidden_size, vb.pp("proj_id")).unwrap();
        let proj_im = candle_nn::linear(16, cfg.hidden_size, vb.pp("proj_im")).unwrap();
        let opts = CrossAttnConfig {
            placement,
            ..Default::default()
        };
        let blocks = CrossAttnBlocks::new(&cfg, &[2], opts, vb.clone()).unwrap();
        // Zero gates give the sub-block weights a zero gradient by construction; open them.
        set_gates(&vm, 0.5);

        let b = 2;
        let vision = randn(&[b, N_VIS, 16], 7);
        let text = llm.embed(&ids(b)).unwrap();
        let embeds = Tensor::cat(
            &[
                &text.narrow(1, 0, VIS_START).unwrap(),
                &proj_base.forward(&vision).unwrap(),
                &text
                    .narrow(1, VIS_START + N_VIS, SEQ - VIS_START - N_VIS)
                    .unwrap(),
            ],
            1,
        )
        .unwrap();
        let mut inj = Injections::new(VisualSpans::uniform(b, VIS_START, N_VIS));
        inj.add(1, proj_id.forward(&vision).unwrap()).unwrap();
        let mut xin = CrossAttnInputs::new();
        xin.insert(2, proj_im.forward(&vision).unwrap());
        let fwd = ForwardOptions {
            injections: Some(&inj),
            cross_attn: Some(CrossAttn {
                blocks: &blocks,
                inputs: &xin,
            }),
            ..Default::default()
        };
        let logits = llm.forward_embeds(&embeds, &fwd, None).unwrap();
        // Loss on the text after the image only (LLaVA masks the prompt and image positions).
        let targets = ids(b).roll(-1, 1).unwrap();
        let mask: Vec<f32> = (0..b * SEQ)
            .map(|i| {
                if i % SEQ >= VIS_START + N_VIS {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (b, SEQ), &Device::Cpu).unwrap();
        let loss = masked_ce(&logits, &targets, &mask);
        let grads = loss.backward().unwrap();

        let data = vm.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        assert!(
            names.iter().any(|n| n.contains("xattn.q_proj"))
                && names.iter().any(|n| n.starts_with("lm_head"))
        );
        for name in names {
            let var: &Var = &data[name];
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{placement:?}: no gradient for {name}"));
            let m = max_abs(g);
            assert!(
                m.is_finite() && m > 0.0,
                "{placement:?}: gradient of {name} is {m}"
            );
        }
    }
}

fn vision_inputs(cfg: &LlamaConfig, b: usize) -> (Injections, CrossAttnInputs) {
    let mut inj = Injections::new(VisualSpans::uniform(b, VIS_START, N_VIS));
    inj.add(1, randn(&[b, N_VIS, cfg.hidden_size], 11)).unwrap();
    let mut xin = CrossAttnInputs::new();
    xin.insert(0, randn(&[b, N_VIS, cfg.hidden_size], 12));
    xin.insert(2, randn(&[b, N_VIS, cfg.hidden_size], 13));
    (inj, xin)
}

#[test]
fn zero_gates_reproduce_the_plain_model_exactly() {
    let (cfg, _, llm) = tiny();
    let embeds = llm.embed(&ids(2)).unwrap();
    let plain = llm
        .forward_embeds(&embeds, &ForwardOptions::default(), None)
        .unwrap();
    let (_, xin) = vision_inputs(&cfg, 2);
    for placement in [
        XAttnPlacement::Pre,
        XAttnPlacement::Post,
        XAttnPlacement::Parallel,
    ] {
        for visibility in [XAttnVisibility::Full, XAttnVisibility::Causal] {
            let xvm = VarMap::new();
            let xvb = VarBuilder::from_varmap(&xvm, DType::F32, &Device::Cpu);
            let opts = CrossAttnConfig {
                placement,
                visibility,
                ..Default::default()
            };
            let blocks = CrossAttnBlocks::new(&cfg, &[0, 2], opts, xvb).unwrap();
            let fwd = ForwardOptions {
                cross_attn: Some(CrossAttn {
                    blocks: &blocks,
                    inputs: &xin,
                }),
                ..Default::default()
            };
            let with = llm.forward_embeds(&embeds, &fwd, None).unwrap();
            assert_eq!(
                max_abs(&(&with - &plain).unwrap()),
                0.0,
                "{placement:?}/{visibility:?}"
            );
            // Opening the gates must change the output (the test above is not vacuous).
            set_gates(&xvm, 0.3);
            let open = llm.forward_embeds(&embeds, &fwd, None).unwrap();
            assert!(
                max_abs(&(&open - &plain).unwrap()) > 1e-3,
                "{placement:?}/{visibility:?}"
            );
        }
    }
}

#[test]
fn zero_injection_reproduces_the_plain_model_exactly() {
    let (cfg, _, llm) = tiny();
    let embeds = llm.embed(&ids(2)).unwrap();
    let plain = llm
        .forward_embeds(&embeds, &ForwardOptions::default(), None)
        .unwrap();
    let mut inj = Injections::new(VisualSpans::uniform(2, VIS_START, N_VIS));
    inj.add(
        0,
        Tensor::zeros((2, N_VIS, cfg.hidden_size), DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap();
    inj.add(
        2,
        Tensor::zeros((2, N_VIS, cfg.hidden_size), DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let with = llm
        .forward_embeds(
            &embeds,
            &ForwardOptions {
                injections: Some(&inj),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(max_abs(&(&with - &plain).unwrap()), 0.0);
}

#[test]
fn injection_changes_only_visual_positions_from_its_layer_on() {
    let (cfg, _, llm) = tiny();
    let b = 2;
    let embeds = llm.embed(&ids(b)).unwrap();
    let hs = |inj: Option<&Injections>| {
        let fwd = ForwardOptions {
            injections: inj,
            output_hidden_states: true,
            ..Default::default()
        };
        llm.forward_full(&embeds, &fwd, None).unwrap().hidden_states
    };
    let plain = hs(None);
    // Element 0: image at 2..6; element 1: a text-only sample (empty span).
    let spans = VisualSpans {
        starts: vec![VIS_START, 0],
        lens: vec![N_VIS, 0],
    };
    let target = 1;
    let mut inj = Injections::new(spans);
    inj.add(target, randn(&[b, N_VIS, cfg.hidden_size], 5))
        .unwrap();
    let injected = hs(Some(&inj));
    assert_eq!(plain.len(), cfg.num_hidden_layers + 1);
    for (i, (p, q)) in plain.iter().zip(&injected).enumerate() {
        let diff = (q - p).unwrap().abs().unwrap().sum(D::Minus1).unwrap(); // [B, T]
        let d: Vec<Vec<f32>> = diff.to_vec2().unwrap();
        assert!(
            d[1].iter().all(|&x| x == 0.0),
            "layer {i}: the text-only sample changed"
        );
        for (pos, &x) in d[0].iter().enumerate() {
            let in_span = (VIS_START..VIS_START + N_VIS).contains(&pos);
            if i < target || pos < VIS_START {
                assert_eq!(
                    x, 0.0,
                    "hidden state {i} position {pos} changed before the injection"
                );
            } else if i == target {
                assert_eq!(x > 0.0, in_span, "input of layer {i}, position {pos}");
            } else if in_span {
                assert!(
                    x > 0.0,
                    "hidden state {i} position {pos} lost the injection"
                );
            }
        }
    }
}

#[test]
fn injections_into_one_layer_add_up() {
    let (cfg, _, llm) = tiny();
    let embeds = llm.embed(&ids(2)).unwrap();
    let a = randn(&[2, N_VIS, cfg.hidden_size], 1);
    let c = randn(&[2, N_VIS, cfg.hidden_size], 2);
    let spans = VisualSpans::uniform(2, VIS_START, N_VIS);
    let mut two = Injections::new(spans.clone());
    two.add(1, a.clone()).unwrap().add(1, c.clone()).unwrap();
    let mut one = Injections::new(spans);
    one.add(1, (&a + &c).unwrap()).unwrap();
    let run = |inj: &Injections| {
        llm.forward_embeds(
            &embeds,
            &ForwardOptions {
                injections: Some(inj),
                ..Default::default()
            },
            None,
        )
        .unwrap()
    };
    assert!(max_abs(&(run(&two) - run(&one)).unwrap()) < 1e-5);
}

#[test]
fn kv_cache_agrees_with_full_forward_when_hooks_are_active() {
    let (cfg, xvm, llm) = tiny();
    for visibility in [XAttnVisibility::Full, XAttnVisibility::Causal] {
        let xvb = VarBuilder::from_varmap(&xvm, DType::F32, &Device::Cpu);
        let opts = CrossAttnConfig {
            placement: XAttnPlacement::Pre,
            visibility,
            ..Default::default()
        };
        let blocks = CrossAttnBlocks::new(&cfg, &[0, 2], opts, xvb).unwrap();
        set_gates(&xvm, 0.7);
        let (inj, xin) = vision_inputs(&cfg, 1);
        let embeds = llm.embed(&ids(1)).unwrap();
        let fwd = ForwardOptions {
            injections: Some(&inj),
            cross_attn: Some(CrossAttn {
                blocks: &blocks,
                inputs: &xin,
            }),
            ..Default::default()
        };
        let full = llm.forward_embeds(&embeds, &fwd, None).unwrap();
        let prefill = VIS_START + N_VIS + 1;
        let mut cache = llm.new_cache();
        let mut parts = vec![llm
            .forward_embeds(
                &embeds.narrow(1, 0, prefill).unwrap(),
                &fwd,
                Some(&mut cache),
            )
            .unwrap()];
        for p in prefill..SEQ {
            // The same options on decode steps: injections are skipped because the cache is warm.
            parts.push(
                llm.forward_embeds(&embeds.narrow(1, p, 1).unwrap(), &fwd, Some(&mut cache))
                    .unwrap(),
            );
        }
        let inc = Tensor::cat(&parts, 1).unwrap();
        assert!(max_abs(&(&inc - &full).unwrap()) < 1e-4, "{visibility:?}");
    }
}

#[test]
fn causal_visibility_hides_later_image_keys_from_early_positions() {
    let (cfg, xvm, llm) = tiny();
    let xvb = VarBuilder::from_varmap(&xvm, DType::F32, &Device::Cpu);
    let causal = CrossAttnConfig {
        visibility: XAttnVisibility::Causal,
        ..Default::default()
    };
    let blocks = CrossAttnBlocks::new(&cfg, &[0], causal, xvb).unwrap();
    set_gates(&xvm, 0.7);
    let embeds = llm.embed(&ids(1)).unwrap();
    let feats = randn(&[1, N_VIS, cfg.hidden_size], 3);
    let mut changed = feats.clone().to_vec3::<f32>().unwrap();
    changed[0][N_VIS - 1].iter_mut().for_each(|x| *x += 1.0); // only the last image key changes
    let changed = Tensor::new(changed, &Device::Cpu).unwrap();
    let run = |f: &Tensor| {
        let mut xin = CrossAttnInputs::new();
        xin.insert(0, f.clone());
        let fwd = ForwardOptions {
            cross_attn: Some(CrossAttn {
                blocks: &blocks,
                inputs: &xin,
            }),
            ..Default::default()
        };
        llm.forward_embeds(&embeds, &fwd, None).unwrap()
    };
    let d = (run(&feats) - run(&changed))
        .unwrap()
        .abs()
        .unwrap()
        .sum(D::Minus1)
        .unwrap()
        .i(0)
        .unwrap();
    let d: Vec<f32> = d.to_vec1().unwrap();
    // Positions 0..N_VIS-2 cannot see key N_VIS-1 (j ≤ t), later ones can.
    assert!(d[..N_VIS - 1].iter().all(|&x| x == 0.0), "{d:?}");
    assert!(d[N_VIS - 1..].iter().all(|&x| x > 0.0), "{d:?}");
}

#[test]
fn greedy_generation_follows_the_argmax_of_full_forwards() {
    let (cfg, xvm, llm) = tiny();
    let xvb = VarBuilder::from_varmap(&xvm, DType::F32, &Device::Cpu);
    let blocks = CrossAttnBlocks::new(&cfg, &[0, 2], CrossAttnConfig::default(), xvb).unwrap();
    set_gates(&xvm, 0.7);
    let (inj, xin) = vision_inputs(&cfg, 1);
    let fwd = ForwardOptions {
        injections: Some(&inj),
        cross_attn: Some(CrossAttn {
            blocks: &blocks,
            inputs: &xin,
        }),
        ..Default::default()
    };
    let prompt = llm.embed(&ids(1)).unwrap();
    let gen = GenerateConfig {
        max_new_tokens: 6,
        eos_token_ids: vec![],
    };
    let out = generate_greedy(&llm, &prompt, &fwd, &gen).unwrap();
    assert_eq!(out.len(), 6);
    // Reference: re-run the whole sequence without a cache for every new token.
    let mut seq = prompt.clone();
    let mut want = Vec::new();
    for _ in 0..6 {
        let logits = llm.forward_embeds(&seq, &fwd, None).unwrap();
        let next = logits
            .i((0, seq.dim(1).unwrap() - 1))
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        want.push(next);
        let e = llm
            .embed(&Tensor::new(&[[next]], &Device::Cpu).unwrap())
            .unwrap();
        seq = Tensor::cat(&[&seq, &e], 1).unwrap();
    }
    assert_eq!(out, want);
    // Stopping at EOS: make the third generated token an EOS id.
    let stop = GenerateConfig {
        max_new_tokens: 6,
        eos_token_ids: vec![want[2]],
    };
    let first_eos = want.iter().position(|&t| t == want[2]).unwrap();
    assert_eq!(
        generate_greedy(&llm, &prompt, &fwd, &stop).unwrap(),
        want[..first_eos].to_vec()
    );
}

#[test]
fn hook_inputs_that_do_not_fit_are_clear_errors() {
    let (cfg, _, llm) = tiny();
    let embeds = llm.embed(&ids(1)).unwrap();
    let mut inj = Injections::new(VisualSpans::uniform(1, SEQ - 2, N_VIS));
    inj.add(0, randn(&[1, N_VIS, cfg.hidden_size], 1)).unwrap();
    let e = format!(
        "{:#}",
        llm.forward_embeds(
            &embeds,
            &ForwardOptions {
                injections: Some(&inj),
                ..Default::default()
            },
            None
        )
        .unwrap_err()
    );
    assert!(e.contains("runs past the sequence length"), "{e}");
    let mut inj = Injections::new(VisualSpans::uniform(1, 0, N_VIS));
    inj.add(7, randn(&[1, N_VIS, cfg.hidden_size], 1)).unwrap();
    let e = format!(
        "{:#}",
        llm.forward_embeds(
            &embeds,
            &ForwardOptions {
                injections: Some(&inj),
                ..Default::default()
            },
            None
        )
        .unwrap_err()
    );
    assert!(e.contains("layer 7"), "{e}");
    let xvm = VarMap::new();
    let blocks = CrossAttnBlocks::new(
        &cfg,
        &[1],
        CrossAttnConfig::default(),
        VarBuilder::from_varmap(&xvm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let xin = CrossAttnInputs::new();
    let fwd = ForwardOptions {
        cross_attn: Some(CrossAttn {
            blocks: &blocks,
            inputs: &xin,
        }),
        ..Default::default()
    };
    let e = format!("{:#}", llm.forward_embeds(&embeds, &fwd, None).unwrap_err());
    assert!(
        e.contains("layer 1") && e.contains("no image features"),
        "{e}"
    );
}

#[test]
fn f32_hooks_train_inside_a_bf16_llm() {
    let cfg = LlamaConfig::tiny(50);
    let frozen_map = VarMap::new();
    let f32_llm = Llama::new(
        &cfg,
        VarBuilder::from_varmap(&frozen_map, DType::F32, &Device::Cpu),
    )
    .unwrap();
    // The same weights as plain bf16 tensors: a frozen LLM as on a GPU.
    let tensors = f32_llm
        .named_tensors()
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::BF16).unwrap()))
        .collect();
    let llm = Llama::new(
        &cfg,
        VarBuilder::from_tensors(tensors, DType::BF16, &Device::Cpu),
    )
    .unwrap();
    let xvm = VarMap::new();
    let xvb = VarBuilder::from_varmap(&xvm, DType::F32, &Device::Cpu);
    let blocks = CrossAttnBlocks::new(&cfg, &[1], CrossAttnConfig::default(), xvb.clone()).unwrap();
    let proj = candle_nn::linear(16, cfg.hidden_size, xvb.pp("proj")).unwrap();
    set_gates(&xvm, 0.5);
    let vision = randn(&[1, N_VIS, 16], 4);
    let feats = proj.forward(&vision).unwrap();
    let mut inj = Injections::new(VisualSpans::uniform(1, VIS_START, N_VIS));
    inj.add(0, feats.clone()).unwrap();
    let mut xin = CrossAttnInputs::new();
    xin.insert(1, feats);
    let fwd = ForwardOptions {
        injections: Some(&inj),
        cross_attn: Some(CrossAttn {
            blocks: &blocks,
            inputs: &xin,
        }),
        ..Default::default()
    };
    let logits = llm
        .forward_embeds(&llm.embed(&ids(1)).unwrap(), &fwd, None)
        .unwrap();
    assert_eq!(logits.dtype(), DType::F32);
    let grads = logits
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .backward()
        .unwrap();
    for var in xvm.all_vars() {
        let g = grads
            .get(&var)
            .expect("every f32 hook variable gets a gradient");
        assert_eq!(g.dtype(), DType::F32);
        assert!(max_abs(g) > 0.0);
    }
}

#[test]
fn batched_generation_decodes_each_row_as_if_alone() {
    use mlvf::model::llm::{generate_greedy_batch, left_pad};
    let (cfg, xvm, llm) = tiny();
    let xvb = VarBuilder::from_varmap(&xvm, DType::F32, &Device::Cpu);
    // Causal visibility: the I_M mask then depends on each row's positions, not the padded index.
    let opts = CrossAttnConfig {
        visibility: XAttnVisibility::Causal,
        ..Default::default()
    };
    let blocks = CrossAttnBlocks::new(&cfg, &[1], opts, xvb).unwrap();
    set_gates(&xvm, 0.7);
    let lens = [SEQ, SEQ - 3, VIS_START + N_VIS];
    let all = llm.embed(&ids(3)).unwrap();
    let prompts: Vec<Tensor> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| all.get(i).unwrap().narrow(0, 0, n).unwrap())
        .collect();
    let id_feats = randn(&[3, N_VIS, cfg.hidden_size], 21);
    let im_feats = randn(&[3, N_VIS, cfg.hidden_size], 22);
    let gen = GenerateConfig {
        max_new_tokens: 5,
        eos_token_ids: vec![],
    };

    let mut want = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let mut inj = Injections::new(VisualSpans::uniform(1, VIS_START, N_VIS));
        inj.add(0, id_feats.narrow(0, i, 1).unwrap()).unwrap();
        let mut xin = CrossAttnInputs::new();
        xin.insert(1, im_feats.narrow(0, i, 1).unwrap());
        let fwd = ForwardOptions {
            injections: Some(&inj),
            cross_attn: Some(CrossAttn {
                blocks: &blocks,
                inputs: &xin,
            }),
            ..Default::default()
        };
        want.push(generate_greedy(&llm, &p.unsqueeze(0).unwrap(), &fwd, &gen).unwrap());
    }

    let (embeds, mask, pads) = left_pad(&prompts).unwrap();
    assert_eq!(pads, vec![0, 3, SEQ - VIS_START - N_VIS]);
    let spans = VisualSpans {
        starts: pads.iter().map(|p| p + VIS_START).collect(),
        lens: vec![N_VIS; 3],
    };
    let mut inj = Injections::new(spans);
    inj.add(0, id_feats).unwrap();
    let mut xin = CrossAttnInputs::new();
    xin.insert(1, im_feats);
    let fwd = ForwardOptions {
        injections: Some(&inj),
        cross_attn: Some(CrossAttn {
            blocks: &blocks,
            inputs: &xin,
        }),
        ..Default::default()
    };
    let got = generate_greedy_batch(&llm, &embeds, &mask, &fwd, &gen).unwrap();
    assert_eq!(got, want);
    // EOS handling per row: stop row 0 at its second token, the others run on.
    let stop = GenerateConfig {
        max_new_tokens: 5,
        eos_token_ids: vec![want[0][1]],
    };
    let got = generate_greedy_batch(&llm, &embeds, &mask, &fwd, &stop).unwrap();
    for (g, w) in got.iter().zip(&want) {
        let cut = w.iter().position(|&t| t == want[0][1]).unwrap_or(w.len());
        assert_eq!(g, &w[..cut].to_vec());
    }
}

#[test]
fn masks_and_positions_of_the_wrong_shape_are_clear_errors() {
    let (_, _, llm) = tiny();
    let embeds = llm.embed(&ids(2)).unwrap();
    let short_mask = Tensor::ones((2, SEQ - 1), DType::U32, &Device::Cpu).unwrap();
    let fwd = ForwardOptions {
        attention_mask: Some(&short_mask),
        ..Default::default()
    };
    let e = format!("{:#}", llm.forward_embeds(&embeds, &fwd, None).unwrap_err());
    assert!(
        e.contains("attention_mask") && e.contains(&format!("[2, {SEQ}]")),
        "{e}"
    );
    let pos = Tensor::zeros((1, SEQ), DType::U32, &Device::Cpu).unwrap();
    let fwd = ForwardOptions {
        position_ids: Some(&pos),
        ..Default::default()
    };
    let e = format!("{:#}", llm.forward_embeds(&embeds, &fwd, None).unwrap_err());
    assert!(e.contains("position_ids"), "{e}");
    let wide = Tensor::zeros((1, 3, 7), DType::F32, &Device::Cpu).unwrap();
    let e = format!(
        "{:#}",
        llm.forward_embeds(&wide, &ForwardOptions::default(), None)
            .unwrap_err()
    );
    assert!(e.contains("width 7"), "{e}");
}

#[test]
fn explicit_positions_equal_the_default_range() {
    // position_ids = 0..T must be exactly the default path (guards the per-row RoPE code).
    let (_, _, llm) = tiny();
    let embeds = llm.embed(&ids(2)).unwrap();
    let plain = llm
        .forward_embeds(&embeds, &ForwardOptions::default(), None)
        .unwrap();
    let pos = Tensor::arange(0u32, SEQ as u32, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .repeat((2, 1))
        .unwrap();
    let fwd = ForwardOptions {
        position_ids: Some(&pos),
        ..Default::default()
    };
    let with = llm.forward_embeds(&embeds, &fwd, None).unwrap();
    assert!(max_abs(&(&with - &plain).unwrap()) < 1e-5);
    // Spreading row 1's positions (0, 2, 4, …) changes its relative offsets, hence its logits;
    // row 0 keeps 0..T and must not move: positions act per row.
    let shifted: Vec<u32> = (0..2 * SEQ as u32)
        .map(|i| {
            if i < SEQ as u32 {
                i
            } else {
                (i - SEQ as u32) * 2
            }
        })
        .collect();
    let shifted = Tensor::from_vec(shifted, (2, SEQ), &Device::Cpu).unwrap();
    let fwd = ForwardOptions {
        position_ids: Some(&shifted),
        ..Default::default()
    };
    let with = llm.forward_embeds(&embeds, &fwd, None).unwrap();
    assert!(max_abs(&(&with.get(0).unwrap() - &plain.get(0).unwrap()).unwrap()) < 1e-5);
    assert!(max_abs(&(&with.get(1).unwrap() - &plain.get(1).unwrap()).unwrap()) > 1e-4);
}
