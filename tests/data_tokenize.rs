//! Conversation templates and tokenisation with label masking, checked against LLaVA.
//!
//! The expected strings follow `llava/conversation.py` (`get_prompt`, SeparatorStyle.TWO and
//! PLAIN) and `preprocess_multimodal`; the expected id/label arrays are what LLaVA's own
//! `preprocess_plain` / `preprocess_v1` (with `tokenizer_image_token`, legacy tokenizer) return for
//! the fixture records and the fixture tokenizer (tests/fixtures/llava/tokenizer.json, made by
//! make_fixtures.py). Fixture vocabulary used below: `<unk>`=0, `<s>`=1, `</s>`=2, "\n"=3, " "=4.

use mlvf::data::{
    load_llava_json, tokenize_conversation, LoadOptions, Role, Template, TemplateKind,
    TextTokenizer, TokenBudget, TokenizeError, Turn, IGNORE_INDEX, IMAGE_TOKEN_INDEX,
};
use std::path::{Path, PathBuf};

const I: i64 = IGNORE_INDEX;
const IMG: i64 = IMAGE_TOKEN_INDEX;

/// `vicuna_v1`'s system prompt in the fixture vocabulary: BOS, then "A chat between … questions."
/// followed by " USER" ":" (the system + sep + role + ": " prefix of every v1 conversation).
const V1_PREFIX: [i64; 32] = [
    1, 17, 72, 64, 50, 76, 142, 54, 52, 58, 96, 60, 11, 40, 60, 84, 90, 9, 80, 9, 54, 112, 56, 138,
    134, 142, 7, 119, 116, 11, 42, 13,
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava")
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(&fixtures().join("tokenizer.json")).unwrap()
}

fn turns(pairs: &[(&str, &str)]) -> Vec<Turn> {
    pairs
        .iter()
        .flat_map(|(q, a)| [Turn::new(Role::Human, *q), Turn::new(Role::Gpt, *a)])
        .collect()
}

fn big_budget() -> TokenBudget {
    TokenBudget {
        max_len: 2048,
        image_tokens: 576,
    }
}

// ---------------------------------------------------------------- templates (exact strings)

#[test]
fn vicuna_v1_renders_like_llava_get_prompt() {
    // SeparatorStyle.TWO: system + " " + "USER: " + q + " " + "ASSISTANT: " + a + "</s>" + …;
    // preprocess_multimodal first moves <image> to the front of its turn: "<image>\n" + rest.strip().
    let t = Template::new(TemplateKind::VicunaV1);
    let r = t
        .render_training(
            &turns(&[
                ("What color is the square?\n<image>", "The square is red."),
                ("Is the wall white?", "Yes."),
            ]),
            true,
        )
        .unwrap();
    let expected = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\nWhat color is the square? ASSISTANT: The square is red.</s>USER: Is the wall white? ASSISTANT: Yes.</s>";
    assert_eq!(r.text, expected);
    // Supervised: from the space after each "ASSISTANT:" through its "</s>".
    let spans: Vec<&str> = r.supervised.iter().map(|s| &r.text[s.clone()]).collect();
    assert_eq!(spans, [" The square is red.</s>", " Yes.</s>"]);
    assert_eq!(TemplateKind::parse("v1").unwrap(), TemplateKind::VicunaV1);
}

#[test]
fn llava_v1_differs_only_in_the_system_prompt() {
    // conv_llava_v1: "curious human … the human's questions", otherwise identical to vicuna_v1.
    let t = Template::new(TemplateKind::LlavaV1);
    let r = t
        .render_training(&turns(&[("Say hello.", "Hello!")]), false)
        .unwrap();
    assert_eq!(
        r.text,
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions. USER: Say hello. ASSISTANT: Hello!</s>"
    );
}

#[test]
fn plain_keeps_only_the_image_and_the_caption() {
    // preprocess_plain: source[0].value = "<image>"; text = "<image>" + caption + sep("\n").
    let t = Template::new(TemplateKind::Plain);
    let r = t
        .render_training(
            &turns(&[(
                "Give a brief description of the image.\n<image>",
                "a red square",
            )]),
            true,
        )
        .unwrap();
    assert_eq!(r.text, "<image>a red square\n");
    assert_eq!(&r.text[r.supervised[0].clone()], "a red square\n");
    // LLaVA asserts one image turn + one caption; we say so.
    let err = t
        .render_training(&turns(&[("q", "a"), ("q", "a")]), true)
        .unwrap_err();
    assert!(
        err.contains("exactly one human turn and one caption"),
        "{err}"
    );
    let err = t.render_training(&turns(&[("q", "a")]), false).unwrap_err();
    assert!(err.contains("needs an image record"), "{err}");
}

#[test]
fn generation_prompt_matches_lmms_eval_llava() {
    // lmms-eval llava: question = "<image>\n" + context; conv.append(USER, q); conv.append(ASSISTANT, None).
    let t = Template::new(TemplateKind::VicunaV1);
    assert_eq!(
        t.generation_prompt("Is the square red?\nAnswer the question using a single word or phrase.", 1),
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\nIs the square red?\nAnswer the question using a single word or phrase. ASSISTANT:"
    );
    // Two images: " ".join(["<image>"] * 2); a context already holding <image> is left alone.
    assert!(t
        .generation_prompt("Compare.", 2)
        .contains("USER: <image> <image>\nCompare. ASSISTANT:"));
    assert!(t
        .generation_prompt("Look: <image> here", 1)
        .ends_with("USER: Look: <image> here ASSISTANT:"));
    assert!(t
        .generation_prompt("Text only.", 0)
        .ends_with("USER: Text only. ASSISTANT:"));
    // PLAIN: messages joined by "\n", the open slot renders nothing.
    assert_eq!(
        Template::new(TemplateKind::Plain).generation_prompt("Describe.", 1),
        "<image>\nDescribe.\n"
    );
}

// ---------------------------------------------------------------- token ids and labels

#[test]
fn plain_ids_and_labels_match_llava_preprocess_plain() {
    let tok = tokenizer();
    let ds = load_llava_json(
        &fixtures().join("pretrain.json"),
        &fixtures().join("images"),
        &LoadOptions::default(),
    )
    .unwrap();
    let t = Template::new(TemplateKind::Plain);
    let out = tokenize_conversation(&tok, &t, &ds.records[0].turns, true, &big_budget()).unwrap();
    // [<s>, IMG] masked (len(tokenizer_image_token("<image>")) == 2); "a red square on a white wall\n" trained.
    assert_eq!(out.input_ids, [1, IMG, 49, 118, 130, 104, 50, 148, 146, 3]);
    assert_eq!(out.labels, [I, I, 49, 118, 130, 104, 50, 148, 146, 3]);
    let out = tokenize_conversation(&tok, &t, &ds.records[1].turns, true, &big_budget()).unwrap();
    assert_eq!(out.input_ids, [1, IMG, 49, 132, 66, 62, 3]);
    assert_eq!(out.labels, [I, I, 49, 132, 66, 62, 3]);
    assert_eq!(out.truncated, 0);
}

#[test]
fn v1_multi_round_image_record_matches_llava_preprocess_v1() {
    let tok = tokenizer();
    let ds = load_llava_json(
        &fixtures().join("finetune.json"),
        &fixtures().join("images"),
        &LoadOptions::default(),
    )
    .unwrap();
    let t = Template::new(TemplateKind::VicunaV1);
    let out = tokenize_conversation(&tok, &t, &ds.records[0].turns, true, &big_budget()).unwrap();
    let mut ids = V1_PREFIX.to_vec();
    // " " IMG "\n" What color is the square ? " ASSISTANT" ":" | " The" square is red . </s>
    // | USER : " Is" the wall white ? " ASSISTANT" ":" | " Yes" . </s>
    ids.extend([
        4, IMG, 3, 43, 74, 98, 134, 130, 15, 20, 13, 40, 130, 98, 118, 11, 2,
    ]);
    ids.extend([41, 13, 34, 134, 146, 148, 15, 20, 13, 48, 11, 2]);
    assert_eq!(out.input_ids, ids);
    let mut labels = vec![I; V1_PREFIX.len() + 11];
    labels.extend([40, 130, 98, 118, 11, 2]);
    labels.extend([I; 9]);
    labels.extend([48, 11, 2]);
    assert_eq!(out.labels, labels);
    assert_eq!(out.supervised(), 9);
    assert_eq!(out.images(), 1);
}

#[test]
fn v1_text_only_and_numeric_id_records_match_llava() {
    let tok = tokenizer();
    let ds = load_llava_json(
        &fixtures().join("finetune.json"),
        &fixtures().join("images"),
        &LoadOptions::default(),
    )
    .unwrap();
    let t = Template::new(TemplateKind::VicunaV1);
    // text_0: no sentinel, "Say hello." masked, " Hello" "!" "</s>" trained.
    let out = tokenize_conversation(&tok, &t, &ds.records[1].turns, false, &big_budget()).unwrap();
    let mut ids = V1_PREFIX.to_vec();
    ids.extend([38, 88, 11, 20, 13, 32, 5, 2]);
    assert_eq!(out.input_ids, ids);
    let mut labels = vec![I; V1_PREFIX.len() + 5];
    labels.extend([32, 5, 2]);
    assert_eq!(out.labels, labels);
    assert_eq!(out.images(), 0);
    // id 42: "<image>\nWhat shape is it?" → " " IMG "\n" …; " A tall bar." + </s> trained.
    let out = tokenize_conversation(&tok, &t, &ds.records[2].turns, true, &big_budget()).unwrap();
    let mut ids = V1_PREFIX.to_vec();
    ids.extend([4, IMG, 3, 43, 122, 98, 100, 15, 20, 13, 18, 132, 62, 11, 2]);
    assert_eq!(out.input_ids, ids);
    assert_eq!(&out.labels[..out.labels.len() - 5], vec![I; ids.len() - 5]);
    assert_eq!(&out.labels[ids.len() - 5..], [18, 132, 62, 11, 2]);
}

#[test]
fn eval_prompt_ids_follow_tokenizer_image_token() {
    let tok = tokenizer();
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.pad_id(), 0, "LLaVA v1 pads with <unk>");
    let t = Template::new(TemplateKind::VicunaV1);
    let ids = tok
        .encode_prompt(&t.generation_prompt("What color is the dot?", 1))
        .unwrap();
    let mut expected = V1_PREFIX.to_vec();
    expected.extend([4, IMG, 3, 43, 74, 98, 134, 82, 15, 20, 13]);
    assert_eq!(ids, expected);
    // Decoding drops special tokens and sentinels (lmms-eval: skip_special_tokens=True).
    assert_eq!(
        tok.decode(&[IMG, 40, 130, 98, 118, 11, 2]).unwrap(),
        " The square is red."
    );
    // One sentinel per <image>, BOS only once, even for a prompt that starts with the image.
    assert_eq!(
        tok.encode_prompt("<image><image>a").unwrap(),
        [1, IMG, IMG, 49]
    );
}

// ---------------------------------------------------------------- length budget

#[test]
fn budget_counts_visual_tokens_and_truncates_on_the_right() {
    let tok = tokenizer();
    let t = Template::new(TemplateKind::VicunaV1);
    let conv = turns(&[
        ("<image>\nWhat color is the square?", "The square is red."),
        ("Is the wall white?", "Yes."),
    ]);
    let full = tokenize_conversation(&tok, &t, &conv, true, &big_budget()).unwrap();
    assert_eq!(full.input_ids.len(), 61);
    // 61 text positions, one of them the sentinel: 60 + 10 visual tokens = 70 when expanded.
    let b = TokenBudget {
        max_len: 70,
        image_tokens: 10,
    };
    assert_eq!(b.expanded_len(&full.input_ids), 70);
    let fits = tokenize_conversation(&tok, &t, &conv, true, &b).unwrap();
    assert_eq!(fits, full);
    // 5 fewer positions: the second answer (" Yes" "." "</s>") and two tokens before it go.
    let cut = tokenize_conversation(
        &tok,
        &t,
        &conv,
        true,
        &TokenBudget {
            max_len: 65,
            image_tokens: 10,
        },
    )
    .unwrap();
    assert_eq!(cut.truncated, 5);
    assert_eq!(cut.input_ids[..], full.input_ids[..56]);
    assert_eq!(cut.labels[..], full.labels[..56]);
    assert_eq!(
        cut.supervised(),
        6,
        "only the first answer and its </s> remain"
    );
}

#[test]
fn fully_truncated_answers_and_split_images_are_errors() {
    let tok = tokenizer();
    let t = Template::new(TemplateKind::VicunaV1);
    let conv = turns(&[("<image>\nWhat color is the square?", "The square is red.")]);
    // Prefix up to "ASSISTANT:" is 43 positions (+9 for the image): max_len 52 leaves no answer.
    let err = tokenize_conversation(
        &tok,
        &t,
        &conv,
        true,
        &TokenBudget {
            max_len: 52,
            image_tokens: 10,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, TokenizeError::AnswerTruncated { max_len: 52, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("nothing would be trained on"));
    let ok = tokenize_conversation(
        &tok,
        &t,
        &conv,
        true,
        &TokenBudget {
            max_len: 53,
            image_tokens: 10,
        },
    )
    .unwrap();
    assert_eq!(ok.supervised(), 1);
    // The sentinel sits at position 33; 576 visual tokens cannot fit in 100.
    let err = tokenize_conversation(
        &tok,
        &t,
        &conv,
        true,
        &TokenBudget {
            max_len: 100,
            image_tokens: 576,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        TokenizeError::ImageDoesNotFit {
            end: 33 + 576,
            image_tokens: 576,
            max_len: 100
        }
    );
}

// ---------------------------------------------------------------- LLaVA's own outputs, replayed

/// tests/fixtures/llava/llava_reference.json holds what LLaVA's own code returned for every
/// fixture record (`preprocess_multimodal` + `preprocess_plain` / `preprocess_v1` with
/// `tokenizer_image_token`, official repository at 7de7fc2, transformers 5.x fast tokenizer,
/// legacy=True) and for two eval prompts (`conv_vicuna_v1.get_prompt` + `tokenizer_image_token`),
/// for both fixture tokenizers: the WordLevel one and the SentencePiece-style BPE one, whose
/// dummy-prefix `▁` and `▁` after `</s>` are the quirks LLaVA's round counting depends on.
#[test]
fn every_fixture_record_matches_llavas_own_preprocessing() {
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("llava_reference.json")).unwrap())
            .unwrap();
    let images = fixtures().join("images");
    let pretrain = load_llava_json(
        &fixtures().join("pretrain.json"),
        &images,
        &LoadOptions::default(),
    )
    .unwrap();
    let finetune = load_llava_json(
        &fixtures().join("finetune.json"),
        &images,
        &LoadOptions::default(),
    )
    .unwrap();
    let as_ids = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let mut checked = 0;
    for tokenizer_file in ["tokenizer.json", "tokenizer_sp.json"] {
        let tok = TextTokenizer::from_file(&fixtures().join(tokenizer_file)).unwrap();
        let by_template = &reference[tokenizer_file];
        for (name, ds) in [
            ("plain", &pretrain),
            ("v1", &finetune),
            ("llava_v1", &finetune),
        ] {
            let template = Template::new(TemplateKind::parse(name).unwrap());
            let expected = by_template[name].as_array().unwrap();
            assert_eq!(expected.len(), ds.len());
            for (record, want) in ds.records.iter().zip(expected) {
                assert_eq!(&*record.id, want["id"].as_str().unwrap());
                let got = tokenize_conversation(
                    &tok,
                    &template,
                    &record.turns,
                    record.has_image(),
                    &big_budget(),
                )
                .unwrap();
                let ctx = format!("{tokenizer_file} / {name} / record {}", record.id);
                assert_eq!(got.input_ids, as_ids(&want["input_ids"]), "ids: {ctx}");
                assert_eq!(got.labels, as_ids(&want["labels"]), "labels: {ctx}");
                checked += 1;
            }
        }
        let vicuna = Template::new(TemplateKind::VicunaV1);
        for want in by_template["eval"].as_array().unwrap() {
            let prompt = vicuna.generation_prompt(want["context"].as_str().unwrap(), 1);
            assert_eq!(prompt, want["prompt"].as_str().unwrap());
            assert_eq!(
                tok.encode_prompt(&prompt).unwrap(),
                as_ids(&want["input_ids"]),
                "{tokenizer_file}: {prompt:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * (3 + 5 + 5 + 2));
}
