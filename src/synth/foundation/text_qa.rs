//! Questions about text scenes (`synth::scene_text`) for the world's LM: tokenised in the chat
//! template the multimodal model is finetuned and evaluated with, trained on answers only, and
//! scored by exact match on held-out scenes.
//!
//! The score is greedy decoding's exact match computed in one teacher-forced pass: a greedy
//! decode reproduces the reference answer and then stops if and only if the argmax at every
//! answer position (its final `</s>` included) is the reference token. That makes the held-out
//! check a batched forward pass instead of a decode loop.

use crate::data::json::{Record, Role, Turn};
use crate::data::template::{Rendered, Template, TemplateKind};
use crate::data::tokenize::{tokenize_conversation, tokenize_rendered, TextTokenizer, TokenBudget};
use crate::model::llm::Llama;
use crate::model::loss::IGNORE_INDEX;
use crate::synth::HeldoutQuestion;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use std::collections::BTreeMap;

/// The template text scenes are rendered with: the finetuning and evaluation template, so the
/// LM meets its system prompt and turn format before the multimodal model does.
pub const TEXT_TEMPLATE: TemplateKind = TemplateKind::VicunaV1;

/// One tokenised conversation: ids and, per position, the id it is trained to produce there
/// (its own id where supervised, [`IGNORE_INDEX`] elsewhere, as `tokenize_conversation` gives).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaSample {
    pub ids: Vec<u32>,
    pub labels: Vec<i64>,
}

fn tokenize(tok: &TextTokenizer, template: &Template, turns: &[Turn]) -> Result<QaSample> {
    let budget = TokenBudget {
        max_len: 4096,
        image_tokens: 0,
    };
    let t = tokenize_conversation(tok, template, turns, false, &budget)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(QaSample {
        ids: t.input_ids.iter().map(|&i| i as u32).collect(),
        labels: t.labels,
    })
}

/// [`TEXT_TEMPLATE`], with its system prompt or without it (`USER: … ASSISTANT: …` alone).
pub fn text_template(system_prompt: bool) -> Template {
    if system_prompt {
        TEXT_TEMPLATE.template()
    } else {
        TemplateKind::VicunaV1NoSystem.template()
    }
}

/// The training conversations of the world's `text/train.json`, rendered with `template`.
pub fn training_samples(
    tok: &TextTokenizer,
    template: &Template,
    records: &[Record],
) -> Result<Vec<QaSample>> {
    records
        .iter()
        .map(|r| tokenize(tok, template, &r.turns).with_context(|| format!("text record {}", r.id)))
        .collect()
}

/// Caption records (`block`, `caption`) in the `plain` template's shape: `block + caption +
/// "\n"`, the caption and its newline supervised — what alignment pretraining trains with the
/// image's visual tokens in place of the block.
///
/// With `copy_only`, only the caption's first line (the block copied) is supervised: the
/// held-out check that the LM copies a block, the skill stage-1 alignment leans on.
pub fn caption_samples(
    tok: &TextTokenizer,
    records: &[Record],
    copy_only: bool,
) -> Result<Vec<QaSample>> {
    let budget = TokenBudget {
        max_len: 4096,
        image_tokens: 0,
    };
    records
        .iter()
        .map(|r| {
            let (block, caption) = match &*r.turns {
                [b, c] => (&b.value, &c.value),
                _ => anyhow::bail!("caption record {} needs one block and one caption", r.id),
            };
            let text = format!("{block}{caption}\n");
            let end = if copy_only {
                block.len() + caption.find('\n').unwrap_or(caption.len())
            } else {
                text.len()
            };
            // One supervised byte range (`supervised` holds ranges, not positions).
            #[allow(clippy::single_range_in_vec_init)]
            let rendered = Rendered {
                supervised: vec![block.len()..end],
                text,
            };
            let t = tokenize_rendered(tok, &rendered, &budget)
                .map_err(|e| anyhow::anyhow!("caption record {}: {e}", r.id))?;
            Ok(QaSample {
                ids: t.input_ids.iter().map(|&i| i as u32).collect(),
                labels: t.labels,
            })
        })
        .collect()
}

/// Held-out questions as one-turn conversations, with their score groups: the family, and for a
/// yes/no answer `family/answer` (`existence/yes`, `existence/no`), so a model that answers
/// "yes" to everything shows as 100 on one and 0 on the other instead of hiding at 50.
pub fn heldout_samples(
    tok: &TextTokenizer,
    template: &Template,
    questions: &[HeldoutQuestion],
) -> Result<Vec<(QaSample, String)>> {
    questions
        .iter()
        .map(|q| {
            let turns = [
                Turn::new(Role::Human, q.prompt.as_str()),
                Turn::new(Role::Gpt, q.answer.as_str()),
            ];
            let s = tokenize(tok, template, &turns)
                .with_context(|| format!("held-out question {}", q.id))?;
            let group = match q.answer.as_str() {
                "yes" | "no" => format!("{}/{}", q.family, q.answer),
                _ => q.family.clone(),
            };
            Ok((s, group))
        })
        .collect()
}

/// Right-padded ids `[B, T]`, and the flat indices (into `B·T`) of the positions whose next
/// token is supervised together with those next tokens. Right padding needs no attention mask:
/// causal attention never looks ahead, so real positions do not see the padding.
fn batch(samples: &[&QaSample], pad: u32, dev: &Device) -> Result<(Tensor, Vec<u32>, Vec<u32>)> {
    let t = samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(samples.len() * t);
    let (mut at, mut target) = (Vec::new(), Vec::new());
    for (b, s) in samples.iter().enumerate() {
        ids.extend_from_slice(&s.ids);
        ids.extend(std::iter::repeat_n(pad, t - s.ids.len()));
        for p in 1..s.labels.len() {
            if s.labels[p] != IGNORE_INDEX {
                at.push((b * t + p - 1) as u32);
                target.push(s.labels[p] as u32);
            }
        }
    }
    Ok((Tensor::from_vec(ids, (samples.len(), t), dev)?, at, target))
}

/// Logits `[N, vocab]` at the supervised positions of a batch, and their targets `[N]`.
fn answer_logits(model: &Llama, samples: &[&QaSample], pad: u32) -> Result<(Tensor, Tensor)> {
    let dev = model.device();
    let (ids, at, target) = batch(samples, pad, dev)?;
    let (b, t) = ids.dims2()?;
    let hidden = model.forward_hidden(&model.embed(&ids)?, &Default::default(), None)?;
    let h = hidden.reshape((b * t, hidden.dim(D::Minus1)?))?;
    let n = at.len();
    let picked = h.index_select(&Tensor::from_vec(at, n, dev)?, 0)?;
    Ok((model.lm_logits(&picked)?, Tensor::from_vec(target, n, dev)?))
}

/// Mean cross-entropy of the answer tokens (logits are computed at those positions only).
pub fn answer_loss(model: &Llama, samples: &[&QaSample], pad: u32) -> Result<Tensor> {
    let (logits, target) = answer_logits(model, samples, pad)?;
    Ok(candle_nn::loss::cross_entropy(&logits, &target)?)
}

/// The family name of held-out block-copy samples (scored apart from the questions).
pub const COPY_FAMILY: &str = "copy";

/// Held-out exact match: overall (over the question families) and per family, on 0–100; a
/// yes/no family also per answer (`existence/yes`: accuracy on the questions whose answer is
/// yes).
#[derive(Clone, Debug, PartialEq)]
pub struct LookupScore {
    pub overall: f64,
    pub by_family: BTreeMap<String, f64>,
}

/// Greedy exact match of every held-out sample (see the module docs), in batches of `batch`.
pub fn score(
    model: &Llama,
    samples: &[(QaSample, String)],
    pad: u32,
    batch: usize,
) -> Result<LookupScore> {
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    // Copying a block is a skill of its own, not a question: reported beside, not averaged in.
    let (mut hits, mut total) = (0, 0);
    for chunk in samples.chunks(batch.max(1)) {
        let refs: Vec<&QaSample> = chunk.iter().map(|(s, _)| s).collect();
        let (logits, target) = answer_logits(model, &refs, pad)?;
        let hit: Vec<u8> = logits
            .argmax(D::Minus1)?
            .eq(&target)?
            .to_dtype(DType::U8)?
            .to_vec1()?;
        // Supervised positions come sample by sample, in order.
        let mut k = 0;
        for (s, family) in chunk {
            let n = s.labels[1..].iter().filter(|&&l| l != IGNORE_INDEX).count();
            let all = hit[k..k + n].iter().all(|&h| h == 1);
            k += n;
            let mut count = |group: &str| {
                let e = per.entry(group.to_string()).or_default();
                e.0 += usize::from(all);
                e.1 += 1;
            };
            count(family);
            // `existence/yes` counts towards `existence` too.
            if let Some((parent, _)) = family.split_once('/') {
                count(parent);
            }
            if family != COPY_FAMILY {
                hits += usize::from(all);
                total += 1;
            }
        }
    }
    Ok(LookupScore {
        overall: 100.0 * hits as f64 / total.max(1) as f64,
        by_family: per
            .into_iter()
            .map(|(f, (h, t))| (f, 100.0 * h as f64 / t.max(1) as f64))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::json::validate_record;
    use crate::synth::foundation::tokenizer::{add_words, train_tokenizer};
    use crate::synth::scene_text::{cell_tokens, text_record};
    use crate::synth::SynthConfig;

    fn tokenizer() -> TextTokenizer {
        let lines = [
            "What color is the star? Answer the question using a single word or phrase.",
            "A chat between a curious user and an artificial intelligence assistant.",
            "red green blue yellow top left right bottom",
        ];
        let mut tok = train_tokenizer(lines.iter().copied().cycle().take(30), 400).unwrap();
        let words: Vec<String> = cell_tokens().into_iter().map(|t| t.text).collect();
        add_words(&mut tok, &words).unwrap();
        TextTokenizer::new(tok).unwrap()
    }

    /// A yes/no family is scored per answer too, and the family's score is the pooled one: a
    /// model that answers every existence question alike shows as 100 / 0, not as a bare 50.
    #[test]
    fn yes_no_families_are_scored_per_answer_and_pooled() {
        use crate::synth::foundation::lm::{lm_config, LmParams};
        use candle_nn::{VarBuilder, VarMap};
        let p = LmParams {
            hidden: 16,
            heads: 2,
            kv_heads: 1,
            intermediate: 32,
            ..LmParams::default()
        };
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let model = Llama::new(&lm_config(1, &p, 32), vb).unwrap();
        let sample = |answer: u32| QaSample {
            ids: vec![1, 5, 6, answer, 2],
            labels: vec![
                IGNORE_INDEX,
                IGNORE_INDEX,
                IGNORE_INDEX,
                answer as i64,
                IGNORE_INDEX,
            ],
        };
        // Whatever the untrained model predicts after the prompt plays "yes": the "yes"
        // questions are all hit, the "no" question missed.
        let (logits, _) = answer_logits(&model, &[&sample(7)], 0).unwrap();
        let yes_id = logits.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap()[0];
        let no_id = (yes_id + 1) % 32;
        let samples: Vec<(QaSample, String)> = vec![
            (sample(yes_id), "existence/yes".into()),
            (sample(yes_id), "existence/yes".into()),
            (sample(yes_id), "existence/yes".into()),
            (sample(no_id), "existence/no".into()),
            (sample(no_id), COPY_FAMILY.into()),
        ];
        let s = score(&model, &samples, 0, 2).unwrap();
        assert_eq!(s.by_family["existence/yes"], 100.0, "{s:?}");
        assert_eq!(s.by_family["existence/no"], 0.0, "{s:?}");
        assert_eq!(s.by_family["existence"], 75.0, "{s:?}");
        // The copy sample is reported beside, not averaged in.
        assert_eq!(s.overall, 75.0, "{s:?}");
        assert_eq!(s.by_family[COPY_FAMILY], 0.0, "{s:?}");
    }

    /// A text conversation reaches the LM with its nine cell tokens intact and only the answers
    /// (and their `</s>`) supervised.
    #[test]
    fn conversations_keep_the_block_and_supervise_answers_only() {
        let tok = tokenizer();
        let cfg = SynthConfig::default();
        let records: Vec<_> = (0..20).map(|i| text_record(&cfg, i)).collect();
        // Through the datasets' validation, as the LM reads `text/train.json`.
        let validated: Vec<Record> = records
            .iter()
            .map(|r| {
                let raw = serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
                validate_record(raw, std::path::Path::new("."), false).unwrap()
            })
            .collect();
        let samples = training_samples(&tok, &text_template(true), &validated).unwrap();
        let cells: Vec<u32> = cell_tokens()
            .iter()
            .map(|t| tok.inner().token_to_id(&t.text).unwrap())
            .collect();
        for (r, s) in records.iter().zip(&samples) {
            let in_block = s.ids.iter().filter(|id| cells.contains(id)).count();
            assert_eq!(in_block, 9, "{}", r.id);
            let answers: String = r
                .conversations
                .iter()
                .skip(1)
                .step_by(2)
                .map(|t| format!(" {}</s>", t.value))
                .collect();
            let supervised: Vec<i64> = s
                .labels
                .iter()
                .copied()
                .filter(|&l| l != IGNORE_INDEX)
                .collect();
            assert_eq!(
                tok.decode(&supervised).unwrap(),
                answers.replace("</s>", "")
            );
        }
        // Without the system prompt: the same conversations, the prompt's tokens gone, the
        // same answers supervised.
        let bare = training_samples(&tok, &text_template(false), &validated).unwrap();
        let prompt = tok
            .inner()
            .encode(TEXT_TEMPLATE.template().system, false)
            .unwrap()
            .len();
        for (with, without) in samples.iter().zip(&bare) {
            assert!(without.ids.len() + prompt / 2 < with.ids.len());
            let answers = |s: &QaSample| -> Vec<i64> {
                s.labels
                    .iter()
                    .copied()
                    .filter(|&l| l != IGNORE_INDEX)
                    .collect()
            };
            assert_eq!(answers(with), answers(without));
        }
        let ids: Vec<i64> = bare[0].ids.iter().map(|&i| i as i64).collect();
        let text = tok.decode(&ids).unwrap();
        assert!(!text.contains("curious"), "{text}");
        assert!(
            text.contains("USER:") && text.contains("ASSISTANT:"),
            "{text}"
        );
    }
}
