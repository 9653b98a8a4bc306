//! Tokenisation with LLaVA's image sentinel and label masking.
//!
//! # Image placeholder
//! As LLaVA's `tokenizer_image_token` does, a prompt is split on `<image>` and each chunk is
//! tokenised on its own (so a Llama SentencePiece tokeniser gives the chunk after the image its
//! own dummy-prefix token, exactly as in LLaVA); BOS is kept only in front of the first chunk and
//! the chunks are joined by a single [`IMAGE_TOKEN_INDEX`] (-200). The model later replaces that
//! one position by the image's `n` visual tokens.
//!
//! # Labels
//! Labels are [`IGNORE_INDEX`] (-100) everywhere except on the tokens of the assistant answers
//! and their end separator (`</s>` for `vicuna_v1`, `"\n"` for `plain`). They are derived from
//! the byte ranges the template marks as supervised (see [`Rendered`]): a token is supervised
//! when its first byte lies in one of them. This gives the mask LLaVA intends:
//! * `plain` (`preprocess_plain`): `[BOS, <image>]` ignored, caption and `"\n"` trained.
//! * `vicuna_v1` (`preprocess_v1`): BOS, system prompt, every `USER: …` turn and every
//!   `ASSISTANT:` ignored; every answer (from the token carrying the space after
//!   `ASSISTANT:`) and its `</s>` trained.
//!
//! ## LLaVA's round counting, and why we do not copy it
//! `preprocess_v1` does not look at offsets: it splits the rendered text on `</s>`, re-tokenises
//! every round alone and advances a cursor by `len(tokenize(round))` (the round's BOS stands in for
//! its missing `</s>`) after masking `len(tokenize(round up to "ASSISTANT: ")) - 2` tokens (minus
//! BOS and minus the lone `▁` the trailing space becomes). That count is right only when a round
//! tokenises the same alone as in context. With a non-legacy Llama tokeniser (`legacy=False`,
//! tokenizers ≥ 0.14) every round after the first is one token shorter in context, so LLaVA
//! subtracts 1 from both counts for `i != 0` (`tokenizer_legacy` patch); get the flag wrong and the
//! labels slide by one token per round, or the cursor misses the total and LLaVA masks the *whole*
//! sample with only a printed "tokenization mismatch" warning — a sample silently trained on
//! nothing. (Seen on the SentencePiece-style test tokenizer: with `legacy=False` LLaVA prints
//! "tokenization mismatch: 57 vs. 58" and masks the whole two-round fixture record.) We tokenise
//! each chunk once and label by offsets, so no round is re-counted and there is no off-by-one to
//! patch; for a legacy tokeniser (MobileLLaMA's) the result equals LLaVA's mask token for token
//! (tests/data_tokenize.rs replays LLaVA's own outputs).
//!
//! # Length budget
//! LLaVA truncates to `model_max_length` (2048) *after* the sentinel is expanded into visual
//! tokens. [`TokenBudget`] makes that explicit: a sample's expanded length is
//! `text tokens − images + images × image_tokens` (576 for CLIP-L/336) and must not exceed
//! `max_len`. Longer samples are cut on the right. A cut that would split an image's visual
//! tokens, or that leaves no supervised token, is an error ([`TokenizeError`]) that the caller
//! reports or skips: a sample is never trained on with zero labels.

use super::json::{Turn, IMAGE_PLACEHOLDER};
use super::template::{Rendered, Template};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokenizers::Tokenizer;

/// LLaVA's `IMAGE_TOKEN_INDEX`: the one position an image's visual tokens replace.
pub const IMAGE_TOKEN_INDEX: i64 = -200;
/// LLaVA's (and PyTorch's) `IGNORE_INDEX`: labels with this value take no part in the loss.
pub const IGNORE_INDEX: i64 = -100;
/// LLaVA-1.5's `model_max_length`.
pub const LLAVA_MAX_LEN: usize = 2048;

/// A `tokenizers` tokenizer plus what LLaVA's code needs to know about it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
    pad: u32,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos", &self.bos)
            .field("pad", &self.pad)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads an HF `tokenizer.json`.
    pub fn from_file(path: &Path) -> anyhow::Result<TextTokenizer> {
        let inner = Tokenizer::from_file(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot load tokenizer {}: {e}. It must be a Hugging Face tokenizer.json (fast tokenizer format)",
                path.display()
            )
        })?;
        TextTokenizer::new(inner)
    }

    /// Wraps a tokenizer. BOS is whatever the tokenizer's post-processor puts in front of a
    /// sequence (Llama: `<s>`); none if it adds nothing in front. The pad id is the tokenizer's
    /// padding id if it has one, else `<unk>` (LLaVA sets `pad_token = unk_token` for v1), else
    /// `<pad>`, else 0 — padded positions are masked out, the id only has to be a valid row.
    pub fn new(inner: Tokenizer) -> anyhow::Result<TextTokenizer> {
        let with = inner
            .encode("a", true)
            .map_err(|e| anyhow::anyhow!("tokenizer cannot encode a probe string: {e}"))?;
        let without = inner
            .encode("a", false)
            .map_err(|e| anyhow::anyhow!("tokenizer cannot encode a probe string: {e}"))?;
        let (w, wo) = (with.get_ids(), without.get_ids());
        let bos = (w.len() > wo.len() && w[1..].starts_with(wo)).then(|| w[0]);
        let pad = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("<unk>"))
            .or_else(|| inner.token_to_id("<pad>"))
            .unwrap_or(0);
        Ok(TextTokenizer { inner, bos, pad })
    }

    /// The wrapped tokenizer (for decoding).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The id written at padded positions (masked out by the attention mask).
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// Overrides the pad id (e.g. from a model's config).
    pub fn with_pad_id(mut self, pad: u32) -> TextTokenizer {
        self.pad = pad;
        self
    }

    /// Text of generated ids, special tokens (`</s>`, …) left out, as lmms-eval's llava wrapper
    /// decodes with `skip_special_tokens=True`. Negative ids (image sentinels) are dropped.
    pub fn decode(&self, ids: &[i64]) -> Result<String, TokenizeError> {
        let ids: Vec<u32> = ids.iter().filter(|&&i| i >= 0).map(|&i| i as u32).collect();
        self.inner
            .decode(&ids, true)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))
    }

    /// LLaVA's `tokenizer_image_token`: ids of `prompt` with each `<image>` as one
    /// [`IMAGE_TOKEN_INDEX`]. Used for eval prompts (see [`Template::generation_prompt`]).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<i64>, TokenizeError> {
        Ok(self.encode_with_offsets(prompt)?.0)
    }

    /// Ids and, per id, the byte offset in `text` where its token starts (`None` for BOS and
    /// image sentinels).
    fn encode_with_offsets(
        &self,
        text: &str,
    ) -> Result<(Vec<i64>, Vec<Option<usize>>), TokenizeError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 4);
        let mut starts = Vec::with_capacity(ids.capacity());
        if let Some(bos) = self.bos {
            ids.push(bos as i64);
            starts.push(None);
        }
        let mut base = 0usize;
        for (k, chunk) in text.split(IMAGE_PLACEHOLDER).enumerate() {
            if k > 0 {
                ids.push(IMAGE_TOKEN_INDEX);
                starts.push(None);
                base += IMAGE_PLACEHOLDER.len();
            }
            if !chunk.is_empty() {
                let enc = self
                    .inner
                    .encode(chunk, false)
                    .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
                ids.extend(enc.get_ids().iter().map(|&id| id as i64));
                starts.extend(enc.get_offsets().iter().map(|&(s, _)| Some(base + s)));
            }
            base += chunk.len();
        }
        Ok((ids, starts))
    }
}

/// The sequence-length budget, counted after each image sentinel becomes its visual tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBudget {
    /// Longest sequence the LLM is trained on (LLaVA: 2048), visual tokens included.
    pub max_len: usize,
    /// Visual tokens one image expands to (CLIP-L/336: 576; SigLIP-so400m/384 as released: 728).
    pub image_tokens: usize,
}

impl TokenBudget {
    /// LLaVA-1.5's budget (2048) for an encoder giving `image_tokens` visual tokens.
    pub fn llava(image_tokens: usize) -> TokenBudget {
        TokenBudget {
            max_len: LLAVA_MAX_LEN,
            image_tokens,
        }
    }

    /// Length of `ids` once every sentinel is expanded.
    pub fn expanded_len(&self, ids: &[i64]) -> usize {
        ids.iter()
            .map(|&id| {
                if id == IMAGE_TOKEN_INDEX {
                    self.image_tokens
                } else {
                    1
                }
            })
            .sum()
    }
}

/// One tokenised training sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokenized {
    /// Token ids, with [`IMAGE_TOKEN_INDEX`] where the image goes.
    pub input_ids: Vec<i64>,
    /// Same length as `input_ids`; [`IGNORE_INDEX`] where no loss is taken.
    pub labels: Vec<i64>,
    /// Tokens cut off the end to fit the budget (0 if none).
    pub truncated: usize,
}

impl Tokenized {
    /// Number of positions that contribute to the loss.
    pub fn supervised(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Number of image sentinels.
    pub fn images(&self) -> usize {
        self.input_ids
            .iter()
            .filter(|&&id| id == IMAGE_TOKEN_INDEX)
            .count()
    }
}

/// Why a conversation could not become a training sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    #[error("{0}")]
    Template(String),
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("the image's {image_tokens} visual tokens would end at position {end}, past max_len {max_len}; raise max_len or shorten the text before <image>")]
    ImageDoesNotFit {
        end: usize,
        image_tokens: usize,
        max_len: usize,
    },
    #[error("every answer token lies past max_len {max_len} (sample is {expanded} tokens with visual tokens expanded); nothing would be trained on")]
    AnswerTruncated { max_len: usize, expanded: usize },
    #[error("the conversation has no answer tokens to train on")]
    NoAnswer,
}

/// Renders `turns` with `template`, tokenises it and masks the labels (see the module docs),
/// then fits it to `budget`.
pub fn tokenize_conversation(
    tok: &TextTokenizer,
    template: &Template,
    turns: &[Turn],
    has_image: bool,
    budget: &TokenBudget,
) -> Result<Tokenized, TokenizeError> {
    let rendered = template
        .render_training(turns, has_image)
        .map_err(TokenizeError::Template)?;
    tokenize_rendered(tok, &rendered, budget)
}

/// Tokenises an already rendered conversation (see [`Template::render_training`]).
pub fn tokenize_rendered(
    tok: &TextTokenizer,
    rendered: &Rendered,
    budget: &TokenBudget,
) -> Result<Tokenized, TokenizeError> {
    let (mut input_ids, starts) = tok.encode_with_offsets(&rendered.text)?;
    let mut labels: Vec<i64> = input_ids
        .iter()
        .zip(&starts)
        .map(|(&id, start)| match start {
            Some(s) if in_ranges(*s, &rendered.supervised) => id,
            _ => IGNORE_INDEX,
        })
        .collect();
    if !labels.iter().any(|&l| l != IGNORE_INDEX) {
        return Err(TokenizeError::NoAnswer);
    }
    // Fit the budget: walk the expanded length and cut at the first token that overflows.
    let expanded = budget.expanded_len(&input_ids);
    let mut truncated = 0;
    if expanded > budget.max_len {
        let mut len = 0usize;
        let mut keep = input_ids.len();
        for (i, &id) in input_ids.iter().enumerate() {
            let width = if id == IMAGE_TOKEN_INDEX {
                budget.image_tokens
            } else {
                1
            };
            if len + width > budget.max_len {
                if id == IMAGE_TOKEN_INDEX {
                    return Err(TokenizeError::ImageDoesNotFit {
                        end: len + width,
                        image_tokens: budget.image_tokens,
                        max_len: budget.max_len,
                    });
                }
                keep = i;
                break;
            }
            len += width;
        }
        truncated = input_ids.len() - keep;
        input_ids.truncate(keep);
        labels.truncate(keep);
        if !labels.iter().any(|&l| l != IGNORE_INDEX) {
            return Err(TokenizeError::AnswerTruncated {
                max_len: budget.max_len,
                expanded,
            });
        }
    }
    Ok(Tokenized {
        input_ids,
        labels,
        truncated,
    })
}

/// Whether `pos` lies in one of the sorted, disjoint `ranges`.
fn in_ranges(pos: usize, ranges: &[std::ops::Range<usize>]) -> bool {
    // Few ranges per sample (one per answer): a binary search keeps long multi-turn
    // conversations linear overall.
    let i = ranges.partition_point(|r| r.end <= pos);
    ranges.get(i).is_some_and(|r| r.contains(&pos))
}
