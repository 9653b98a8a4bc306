//! Building the LLM's input sequence from token ids with an image sentinel and the fusion
//! module's visual tokens: LLaVA's `prepare_inputs_labels_for_multimodal`.
//!
//! Per row, the single [`IMAGE_TOKEN_INDEX`] becomes the row's `n` visual tokens, whose labels
//! are [`IGNORE_INDEX`]; a text-only row (no sentinel) gets no visual tokens. Rows are then
//! right-padded (zero embeddings, ignored labels, attention mask 0) to the longest row. The
//! returned [`VisualSpans`] say where each row's visual tokens landed (length 0 for text-only
//! rows): I_D injections are added exactly there.

use crate::data::{IGNORE_INDEX, IMAGE_TOKEN_INDEX};
use crate::model::llm::{Llama, VisualSpans};
use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

/// One LLM input batch after splicing.
#[derive(Clone, Debug)]
pub struct Spliced {
    /// `[B, T, d]`.
    pub embeds: Tensor,
    /// `[B, T]` i64, visual and padding positions [`IGNORE_INDEX`].
    pub labels: Tensor,
    /// `[B, T]` u8, 1 = real (text or visual) token.
    pub attention_mask: Tensor,
    /// Where the visual tokens of each row are.
    pub spans: VisualSpans,
    /// Real tokens (text + visual) per row.
    pub lengths: Vec<usize>,
}

/// The position of the image sentinel in `ids`, `None` without one; more than one is an error
/// (one image per sample, as in LLaVA-1.5).
pub fn image_position(ids: &[i64]) -> Result<Option<usize>> {
    let mut it = ids
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == IMAGE_TOKEN_INDEX);
    let first = it.next().map(|(i, _)| i);
    if it.next().is_some() {
        bail!("a sample holds more than one <image>; one image per sample is supported");
    }
    Ok(first)
}

/// Splices `visual` (`[B, n, d]`) into the rows `ids` (each without padding) and their `labels`
/// (same lengths; `None` = every text position ignored, as for a generation prompt).
pub fn splice(
    llm: &Llama,
    ids: &[&[i64]],
    labels: Option<&[&[i64]]>,
    visual: &Tensor,
) -> Result<Spliced> {
    let (b, n, d) = visual.dims3()?;
    if ids.len() != b {
        bail!(
            "{} token rows but visual tokens for a batch of {b}",
            ids.len()
        );
    }
    let dev = llm.device();
    let mut rows = Vec::with_capacity(b);
    let mut row_labels = Vec::with_capacity(b);
    let (mut starts, mut lens, mut lengths) = (vec![0; b], vec![0; b], vec![0; b]);
    for (r, row) in ids.iter().enumerate() {
        let lab: Vec<i64> = match labels {
            Some(l) => {
                if l[r].len() != row.len() {
                    bail!("row {r}: {} labels for {} tokens", l[r].len(), row.len());
                }
                l[r].to_vec()
            }
            None => vec![IGNORE_INDEX; row.len()],
        };
        let pos = image_position(row)?;
        let text: Vec<u32> = row
            .iter()
            .map(|&t| if t == IMAGE_TOKEN_INDEX { 0 } else { t as u32 })
            .collect();
        if text.is_empty() {
            bail!("row {r} is empty");
        }
        let emb = llm
            .embed(&Tensor::from_vec(text.clone(), (1, text.len()), dev)?)?
            .squeeze(0)?;
        match pos {
            None => {
                rows.push(emb);
                row_labels.push(lab);
                lengths[r] = row.len();
            }
            Some(p) => {
                let mut parts = Vec::with_capacity(3);
                if p > 0 {
                    parts.push(emb.narrow(0, 0, p)?);
                }
                parts.push(visual.get(r)?.to_dtype(emb.dtype())?);
                if p + 1 < row.len() {
                    parts.push(emb.narrow(0, p + 1, row.len() - p - 1)?);
                }
                rows.push(Tensor::cat(&parts, 0)?);
                let mut l = lab[..p].to_vec();
                l.extend(std::iter::repeat_n(IGNORE_INDEX, n));
                l.extend_from_slice(&lab[p + 1..]);
                row_labels.push(l);
                starts[r] = p;
                lens[r] = n;
                lengths[r] = row.len() - 1 + n;
            }
        }
    }
    let t = *lengths.iter().max().unwrap_or(&0);
    let mut padded = Vec::with_capacity(b);
    let mut flat_labels = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t);
    for (r, row) in rows.into_iter().enumerate() {
        let len = lengths[r];
        padded.push(if len < t {
            Tensor::cat(
                &[row.clone(), Tensor::zeros((t - len, d), row.dtype(), dev)?],
                0,
            )?
        } else {
            row
        });
        flat_labels.extend_from_slice(&row_labels[r]);
        flat_labels.extend(std::iter::repeat_n(IGNORE_INDEX, t - len));
        mask.extend(std::iter::repeat_n(1u8, len));
        mask.extend(std::iter::repeat_n(0u8, t - len));
    }
    Ok(Spliced {
        embeds: Tensor::stack(&padded, 0)?,
        labels: Tensor::from_vec(flat_labels, (b, t), dev)?.to_dtype(DType::I64)?,
        attention_mask: Tensor::from_vec(mask, (b, t), dev)?,
        spans: VisualSpans { starts, lens },
        lengths,
    })
}
