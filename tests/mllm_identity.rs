//! Identities the paper relies on, at the level of the whole model: E_M and I_M at
//! initialisation, and I_D with a zeroed injection projector, compute exactly the baseline
//! model's logits when they share its input projector. Also: splicing, padding and the
//! manifest-vs-config checks.

#[path = "mllm_support.rs"]
mod support;

use candle_core::Tensor;
use candle_nn::VarMap;
use mlvf::layers::Fusion;
use mlvf::model::mllm::Mllm;
use support::*;

fn copy_projector(from: &VarMap, to: &VarMap) {
    let src = from.data().lock().unwrap();
    let dst = to.data().lock().unwrap();
    let mut copied = 0;
    for (name, var) in src.iter().filter(|(n, _)| n.starts_with("mm_projector.")) {
        dst[name].set(var.as_tensor()).unwrap();
        copied += 1;
    }
    assert_eq!(copied, 4, "the input projector has two linear layers");
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn logits(model: &Mllm) -> Tensor {
    model.forward(&toy_batch(model)).unwrap().logits
}

#[test]
fn modular_paradigms_at_init_equal_the_baseline() {
    let (base, base_map) = Mllm::pretrain(&spec(Fusion::Baseline, ""), 7, &cpu()).unwrap();
    let want = logits(&base);
    for fusion in [Fusion::ExternalModular, Fusion::InternalModular] {
        let (m, map) = Mllm::pretrain(&spec(fusion, "idx:1-2-3"), 99, &cpu()).unwrap();
        assert!(
            max_diff(&logits(&m), &want) > 1e-3,
            "{fusion}: other projector, other logits"
        );
        copy_projector(&base_map, &map);
        let d = max_diff(&logits(&m), &want);
        assert!(
            d <= 1e-6,
            "{fusion} at init differs from the baseline by {d}"
        );
    }
}

#[test]
fn internal_direct_with_zero_injection_projectors_equals_the_baseline() {
    let (base, base_map) = Mllm::pretrain(&spec(Fusion::Baseline, ""), 7, &cpu()).unwrap();
    let want = logits(&base);
    let (m, map) = Mllm::pretrain(&spec(Fusion::InternalDirect, "idx:1-2-3"), 3, &cpu()).unwrap();
    copy_projector(&base_map, &map);
    assert!(
        max_diff(&logits(&m), &want) > 1e-4,
        "random injections change the logits"
    );
    let data = map.data().lock().unwrap();
    for (name, var) in data
        .iter()
        .filter(|(n, _)| n.starts_with("mm_projectors.") && n.contains(".2."))
    {
        var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        let _ = name;
    }
    drop(data);
    let d = max_diff(&logits(&m), &want);
    assert!(
        d <= 1e-6,
        "I_D with zero injections differs from the baseline by {d}"
    );
}

#[test]
fn image_tokens_replace_the_sentinel_and_padding_does_not_leak() {
    let (m, _) = Mllm::pretrain(&spec(Fusion::Baseline, ""), 1, &cpu()).unwrap();
    let batch = toy_batch(&m);
    let out = m.forward(&batch).unwrap();
    let n = m.config().image_tokens;
    assert_eq!(n, 25, "a 30-pixel image in 6-pixel patches");
    let (b, t, _) = out.logits.dims3().unwrap();
    assert_eq!(
        (b, t),
        (2, 7 - 1 + n),
        "the image row is the longest: 6 text + 25 visual"
    );
    assert_eq!(out.tokens, 6 + n + 4);
    // The text-only row alone gives the same logits on its real positions as inside the batch.
    let mut single = batch.clone();
    single.ids.remove(0);
    single.labels.remove(0);
    single.has_image.remove(0);
    single.features = single
        .features
        .iter()
        .map(|f| f.narrow(0, 1, 1).unwrap())
        .collect();
    let alone = m.forward(&single).unwrap().logits;
    let inside = out.logits.narrow(0, 1, 1).unwrap().narrow(1, 0, 4).unwrap();
    assert!(max_diff(&alone, &inside) < 1e-5);
}

#[test]
fn a_sentinel_without_an_image_is_refused() {
    let (m, _) = Mllm::pretrain(&spec(Fusion::Baseline, ""), 1, &cpu()).unwrap();
    let mut batch = toy_batch(&m);
    batch.has_image = vec![false, false];
    let err = m.forward(&batch).unwrap_err().to_string();
    assert!(err.contains("<image>"), "{err}");
}

#[test]
fn declared_depths_are_checked_against_config_json() {
    let mut s = spec(Fusion::Baseline, "");
    s.vision_depth = Some(24);
    let err = format!("{:#}", Mllm::pretrain(&s, 0, &cpu()).err().unwrap());
    assert!(
        err.contains("depth 24") && err.contains("num_hidden_layers = 4"),
        "{err}"
    );
    let mut s = spec(Fusion::Baseline, "");
    s.llm_layers = Some(3);
    let err = format!("{:#}", Mllm::pretrain(&s, 0, &cpu()).err().unwrap());
    assert!(
        err.contains("3 layers") && err.contains("num_hidden_layers = 2"),
        "{err}"
    );
}

#[test]
fn generation_is_greedy_and_stops_at_the_budget() {
    let (m, _) = Mllm::pretrain(&spec(Fusion::InternalModular, "idx:1-2-3"), 1, &cpu()).unwrap();
    let img = image("000000002.png");
    let a = m.generate(Some(&img), "<image>\nWhat is it?", 5).unwrap();
    let b = m.generate(Some(&img), "<image>\nWhat is it?", 5).unwrap();
    assert_eq!(a, b, "greedy decoding is deterministic");
    let ids = m.tokenizer().encode_prompt("<image>\nWhat is it?").unwrap();
    let out = m
        .generate_ids(Some(&m.pixels(&img).unwrap()), &ids, 5)
        .unwrap();
    assert!(out.len() <= 5);
    // The greedy path agrees with the full forward pass on the first token.
    let mut labels = vec![-100; ids.len()];
    *labels.last_mut().unwrap() = 5; // any supervised position, so the loss is defined
    let batch = mlvf::model::mllm::MllmBatch {
        ids: vec![ids.clone()],
        labels: vec![labels],
        features: m.image_features(&m.pixels(&img).unwrap()).unwrap(),
        has_image: vec![true],
    };
    let logits = m.forward(&batch).unwrap().logits;
    let t = logits.dim(1).unwrap();
    let first: u32 = logits
        .get(0)
        .unwrap()
        .get(t - 1)
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    match out.first() {
        Some(&tok) => assert_eq!(tok, first),
        None => assert!(m.llm().config().eos_token_ids.contains(&first)),
    }
    let err = m
        .generate(None, "<image>\nWhat is it?", 5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no image"), "{err}");
}
