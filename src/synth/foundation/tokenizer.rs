//! A byte-level BPE tokenizer trained with the `tokenizers` crate (GPT-2/LLaMA-3 style).
//!
//! Byte-level means every string encodes, so `</s>` inside chat templates, the vicuna_v1
//! system prompt, digits and the random letter strings of OCR answers never become `<unk>`.
//! Specials get fixed ids: `<unk>` 0, `<s>` 1, `</s>` 2, `<pad>` 3 (LLaMA's first three). The
//! post-processor puts `<s>` in front of every sequence, as LLaMA's tokenizer does, so
//! `crate::data::tokenize` detects it as the BOS.

use anyhow::{anyhow, Result};
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

/// Adds each of `words` as one token of its own (after the trained vocabulary), so the BPE
/// never splits it: the scene language's cell tokens (`synth::scene_text`), which bind colour and
/// shape into a single context item. `lstrip` lets a token absorb the space before it, so
/// `"red_star empty"` is two tokens, not four. Not special: decoding keeps them.
pub fn add_words(tok: &mut Tokenizer, words: &[String]) -> Result<()> {
    let tokens = words
        .iter()
        .map(|w| AddedToken::from(w.clone(), false).lstrip(true));
    tok.add_tokens(tokens)
        .map_err(|e| anyhow!("adding words to the tokenizer: {e}"))?;
    Ok(())
}

/// Saves a tokenizer as HF's `tokenizer.json`, atomically.
pub fn save_tokenizer(tok: &Tokenizer, path: &Path) -> Result<()> {
    crate::atomic::write_atomic_via(path, |tmp| tok.save(tmp, false).map_err(|e| anyhow!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::scene_text::cell_tokens;

    fn words() -> Vec<String> {
        cell_tokens().into_iter().map(|t| t.text).collect()
    }

    /// Each cell word is one token wherever it stands (after a space, at the start, glued to
    /// the caption that follows it in alignment-shaped text), and decodes back to itself.
    #[test]
    fn cell_words_stay_whole() {
        let lines = [
            "A small red star in the top left corner.",
            "What color is it?",
        ];
        let mut tok = train_tokenizer(lines.iter().copied().cycle().take(20), 512).unwrap();
        add_words(&mut tok, &words()).unwrap();
        for text in [
            "top_left/red_star top/empty top_right/blue_circle",
            "left/empty center/empty right/pink_diamond\nWhat color is it?",
            "bottom_right/green_crossA small red star.",
        ] {
            let enc = tok.encode(text, false).unwrap();
            let pieces: Vec<&str> = text.split([' ', '\n']).collect();
            let cells = pieces
                .iter()
                .filter(|w| words().iter().any(|c| w.starts_with(c.as_str())))
                .count();
            let ids: Vec<u32> = words()
                .iter()
                .map(|w| tok.token_to_id(w).unwrap())
                .collect();
            let whole = enc.get_ids().iter().filter(|t| ids.contains(t)).count();
            assert_eq!(whole, cells, "{text}: {:?}", enc.get_tokens());
        }
        let enc = tok.encode("top/red_star center/empty", false).unwrap();
        assert_eq!(enc.get_ids().len(), 2, "{:?}", enc.get_tokens());
    }
}
