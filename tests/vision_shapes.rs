//! The real towers' geometry: CLIP ViT-L/14-336 (24 layers, 577 tokens) and SigLIP
//! so400m-patch14-384 (27 layers, 729 tokens; 384 is not a multiple of 14), at full depth and
//! token count but a narrow width so the test stays fast. `full_width_single_layers` (ignored)
//! runs one layer at the real width.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use mlvf::model::vision::{VisionConfig, VisionTower};

fn states(cfg: &VisionConfig, layers: usize) -> Vec<Tensor> {
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let tower = VisionTower::new_with_layers(cfg, layers, vb.pp("vision_model")).unwrap();
    let px = Tensor::zeros(
        (1, 3, cfg.image_size, cfg.image_size),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    tower.forward_hidden_states(&px).unwrap()
}

#[test]
fn clip_large_336_and_siglip_so400m_geometry() {
    for (cfg, layers, tokens) in [
        (VisionConfig::clip_vit_large_patch14_336(), 24, 577),
        (VisionConfig::siglip_so400m_patch14_384(), 27, 729),
    ] {
        let narrow = VisionConfig {
            hidden_size: 16,
            intermediate_size: 16,
            num_attention_heads: 2,
            ..cfg.clone()
        };
        let hs = states(&narrow, narrow.num_hidden_layers);
        assert_eq!(hs.len(), layers + 1, "{:?}", cfg.arch);
        assert!(
            hs.iter().all(|h| h.dims() == [1, tokens, 16]),
            "{:?}: {:?}",
            cfg.arch,
            hs[0].dims()
        );
    }
}

#[test]
#[ignore]
fn full_width_single_layers() {
    for (cfg, tokens) in [
        (VisionConfig::clip_vit_large_patch14_336(), 577),
        (VisionConfig::siglip_so400m_patch14_384(), 729),
    ] {
        let hs = states(&cfg, 1);
        assert_eq!(hs[1].dims(), &[1, tokens, cfg.hidden_size]);
    }
}
