//! Parity with PyTorch: an E_M (MMFuser) module with random weights must reproduce the output
//! of Deformable-DETR's reference implementation (`ms_deform_attn_core_pytorch`, i.e.
//! `F.grid_sample(bilinear, zeros, align_corners=False)`) wrapped in the MMFuser block and
//! LLaVA's mlp2x_gelu. The fixture is written by `tests/fusion_msdeform_reference.py`.

use candle_core::{DType, Device};
use mlvf::layers::{resolve, EncoderDepth, Fusion, LayerSet, ResolvedLayers};
use mlvf::model::fusion::*;

#[test]
fn e_m_matches_the_pytorch_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fusion_msdeform_reference.safetensors"
    );
    let enc = EncoderDepth {
        layers: 6,
        drop_last: false,
    };
    let layers = resolve(
        Fusion::ExternalModular,
        Some(&LayerSet::parse("3-18-23").unwrap()),
        enc,
        4,
    )
    .unwrap();
    // The fixture was written for base 5 and levels [1, 4].
    assert_eq!(
        layers,
        ResolvedLayers::External {
            base: 5,
            groups: vec![vec![1], vec![4]]
        }
    );
    let mut cfg = FusionConfig::new(Fusion::ExternalModular, layers, 8, 6);
    cfg.mmfuser.heads = 2;
    cfg.mmfuser.points = 3;
    let model = FusionModel::load(cfg, &[path], DType::F32, &Device::Cpu).unwrap();
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let hs: Vec<_> = (0..=6)
        .map(|k| t[&format!("test.hidden_states.{k}")].clone())
        .collect();
    let got = model.forward(&hs).unwrap().input_tokens;
    let want = &t["test.expected"];
    let diff = (&got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    eprintln!("max |candle − pytorch| = {diff:e}");
    assert!(
        diff < 1e-5,
        "E_M differs from the PyTorch reference by {diff}"
    );
}
