//! Layer selection: the paper's fusion paradigms and named layer sets, resolved for a concrete
//! vision encoder and LLM.
//!
//! This module is the shared vocabulary of manifest validation, planning (keys hash the *resolved*
//! selection, so `3-18` and `3-18-23` share one task under external fusion) and the fusion models.
//! It has no tensor code.
//!
//! # Indexing
//! Vision indices are `hidden_states` indices as transformers' `output_hidden_states=True` returns
//! them: 0 = embeddings, i = output of encoder layer i. LLM indices are 0-based decoder layers.
//!
//! # The rules (paper.md §1–§2)
//! * **Effective depth** `D` = the encoder's layers, minus one when the tower's last layer is
//!   dropped (SigLIP in the official code deletes its last layer, so so400m's 27 layers give D = 26).
//! * **Base layer** = `D - 1`, LLaVA's "penultimate" (`-2`) of the effective tower: 23 for CLIP
//!   ViT-L (24 layers), 25 for SigLIP so400m. It always fills the `<image>` slots.
//! * **Reference scale.** Sparse names (`18`, `3-18`, `3-18-23`, or any dash list of 1..=24) are
//!   indices of a 24-layer encoder. Index k maps to `round(k·(D−1)/23)` for k ≤ 23 and 24 maps to
//!   `D`. This is the identity for D = 24, reproduces the official SigLIP mapping
//!   (3-18-23 → 3, 20, 25) and keeps 23 on the base layer at any depth.
//! * **Proportion sets** split the effective tower into halves: `former` = 1..=⌊D/2⌋,
//!   `latter` = ⌊D/2⌋+1..=D, `all` = both. For CLIP this is 1–12 / 13–24 as in the paper; for
//!   SigLIP it gives 1–13 / 14–26 (the official code uses 15–26 for `latter`, i.e. the last 12).
//! * **External fusion** (E_D, E_M) sees groups of layers and the base. A sparse set gives one
//!   group per selected layer other than the base (so `3-18` and `3-18-23` are the same model,
//!   paper.md §1.1–1.2); proportion sets give one group per half (E_D averages a group, E_M uses
//!   every member as a deformable-attention level).
//! * **Internal fusion** (I_D, I_M) injects each selected vision layer into one LLM layer. A sparse
//!   reference index k goes to LLM layer `⌊k·L/24⌋ − 1` (the official `int(k·L/24 − 1)`, clamped
//!   to 0). Proportion sets map one-to-one onto the first (`former`) or last (`latter`) F LLM
//!   layers, F = min(n, ⌊L/2⌋) for n layers in the half; when n > F several vision layers share
//!   an LLM layer (i ↦ ⌊i·F/n⌋). For L = 24 and 32 this is the official table (0–11, 12–23; 0–11, 20–31).
//! * **Explicit indices** `idx:4-9` name hidden-state indices directly (no mapping); for internal
//!   fusion their reference index is `k·23/(D−1)`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The five model families of a study: LLaVA's baseline and the paper's four paradigms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Fusion {
    /// LLaVA: the base layer through the MLP projector, nothing else.
    #[serde(rename = "baseline")]
    Baseline,
    /// External direct: channel concatenation (or group means) before the projector.
    #[serde(rename = "E_D")]
    ExternalDirect,
    /// External modular: MMFuser deformable attention over the selected layers, then the projector.
    #[serde(rename = "E_M")]
    ExternalModular,
    /// Internal direct: per-layer projected features added at visual positions inside the LLM.
    #[serde(rename = "I_D")]
    InternalDirect,
    /// Internal modular: gated cross-attention sub-blocks inside chosen LLM layers.
    #[serde(rename = "I_M")]
    InternalModular,
}

impl Fusion {
    pub const NAMES: [&'static str; 5] = ["baseline", "E_D", "E_M", "I_D", "I_M"];

    pub fn parse(s: &str) -> Option<Fusion> {
        Some(match s {
            "baseline" => Fusion::Baseline,
            "E_D" => Fusion::ExternalDirect,
            "E_M" => Fusion::ExternalModular,
            "I_D" => Fusion::InternalDirect,
            "I_M" => Fusion::InternalModular,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Fusion::Baseline => "baseline",
            Fusion::ExternalDirect => "E_D",
            Fusion::ExternalModular => "E_M",
            Fusion::InternalDirect => "I_D",
            Fusion::InternalModular => "I_M",
        }
    }

    pub fn is_external(self) -> bool {
        matches!(self, Fusion::ExternalDirect | Fusion::ExternalModular)
    }

    pub fn is_internal(self) -> bool {
        matches!(self, Fusion::InternalDirect | Fusion::InternalModular)
    }
}

impl fmt::Display for Fusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layer set as a user writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LayerSet {
    /// Indices on the 24-layer reference scale: `18`, `3-18`, `3-18-23`, `5-10`, …
    Reference(Vec<usize>),
    /// First half of the effective tower.
    Former,
    /// Second half of the effective tower.
    Latter,
    /// Both halves.
    All,
    /// Hidden-state indices of this encoder, unmapped: `idx:4-9`.
    Explicit(Vec<usize>),
}

/// Reference-scale depth the paper's names are written for (CLIP ViT-L/14).
pub const REFERENCE_DEPTH: usize = 24;

impl LayerSet {
    pub const NAMED: [&'static str; 6] = ["18", "3-18", "3-18-23", "former", "latter", "all"];

    /// Parses a layer set; the error says what is wrong and what is accepted.
    pub fn parse(s: &str) -> Result<LayerSet, String> {
        let s = s.trim();
        match s {
            "former" => return Ok(LayerSet::Former),
            "latter" => return Ok(LayerSet::Latter),
            "all" => return Ok(LayerSet::All),
            _ => {}
        }
        let (explicit, list) = match s.strip_prefix("idx:") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let mut idx = Vec::new();
        for part in list.split('-') {
            let k: usize = part.trim().parse().map_err(|_| {
                format!(
                    "layer set `{s}` is not one of {} nor a dash-separated list of layer indices \
                     (e.g. `3-18`, or `idx:4-9` for raw hidden-state indices)",
                    Self::NAMED.join(", ")
                )
            })?;
            idx.push(k);
        }
        if idx.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "layer set `{s}` must list indices in increasing order without repeats"
            ));
        }
        if explicit {
            if idx[0] == 0 {
                return Err(format!(
                    "layer set `{s}`: index 0 is the embedding output, which no paradigm uses; start at 1"
                ));
            }
            Ok(LayerSet::Explicit(idx))
        } else {
            if idx[0] == 0 || *idx.last().unwrap() > REFERENCE_DEPTH {
                return Err(format!(
                    "layer set `{s}`: reference indices run from 1 to {REFERENCE_DEPTH} (the paper's \
                     24-layer scale, mapped to the encoder's depth); use `idx:…` for raw indices"
                ));
            }
            Ok(LayerSet::Reference(idx))
        }
    }
}

impl fmt::Display for LayerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[usize]| {
            v.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join("-")
        };
        match self {
            LayerSet::Reference(v) => f.write_str(&join(v)),
            LayerSet::Former => f.write_str("former"),
            LayerSet::Latter => f.write_str("latter"),
            LayerSet::All => f.write_str("all"),
            LayerSet::Explicit(v) => write!(f, "idx:{}", join(v)),
        }
    }
}

/// What layer resolution needs to know about the vision tower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderDepth {
    /// `num_hidden_layers` of the checkpoint.
    pub layers: usize,
    /// Whether the tower's last layer is deleted before use (SigLIP, as the official code does).
    pub drop_last: bool,
}

impl EncoderDepth {
    /// The depth the paradigms see.
    pub fn effective(self) -> usize {
        self.layers - usize::from(self.drop_last)
    }

    /// LLaVA's penultimate layer of the effective tower.
    pub fn base(self) -> usize {
        self.effective() - 1
    }
}

/// One vision layer injected into one LLM layer (internal fusion).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Injection {
    /// `hidden_states` index of the vision tower.
    pub vision: usize,
    /// 0-based decoder layer that receives it (before the layer runs).
    pub llm: usize,
}

/// A layer selection resolved to indices: what a fusion model is built from and what keys hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolvedLayers {
    /// Only the base layer (the LLaVA baseline).
    Baseline { base: usize },
    /// External fusion: groups of vision layers combined with the base before the LLM.
    External {
        base: usize,
        groups: Vec<Vec<usize>>,
    },
    /// Internal fusion: the base at the input, each injection inside the LLM.
    Internal {
        base: usize,
        injections: Vec<Injection>,
    },
}

impl ResolvedLayers {
    pub fn base(&self) -> usize {
        match self {
            ResolvedLayers::Baseline { base }
            | ResolvedLayers::External { base, .. }
            | ResolvedLayers::Internal { base, .. } => *base,
        }
    }

    /// Every vision hidden-state index the model reads, ascending, without repeats.
    pub fn vision_indices(&self) -> Vec<usize> {
        let mut v = vec![self.base()];
        match self {
            ResolvedLayers::Baseline { .. } => {}
            ResolvedLayers::External { groups, .. } => v.extend(groups.iter().flatten()),
            ResolvedLayers::Internal { injections, .. } => {
                v.extend(injections.iter().map(|i| i.vision))
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Why a layer set cannot be used with an encoder/LLM pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayerError(pub String);

/// A selected vision layer of a sparse set: (hidden-state index, k·23, denominator) where the
/// reference index used for LLM placement is k·23 / denominator.
type SparseLayer = (usize, usize, usize);

/// Maps a reference index (1..=24) onto an effective depth.
fn map_reference(k: usize, effective: usize) -> usize {
    if k == REFERENCE_DEPTH {
        effective
    } else {
        // round(k·(D−1)/23), half away from zero, in integers.
        (2 * k * (effective - 1) + 23) / 46
    }
}

/// LLM layer of a sparse injection at reference index `k` (real-valued for explicit indices).
fn sparse_llm_layer(k_times_23: usize, denom: usize, llm_layers: usize) -> usize {
    // ⌊k·L/24⌋ − 1 with k = k_times_23 / denom / 23 · 23 … kept in integers:
    // k·L/24 = k_times_23·L / (denom·24) where k_times_23 = k·23 and denom = 23 for reference indices.
    let l = (k_times_23 * llm_layers) / (denom * REFERENCE_DEPTH);
    l.saturating_sub(1).min(llm_layers - 1)
}

/// Resolves a fusion paradigm and layer set for an encoder and an LLM of `llm_layers` decoder layers.
///
/// `layers` is ignored for the baseline (pass `None`); it is required for every other paradigm.
pub fn resolve(
    fusion: Fusion,
    layers: Option<&LayerSet>,
    encoder: EncoderDepth,
    llm_layers: usize,
) -> Result<ResolvedLayers, LayerError> {
    let d = encoder.effective();
    if encoder.layers == 0 || d < 2 {
        return Err(LayerError(format!(
            "the vision encoder has {} layer(s){}; layer selection needs an effective depth of at least 2",
            encoder.layers,
            if encoder.drop_last { " and drops its last" } else { "" }
        )));
    }
    if llm_layers == 0 {
        return Err(LayerError("the LLM has 0 decoder layers".into()));
    }
    let base = encoder.base();
    if fusion == Fusion::Baseline {
        return Ok(ResolvedLayers::Baseline { base });
    }
    let set = layers.ok_or_else(|| {
        LayerError(format!(
            "fusion `{fusion}` needs a layer set (one of {})",
            LayerSet::NAMED.join(", ")
        ))
    })?;

    // Vision indices of the set, and for sparse sets the reference index used for LLM placement
    // (as k·23 over a denominator, to stay in integers).
    let half = d / 2;
    let (sparse, halves): (Option<Vec<SparseLayer>>, Vec<Vec<usize>>) =
        match set {
            LayerSet::Reference(ks) => {
                let mapped: Vec<_> = ks
                    .iter()
                    .map(|&k| (map_reference(k, d), k * 23, 23))
                    .collect();
                if mapped.windows(2).any(|w| w[0].0 >= w[1].0) || mapped[0].0 == 0 {
                    return Err(LayerError(format!(
                        "layer set `{set}` maps to {:?} on an encoder of effective depth {d}: the \
                     layers collide; use a deeper encoder or explicit indices (`idx:…`)",
                        mapped.iter().map(|m| m.0).collect::<Vec<_>>()
                    )));
                }
                (Some(mapped), vec![])
            }
            LayerSet::Explicit(ks) => {
                if let Some(&bad) = ks.iter().find(|&&k| k > d) {
                    return Err(LayerError(format!(
                    "layer set `{set}`: index {bad} is out of range; this encoder's hidden states \
                     run from 1 to {d}{}",
                    if encoder.drop_last { " (its last layer is dropped)" } else { "" }
                )));
                }
                (
                    Some(ks.iter().map(|&k| (k, k * 23, d - 1)).collect()),
                    vec![],
                )
            }
            LayerSet::Former => (None, vec![(1..=half).collect()]),
            LayerSet::Latter => (None, vec![(half + 1..=d).collect()]),
            LayerSet::All => (None, vec![(1..=half).collect(), (half + 1..=d).collect()]),
        };
    if sparse.is_none() && half == 0 {
        return Err(LayerError(format!(
            "layer set `{set}` needs an encoder of effective depth ≥ 2"
        )));
    }

    if fusion.is_external() {
        let groups: Vec<Vec<usize>> = match &sparse {
            Some(m) => m
                .iter()
                .filter(|x| x.0 != base)
                .map(|x| vec![x.0])
                .collect(),
            None => halves,
        };
        if groups.is_empty() {
            return Err(LayerError(format!(
                "layer set `{set}` selects only the base layer ({base}), which every paradigm already \
                 uses: external fusion would equal the baseline; use `fusion = \"baseline\"`"
            )));
        }
        return Ok(ResolvedLayers::External { base, groups });
    }

    let mut injections = Vec::new();
    match &sparse {
        Some(m) => {
            for &(vision, k23, denom) in m {
                injections.push(Injection {
                    vision,
                    llm: sparse_llm_layer(k23, denom, llm_layers),
                });
            }
        }
        None => {
            let f_of = |n: usize| n.min((llm_layers / 2).max(1));
            let place = |layers: &Vec<usize>, start: usize, out: &mut Vec<Injection>| {
                let n = layers.len();
                let f = f_of(n);
                for (i, &vision) in layers.iter().enumerate() {
                    out.push(Injection {
                        vision,
                        llm: (start + i * f / n).min(llm_layers - 1),
                    });
                }
            };
            match set {
                LayerSet::Former => place(&halves[0], 0, &mut injections),
                LayerSet::Latter => {
                    let f = f_of(halves[0].len());
                    place(&halves[0], llm_layers - f, &mut injections)
                }
                _ => {
                    place(&halves[0], 0, &mut injections);
                    let f = f_of(halves[1].len());
                    place(&halves[1], llm_layers - f, &mut injections);
                }
            }
        }
    }
    Ok(ResolvedLayers::Internal { base, injections })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIP: EncoderDepth = EncoderDepth {
        layers: 24,
        drop_last: false,
    };
    const SIGLIP: EncoderDepth = EncoderDepth {
        layers: 27,
        drop_last: true,
    };

    fn set(s: &str) -> LayerSet {
        LayerSet::parse(s).unwrap()
    }

    fn external(s: &str, enc: EncoderDepth) -> Vec<Vec<usize>> {
        match resolve(Fusion::ExternalDirect, Some(&set(s)), enc, 24).unwrap() {
            ResolvedLayers::External { groups, .. } => groups,
            other => panic!("{other:?}"),
        }
    }

    fn internal(s: &str, enc: EncoderDepth, l: usize) -> Vec<(usize, usize)> {
        match resolve(Fusion::InternalDirect, Some(&set(s)), enc, l).unwrap() {
            ResolvedLayers::Internal { injections, .. } => {
                injections.iter().map(|i| (i.vision, i.llm)).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn base_layer_is_the_penultimate_of_the_effective_tower() {
        assert_eq!(CLIP.base(), 23);
        assert_eq!(SIGLIP.base(), 25);
    }

    #[test]
    fn external_fusion_merges_3_18_and_3_18_23() {
        assert_eq!(external("3-18", CLIP), vec![vec![3], vec![18]]);
        assert_eq!(external("3-18-23", CLIP), vec![vec![3], vec![18]]);
        assert_eq!(external("18", CLIP), vec![vec![18]]);
        assert_eq!(external("former", CLIP), vec![(1..=12).collect::<Vec<_>>()]);
        assert_eq!(
            external("latter", CLIP),
            vec![(13..=24).collect::<Vec<_>>()]
        );
        assert_eq!(external("all", CLIP).len(), 2);
    }

    #[test]
    fn siglip_reproduces_the_official_mapping() {
        // Official: 3-18-23 → [3, 20, 25] with base 25.
        assert_eq!(
            internal("3-18-23", SIGLIP, 24),
            vec![(3, 2), (20, 17), (25, 22)]
        );
        assert_eq!(external("3-18-23", SIGLIP), vec![vec![3], vec![20]]);
        assert_eq!(
            external("latter", SIGLIP),
            vec![(14..=26).collect::<Vec<_>>()]
        );
    }

    #[test]
    fn internal_placement_matches_the_paper_table() {
        assert_eq!(internal("18", CLIP, 24), vec![(18, 17)]);
        assert_eq!(internal("3-18", CLIP, 24), vec![(3, 2), (18, 17)]);
        assert_eq!(
            internal("3-18-23", CLIP, 32),
            vec![(3, 3), (18, 23), (23, 29)]
        );
        let former: Vec<_> = internal("former", CLIP, 32).iter().map(|x| x.1).collect();
        assert_eq!(former, (0..12).collect::<Vec<_>>());
        let latter: Vec<_> = internal("latter", CLIP, 32).iter().map(|x| x.1).collect();
        assert_eq!(latter, (20..32).collect::<Vec<_>>());
        let all: Vec<_> = internal("all", CLIP, 24).iter().map(|x| x.1).collect();
        assert_eq!(all, (0..24).collect::<Vec<_>>());
    }

    #[test]
    fn tiny_encoders_keep_23_on_the_base_and_share_llm_layers_when_needed() {
        let tiny = EncoderDepth {
            layers: 12,
            drop_last: false,
        };
        assert_eq!(tiny.base(), 11);
        assert_eq!(internal("3-18-23", tiny, 8), vec![(1, 0), (9, 5), (11, 6)]);
        let all = internal("all", tiny, 8);
        assert_eq!(
            all.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![0, 0, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7]
        );
    }

    #[test]
    fn bad_sets_are_rejected_with_a_reason() {
        assert!(LayerSet::parse("3-x").unwrap_err().contains("former"));
        assert!(LayerSet::parse("18-3").unwrap_err().contains("increasing"));
        assert!(LayerSet::parse("0-3").is_err());
        assert!(LayerSet::parse("3-25").unwrap_err().contains("1 to 24"));
        let e = resolve(Fusion::ExternalDirect, Some(&set("idx:4-30")), CLIP, 24).unwrap_err();
        assert!(e.0.contains("out of range"), "{e}");
        let e = resolve(Fusion::ExternalDirect, Some(&set("23")), CLIP, 24).unwrap_err();
        assert!(e.0.contains("baseline"), "{e}");
        let shallow = EncoderDepth {
            layers: 3,
            drop_last: false,
        };
        assert!(resolve(Fusion::InternalDirect, Some(&set("3-18-23")), shallow, 4).is_err());
        assert!(resolve(Fusion::ExternalDirect, None, CLIP, 24).is_err());
    }

    #[test]
    fn names_round_trip() {
        for n in LayerSet::NAMED {
            assert_eq!(set(n).to_string(), n);
        }
        for f in Fusion::NAMES {
            assert_eq!(Fusion::parse(f).unwrap().name(), f);
        }
        assert_eq!(set("idx:4-9").to_string(), "idx:4-9");
    }
}
