//! Linear probes: how much of a label a layer's features give away to a linear read-out.
//!
//! A probe is a softmax classifier `W·x + b` fitted to frozen features of one split and scored on
//! another, the standard instrument for "what does layer k carry" (Alain & Bengio 2016). Features
//! are standardised with the training split's mean and spread first, so one learning rate suits
//! every layer, and the fit is full-batch AdamW from zero weights: deterministic and a fraction
//! of a second for the world's few thousand patches.

use crate::train::optim::{AdamW, AdamWConfig, ParamGroup};
use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor, Var, D};

/// Full-batch optimiser steps of a probe fit.
pub const PROBE_STEPS: usize = 150;

/// Fits a probe for `classes` labels on `(train_x [N, D], train_y [N])` and returns its accuracy
/// (0–100) on `(test_x, test_y)`.
pub fn probe_accuracy(
    train_x: &Tensor,
    train_y: &[u32],
    test_x: &Tensor,
    test_y: &[u32],
    classes: usize,
) -> Result<f64> {
    ensure!(
        !train_y.is_empty() && !test_y.is_empty(),
        "a probe needs training and test samples"
    );
    let dev = Device::Cpu;
    let d = train_x.dim(D::Minus1)?;
    let mean = train_x.mean_keepdim(0)?;
    let std = (train_x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)? + 1e-6)?.sqrt()?;
    let norm = |x: &Tensor| -> Result<Tensor> { Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?) };
    let (xtr, xte) = (norm(train_x)?.detach(), norm(test_x)?.detach());
    let ytr = Tensor::from_vec(train_y.to_vec(), train_y.len(), &dev)?;
    let w = Var::zeros((d, classes), DType::F32, &dev)?;
    let b = Var::zeros(classes, DType::F32, &dev)?;
    let mut opt = AdamW::new(
        vec![ParamGroup {
            name: "probe".into(),
            lr: 0.05,
            weight_decay: 1e-4,
            params: vec![("w".into(), w.clone()), ("b".into(), b.clone())],
        }],
        AdamWConfig::default(),
    )?;
    for _ in 0..PROBE_STEPS {
        let logits = xtr.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
        let loss = candle_nn::loss::cross_entropy(&logits, &ytr)?;
        opt.step(&loss.backward()?, 1.0)?;
    }
    let pred: Vec<u32> = xte
        .matmul(w.as_tensor())?
        .broadcast_add(b.as_tensor())?
        .argmax(D::Minus1)?
        .to_vec1()?;
    let hits = pred.iter().zip(test_y).filter(|(p, y)| p == y).count();
    Ok(100.0 * hits as f64 / test_y.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linearly separable classes are read out; labels independent of the features are not.
    #[test]
    fn a_probe_reads_what_is_linear_and_nothing_else() {
        let n = 400;
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut noise = Vec::new();
        for i in 0..n {
            let c = (i % 4) as u32;
            let jitter = ((i * 7919) % 101) as f32 / 101.0 - 0.5;
            x.extend([c as f32 + 0.3 * jitter, -(c as f32) * 0.5, jitter]);
            y.push(c);
            // splitmix64 of i: labels that no function of the features predicts.
            let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            noise.push(((z ^ (z >> 31)) % 4) as u32);
        }
        let x = Tensor::from_vec(x, (n, 3), &Device::Cpu).unwrap();
        let (tr, te) = (x.narrow(0, 0, 300).unwrap(), x.narrow(0, 300, 100).unwrap());
        let acc = probe_accuracy(&tr, &y[..300], &te, &y[300..], 4).unwrap();
        assert!(acc > 95.0, "separable classes: {acc}");
        let acc = probe_accuracy(&tr, &noise[..300], &te, &noise[300..], 4).unwrap();
        assert!(acc < 50.0, "unrelated labels: {acc}");
    }
}
