//! A byte-level BPE tokenizer trained with the `tokenizers` crate (GPT-2/LLaMA-3 style).
//!
//! Byte-level means every string encodes, so `</s>` inside chat templates, the vicuna_v1
//! system prompt, digits and the random letter strings of OCR answers never become `<unk>`.
//! Specials get fixed ids: `<unk>` 0, `<s>` 1, `</s>` 2, `<pad>` 3 (LLaMA's first three). The
//! post-processor puts `<s>` in front of every sequence, as LLaMA's tokenizer does, so
//! `crate::train::data::tokenize` detects it as the BOS.

use anyhow::{anyhow, Context, Result};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};

/// Special tokens, in id order.
pub const SPECIALS: [&str; 4] = ["<unk>", "<s>", "</s>", "<pad>"];
pub const UNK_ID: u32 = 0;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;
pub const PAD_ID: u32 = 3;

/// Trains a tokenizer of at most `vocab_size` entries on `lines`.
pub fn train_tokenizer<'a>(
    lines: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
) -> Result<Tokenizer> {
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let model = BPE::builder()
        .unk_token("<unk>".to_string())
        .build()
        .map_err(|e| anyhow!("building the BPE model: {e}"))?;
    let mut tok: TokenizerImpl<
        BPE,
        NormalizerWrapper,
        ByteLevel,
        TemplateProcessing,
        ByteLevelDecoder,
    > = TokenizerImpl::new(model);
    tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    tok.train(&mut trainer, lines)
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    for (i, s) in SPECIALS.iter().enumerate() {
        let id = tok.token_to_id(s);
        anyhow::ensure!(
            id == Some(i as u32),
            "special token {s} got id {id:?}, expected {i}"
        );
    }
    let post = TemplateProcessing::builder()
        .try_single("<s> $A")
        .and_then(|b| b.try_pair("<s> $A <s> $B"))
        .map_err(|e| anyhow!("tokenizer template: {e}"))?
        .special_tokens(vec![("<s>", BOS_ID)])
        .build()
        .map_err(|e| anyhow!("tokenizer template: {e}"))?;
    tok.with_post_processor(Some(post));
    Ok(Tokenizer::from(tok))
}

/// Saves a tokenizer as HF's `tokenizer.json`.
pub fn save_tokenizer(tok: &Tokenizer, path: &Path) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    tok.save(&tmp, false)
        .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}
