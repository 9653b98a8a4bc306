//! Per-patch supervision of a tiny tower: linear heads that read each patch token's cell label
//! (colour, shape, texture, size; `synth::cells`) beside the contrastive caption loss, and
//! per-layer linear probes that show what each hidden state carries.
//!
//! Why: a caption-level loss against a bag of words cannot teach binding (a patch must know *its*
//! colour together with *its* shape), and a tower whose patch tokens do not carry their cell's
//! object leaves the LM nothing to look up (research/feasibility.md §(b): towers trained on
//! captions or answers alone read shape at chance). The heads are thrown away with the other
//! training heads; only the tower is published.

use super::probe::probe_accuracy;
use crate::model::vision::{VisionArch, VisionConfig, VisionTower};
use crate::synth::cells::{
    color_classes, shape_classes, size_classes, texture_classes, SceneCells,
};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{Module, VarBuilder};
use std::collections::BTreeMap;
use std::path::Path;

/// Label of a patch that is not supervised (an occlusion scene's patches).
const UNLABELLED: u32 = u32::MAX;

/// The four attributes, in head order.
const ATTRIBUTES: [&str; 4] = ["color", "shape", "texture", "size"];

fn class_counts() -> [usize; 4] {
    [
        color_classes().len(),
        shape_classes().len(),
        texture_classes().len(),
        size_classes().len(),
    ]
}

/// Per-patch labels of a split, attribute-major: `labels[a][image · P + patch]`.
pub struct PatchLabels {
    pub patches: usize,
    labels: [Vec<u32>; 4],
}

impl PatchLabels {
    /// Reads `cells.json` (one entry per record, in the split's order, ids matching `ids`) and
    /// gives each patch the label of the grid cell under its centre: a `g × g` patch grid with
    /// `g` a multiple of 3 puts `(g/3)²` patches in each cell; any other grid (8×8 on 64 px)
    /// labels the patches that straddle two cells by the one holding most of them.
    pub fn load(path: &Path, ids: &[String], grid: usize) -> Result<PatchLabels> {
        if grid == 0 {
            bail!("per-patch labels need a patch grid (got 0×0)");
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let all: Vec<SceneCells> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let by_id: BTreeMap<&str, &SceneCells> = all.iter().map(|c| (c.id.as_str(), c)).collect();
        let cell_of = |p: usize| (2 * p + 1) * 3 / (2 * grid);
        let patches = grid * grid;
        let mut labels: [Vec<u32>; 4] = Default::default();
        for id in ids {
            let cells = by_id
                .get(id.as_str())
                .with_context(|| format!("{}: no cells for record {id}", path.display()))?;
            for py in 0..grid {
                for px in 0..grid {
                    let values = match &cells.cells {
                        Some(c) => {
                            let l = c[cell_of(py) * 3 + cell_of(px)];
                            [l.color, l.shape, l.texture, l.size].map(u32::from)
                        }
                        None => [UNLABELLED; 4],
                    };
                    for (a, v) in values.into_iter().enumerate() {
                        labels[a].push(v);
                    }
                }
            }
        }
        Ok(PatchLabels { patches, labels })
    }

    /// `(flat patch positions within the batch, [label per attribute])` of the labelled
    /// patches of images `rows`.
    fn gather(&self, rows: &[usize]) -> (Vec<u32>, [Vec<u32>; 4]) {
        let mut at = Vec::new();
        let mut out: [Vec<u32>; 4] = Default::default();
        for (b, &r) in rows.iter().enumerate() {
            for p in 0..self.patches {
                let i = r * self.patches + p;
                if self.labels[0][i] == UNLABELLED {
                    continue;
                }
                at.push((b * self.patches + p) as u32);
                for (o, l) in out.iter_mut().zip(&self.labels) {
                    o.push(l[i]);
                }
            }
        }
        (at, out)
    }
}

/// The patch tokens of a hidden state, `[B·P, D]` (CLIP's class token dropped).
fn patch_tokens(cfg: &VisionConfig, hidden: &Tensor) -> Result<Tensor> {
    let (b, t, d) = hidden.dims3()?;
    let skip = usize::from(cfg.arch == VisionArch::Clip);
    Ok(hidden
        .narrow(1, skip, t - skip)?
        .reshape((b * (t - skip), d))?)
}

/// Linear read-outs of colour, shape, texture and size from a patch token.
pub struct PatchHeads {
    heads: Vec<candle_nn::Linear>,
}

impl PatchHeads {
    pub fn new(width: usize, vb: VarBuilder) -> Result<PatchHeads> {
        let heads = ATTRIBUTES
            .iter()
            .zip(class_counts())
            .map(|(name, n)| candle_nn::linear(width, n, vb.pp(format!("patch_{name}"))))
            .collect::<candle_core::Result<_>>()?;
        Ok(PatchHeads { heads })
    }

    /// Mean cross-entropy over the labelled patches of images `rows`, summed over the four
    /// attributes; `hidden` is the supervised hidden state of those images, `[B, T, D]`. `None`
    /// when no patch of the batch is labelled.
    pub fn loss(
        &self,
        cfg: &VisionConfig,
        hidden: &Tensor,
        labels: &PatchLabels,
        rows: &[usize],
    ) -> Result<Option<Tensor>> {
        let (at, targets) = labels.gather(rows);
        if at.is_empty() {
            return Ok(None);
        }
        let dev = hidden.device();
        let n = at.len();
        let x = patch_tokens(cfg, hidden)?.index_select(&Tensor::from_vec(at, n, dev)?, 0)?;
        let mut total: Option<Tensor> = None;
        for (head, t) in self.heads.iter().zip(targets) {
            let ce =
                candle_nn::loss::cross_entropy(&head.forward(&x)?, &Tensor::from_vec(t, n, dev)?)?;
            total = Some(match total {
                Some(s) => (s + ce)?,
                None => ce,
            });
        }
        Ok(total)
    }
}

/// Probe accuracies (0–100) per hidden state: `probes[attribute][layer]`, on occupied cells.
pub type LayerProbes = BTreeMap<String, Vec<f64>>;

/// Fits a probe per attribute (colour, shape, texture, size) on every hidden state (embeddings
/// = 0 … last layer) of the tower, on the patches of occupied cells: trained on images `train`,
/// scored on images `test`.
pub fn layer_probes(
    tower: &VisionTower,
    pixels: &Tensor,
    labels: &PatchLabels,
    train: &[usize],
    test: &[usize],
) -> Result<LayerProbes> {
    let cfg = tower.config();
    let dev = Device::Cpu;
    // Occupied, labelled patches of a set of images: positions into its stacked patch rows.
    let occupied = |rows: &[usize]| -> (Vec<u32>, [Vec<u32>; 4]) {
        let (at, t) = labels.gather(rows);
        let keep: Vec<usize> = (0..at.len())
            .filter(|&i| (t[1][i] as usize) < shape_classes().len() - 2)
            .collect();
        (
            keep.iter().map(|&i| at[i]).collect(),
            [0, 1, 2, 3].map(|a| keep.iter().map(|&i| t[a][i]).collect()),
        )
    };
    let states_of = |rows: &[usize]| -> Result<Vec<Tensor>> {
        let mut per_layer: Vec<Vec<Tensor>> = Vec::new();
        for chunk in rows.chunks(64) {
            let idx: Vec<u32> = chunk.iter().map(|&r| r as u32).collect();
            let n = idx.len();
            let px = pixels.index_select(&Tensor::from_vec(idx, n, &dev)?, 0)?;
            let states = tower.forward_hidden_states(&px)?;
            if per_layer.is_empty() {
                per_layer = vec![Vec::new(); states.len()];
            }
            for (k, s) in states.iter().enumerate() {
                per_layer[k].push(patch_tokens(cfg, &s.detach())?);
            }
        }
        per_layer
            .into_iter()
            .map(|parts| Ok(Tensor::cat(&parts, 0)?))
            .collect()
    };
    let (tr_at, tr_y) = occupied(train);
    let (te_at, te_y) = occupied(test);
    let (tr_states, te_states) = (states_of(train)?, states_of(test)?);
    let (ntr, nte) = (tr_at.len(), te_at.len());
    let tr_idx = Tensor::from_vec(tr_at, ntr, &dev)?;
    let te_idx = Tensor::from_vec(te_at, nte, &dev)?;
    let mut out = LayerProbes::new();
    for (a, name) in ATTRIBUTES.iter().enumerate() {
        let mut accs = Vec::with_capacity(tr_states.len());
        for (tr, te) in tr_states.iter().zip(&te_states) {
            accs.push(probe_accuracy(
                &tr.index_select(&tr_idx, 0)?,
                &tr_y[a],
                &te.index_select(&te_idx, 0)?,
                &te_y[a],
                class_counts()[a],
            )?);
        }
        out.insert(name.to_string(), accs);
    }
    Ok(out)
}
