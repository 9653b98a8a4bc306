//! Parity with transformers: the fixtures in tests/fixtures/llm were written by
//! tests/fixtures/make_llm_fixtures.py (random-weight LlamaForCausalLM, f32).

use candle_core::{DType, Device, IndexOp, Tensor};
use mlvf::model::hub::ModelFiles;
use mlvf::model::llm::{ForwardOptions, Llama, RopeScaling};
use std::path::PathBuf;

const TOL: f32 = 1e-4;
const FIXTURES: [&str; 3] = ["tiny-tied", "tiny-untied-linear", "tiny-llama3"];

fn fixture(name: &str) -> (Llama, ModelFiles, std::collections::HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llm")
        .join(name);
    let files = ModelFiles::from_dir(&dir).unwrap();
    let model = Llama::load(&files, DType::F32, &Device::Cpu).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    (model, files, expected)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
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

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

#[test]
fn fixtures_cover_tied_untied_and_both_rope_scalings() {
    let kinds: Vec<(bool, RopeScaling)> = FIXTURES
        .iter()
        .map(|n| {
            let (m, _, _) = fixture(n);
            (
                m.config().tie_word_embeddings,
                m.config().rope_scaling.clone(),
            )
        })
        .collect();
    assert!(kinds[0].0 && kinds[0].1 == RopeScaling::None);
    assert!(!kinds[1].0 && matches!(kinds[1].1, RopeScaling::Linear { factor } if factor == 2.0));
    assert!(matches!(kinds[2].1, RopeScaling::Llama3 { .. }));
    let (m, _, _) = fixture("tiny-untied-linear");
    assert_eq!(
        (
            m.config().num_attention_heads,
            m.config().num_key_value_heads
        ),
        (4, 2),
        "GQA"
    );
}

#[test]
fn all_position_logits_match_transformers() {
    for name in FIXTURES {
        let (model, _, exp) = fixture(name);
        let logits = model.forward_ids(&ids(&exp["input_ids"]), None).unwrap();
        let d = max_abs_diff(&logits, &exp["logits"]);
        eprintln!("{name}: full forward max|Δ| = {d:.2e}");
        assert!(d <= TOL, "{name}: max|Δ| {d}");
    }
}

#[test]
fn incremental_decoding_matches_transformers_kv_cache() {
    for name in FIXTURES {
        let (model, _, exp) = fixture(name);
        let ids = ids(&exp["input_ids"]);
        let t = ids.dim(1).unwrap();
        let prefill = exp["prefill_len"].to_vec1::<i64>().unwrap()[0] as usize;
        let mut cache = model.new_cache();
        let mut parts = vec![model
            .forward_ids(&ids.narrow(1, 0, prefill).unwrap(), Some(&mut cache))
            .unwrap()];
        for p in prefill..t {
            parts.push(
                model
                    .forward_ids(&ids.narrow(1, p, 1).unwrap(), Some(&mut cache))
                    .unwrap(),
            );
        }
        assert_eq!(cache.len(), t);
        let inc = Tensor::cat(&parts, 1).unwrap();
        let d = max_abs_diff(&inc, &exp["incremental_logits"]);
        eprintln!("{name}: cached decoding max|Δ| = {d:.2e}");
        assert!(d <= TOL, "{name}: cached max|Δ| {d}");
        // And with vs. without the cache, in our own implementation.
        let full = model.forward_ids(&ids, None).unwrap();
        assert!(max_abs_diff(&inc, &full) <= TOL);
    }
}

#[test]
fn right_padded_batch_matches_transformers_at_real_positions() {
    for name in FIXTURES {
        let (model, _, exp) = fixture(name);
        let mask = &exp["padded_mask"];
        let logits = model
            .forward_embeds(
                &model.embed(&ids(&exp["padded_ids"])).unwrap(),
                &ForwardOptions {
                    attention_mask: Some(mask),
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        let real: Vec<Vec<i64>> = mask.to_vec2().unwrap();
        for (b, row) in real.iter().enumerate() {
            let n = row.iter().filter(|&&m| m != 0).count();
            let d = max_abs_diff(
                &logits.i((b, 0..n)).unwrap(),
                &exp["padded_logits"].i((b, 0..n)).unwrap(),
            );
            assert!(d <= TOL, "{name} row {b}: max|Δ| {d}");
        }
    }
}

#[test]
fn tokenizer_fixture_adds_bos_and_reproduces_the_ids() {
    let (_, files, exp) = fixture("tiny-tied");
    let tok = files.load_tokenizer().unwrap();
    let enc = tok
        .encode(
            "a red square is left of a blue circle and a green star",
            true,
        )
        .unwrap();
    let want: Vec<u32> = exp["input_ids"]
        .to_dtype(DType::U32)
        .unwrap()
        .i(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(enc.get_ids(), want.as_slice());
    assert_eq!(enc.get_ids()[0], 1, "BOS first");
}

#[test]
fn rope_scaling_is_exercised_by_the_fixtures() {
    // Guards the parity tests themselves: computing the scaled fixtures without their scaling
    // must visibly change the logits, or the scaling code would go untested.
    for name in ["tiny-untied-linear", "tiny-llama3"] {
        let (model, files, exp) = fixture(name);
        let mut cfg = model.config().clone();
        cfg.rope_scaling = RopeScaling::None;
        let plain = Llama::load_with_config(&cfg, &files, DType::F32, &Device::Cpu).unwrap();
        let logits = plain.forward_ids(&ids(&exp["input_ids"]), None).unwrap();
        let d = max_abs_diff(&logits, &exp["logits"]);
        assert!(d > 1e-2, "{name}: scaling changes the logits by only {d}");
    }
}

#[test]
fn fusion_hooks_match_a_transformers_reference_in_every_placement() {
    use candle_nn::VarBuilder;
    use mlvf::model::llm::{
        CrossAttn, CrossAttnBlocks, CrossAttnConfig, CrossAttnInputs, Injections, VisualSpans,
        XAttnPlacement,
    };
    let (model, _, exp) = fixture("tiny-tied");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm/tiny-tied");
    let hooks =
        candle_core::safetensors::load(dir.join("hooks.safetensors"), &Device::Cpu).unwrap();
    let scalar = |k: &str| hooks[k].to_vec1::<i64>().unwrap()[0] as usize;
    let (vis_start, id_layer, im_layer) =
        (scalar("vis_start"), scalar("id_layer"), scalar("im_layer"));
    let n = hooks["id_features"].dim(1).unwrap();
    let mut inj = Injections::new(VisualSpans::uniform(1, vis_start, n));
    inj.add(id_layer, hooks["id_features"].clone()).unwrap();
    let mut xin = CrossAttnInputs::new();
    xin.insert(im_layer, hooks["im_features"].clone());
    let embeds = model.embed(&ids(&exp["input_ids"])).unwrap();
    for (placement, key) in [
        (XAttnPlacement::Pre, "hook_logits_pre"),
        (XAttnPlacement::Post, "hook_logits_post"),
        (XAttnPlacement::Parallel, "hook_logits_parallel"),
    ] {
        // The reference runs with the whole image visible (the default).
        let vb = VarBuilder::from_tensors(hooks.clone(), DType::F32, &Device::Cpu);
        let cfg = CrossAttnConfig {
            placement,
            ..Default::default()
        };
        let blocks = CrossAttnBlocks::new(model.config(), &[im_layer], cfg, vb).unwrap();
        let opts = ForwardOptions {
            injections: Some(&inj),
            cross_attn: Some(CrossAttn {
                blocks: &blocks,
                inputs: &xin,
            }),
            ..Default::default()
        };
        let logits = model.forward_embeds(&embeds, &opts, None).unwrap();
        let d = max_abs_diff(&logits, &hooks[key]);
        eprintln!("hooks ({placement:?}): max|Δ| = {d:.2e}");
        assert!(
            d <= TOL,
            "I_D + I_M ({placement:?}) vs reference: max|Δ| {d}"
        );
        // The reference differs from the plain model, so the comparison is meaningful.
        assert!(max_abs_diff(&exp["logits"], &hooks[key]) > 0.1);
    }
}
