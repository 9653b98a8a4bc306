//! Batching: padding and masks, per-epoch shuffling, modality grouping, skip accounting and a
//! resumable data position.

use candle_core::{DType, Device, Tensor};
use mlvf::data::{
    load_llava_json, Batch, DataLoader, DataPosition, ImageAspect, ImagePreprocessor, LlavaDataset,
    LoadOptions, LoaderConfig, OnError, SamplerConfig, TemplateKind, TextTokenizer, TokenBudget,
    IGNORE_INDEX, IMAGE_TOKEN_INDEX,
};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava")
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(&fixtures().join("tokenizer.json")).unwrap()
}

fn finetune() -> LlavaDataset {
    load_llava_json(
        &fixtures().join("finetune.json"),
        &fixtures().join("images"),
        &LoadOptions::default(),
    )
    .unwrap()
}

fn config(batch: usize, shuffle: bool, group: bool) -> LoaderConfig {
    LoaderConfig {
        template: TemplateKind::VicunaV1,
        budget: TokenBudget {
            max_len: 2048,
            image_tokens: 4,
        },
        aspect: ImageAspect::Pad,
        sampler: SamplerConfig {
            seed: 11,
            shuffle,
            group_by_modality: group,
            batch_size: batch,
        },
        drop_last: false,
        on_error: OnError::Fail,
    }
}

/// Every batch of one epoch, as (dataset indices, batch).
fn epoch(loader: &mut DataLoader) -> Vec<Batch> {
    let mut out = Vec::new();
    while let Some(b) = loader.next_batch().unwrap() {
        out.push(b);
    }
    out
}

#[test]
fn batches_are_right_padded_with_mask_and_ignored_labels() {
    let (ds, tok) = (finetune(), tokenizer());
    let mut loader = DataLoader::new(&ds, &tok, config(2, false, false));
    let b = loader.next_batch().unwrap().unwrap();
    assert_eq!(b.indices, [0, 1]);
    let ids: Vec<&str> = b.ids.iter().map(|s| &**s).collect();
    assert_eq!(ids, ["000000001", "text_0"]);
    let (long, short) = (loader.sample(0).unwrap(), loader.sample(1).unwrap());
    assert_eq!(b.seq_len, long.tokens.input_ids.len());
    assert_eq!(
        b.lengths,
        [long.tokens.input_ids.len(), short.tokens.input_ids.len()]
    );
    let pad = b.seq_len - b.lengths[1];
    assert!(pad > 0);
    assert_eq!(b.row_ids(0), &long.tokens.input_ids[..]);
    assert_eq!(&b.row_ids(1)[..b.lengths[1]], &short.tokens.input_ids[..]);
    assert!(b.row_ids(1)[b.lengths[1]..]
        .iter()
        .all(|&id| id == tok.pad_id() as i64));
    assert!(b.row_labels(1)[b.lengths[1]..]
        .iter()
        .all(|&l| l == IGNORE_INDEX));
    let mask_row1 = &b.attention_mask[b.seq_len..];
    assert_eq!(mask_row1.iter().filter(|&&m| m == 1).count(), b.lengths[1]);
    assert!(mask_row1[..b.lengths[1]].iter().all(|&m| m == 1));
    // Image rows carry the path and the aspect mode for the preprocessor; text rows none.
    let img = b.images[0].as_ref().unwrap();
    assert_eq!(img.path, fixtures().join("images/00000/000000001.png"));
    assert_eq!(img.aspect, ImageAspect::Pad);
    assert!(b.images[1].is_none());
    assert_eq!(
        b.supervised(),
        long.tokens.supervised() + short.tokens.supervised()
    );

    let dev = Device::Cpu;
    let t = b.input_ids_tensor(&dev).unwrap();
    assert_eq!(t.dims(), [2, b.seq_len]);
    assert_eq!(t.dtype(), DType::I64);
    assert_eq!(
        t.to_vec2::<i64>().unwrap()[0]
            .iter()
            .filter(|&&x| x == IMAGE_TOKEN_INDEX)
            .count(),
        1
    );
    assert_eq!(b.labels_tensor(&dev).unwrap().dims(), [2, b.seq_len]);
    assert_eq!(b.attention_mask_tensor(&dev).unwrap().dtype(), DType::U8);
}

/// A stand-in for the vision preprocessor: a 2×2 image whose pixels encode the aspect mode.
struct FakePre;

impl ImagePreprocessor for FakePre {
    fn pixel_values(&self, path: &Path, aspect: ImageAspect) -> anyhow::Result<Tensor> {
        anyhow::ensure!(path.is_file(), "no such image");
        let v = if aspect == ImageAspect::Pad { 2.0 } else { 1.0 };
        Ok(Tensor::full(v as f32, (3, 2, 2), &Device::Cpu)?)
    }
    fn zero_image(&self) -> anyhow::Result<Tensor> {
        Ok(Tensor::zeros((3, 2, 2), DType::F32, &Device::Cpu)?)
    }
}

#[test]
fn pixel_values_stack_images_and_zero_images_for_text_rows() {
    let (ds, tok) = (finetune(), tokenizer());
    let mut loader = DataLoader::new(&ds, &tok, config(3, false, false));
    let b = loader.next_batch().unwrap().unwrap();
    let px = b.pixel_values(&FakePre, &Device::Cpu).unwrap();
    assert_eq!(px.dims(), [3, 3, 2, 2]);
    let per_row: Vec<f32> = px
        .mean_keepdim(1)
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .mean_keepdim(3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(
        per_row,
        [2.0, 0.0, 2.0],
        "pad-mode image, zero image for text_0, pad-mode image"
    );
}

#[test]
fn epochs_are_shuffled_deterministically_and_cover_every_record() {
    let (ds, tok) = (finetune(), tokenizer());
    let mut a = DataLoader::new(&ds, &tok, config(2, true, false));
    let e0: Vec<usize> = epoch(&mut a)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3, 4]);
    assert_eq!(
        a.position(),
        DataPosition {
            epoch: 0,
            offset: 5
        }
    );
    a.seek(a.position().next_epoch()).unwrap();
    let e1: Vec<usize> = epoch(&mut a)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    let mut b = DataLoader::new(&ds, &tok, config(2, true, false));
    let again: Vec<usize> = epoch(&mut b)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    assert_eq!(e0, again, "same seed, same epoch, same order");
    assert_ne!(e0, e1, "epochs reshuffle");
    assert_eq!(a.batches_per_epoch(), 3);
}

#[test]
fn a_killed_run_resumes_at_the_same_sample() {
    let (ds, tok) = (finetune(), tokenizer());
    // Uninterrupted: two epochs of batch 2.
    let mut full = DataLoader::new(&ds, &tok, config(2, true, false));
    let mut reference = epoch(&mut full);
    full.seek(full.position().next_epoch()).unwrap();
    reference.extend(epoch(&mut full));

    // Interrupted after the 4th batch (the first of epoch 1): the position saved with the
    // checkpoint goes to a brand-new loader, which must continue with batch 5.
    let mut first = DataLoader::new(&ds, &tok, config(2, true, false));
    let mut seen = epoch(&mut first);
    first.seek(first.position().next_epoch()).unwrap();
    seen.push(first.next_batch().unwrap().unwrap());
    let saved = first.position();
    assert_eq!(
        saved,
        DataPosition {
            epoch: 1,
            offset: 2
        }
    );
    let json = serde_json::to_string(&saved).unwrap();
    drop(first);

    let mut resumed = DataLoader::new(&ds, &tok, config(2, true, false));
    resumed.seek(serde_json::from_str(&json).unwrap()).unwrap();
    seen.extend(epoch(&mut resumed));
    assert_eq!(seen, reference);

    // A position from a bigger dataset is refused.
    let err = resumed
        .seek(DataPosition {
            epoch: 0,
            offset: 99,
        })
        .unwrap_err();
    assert!(err.to_string().contains("past the end"), "{err}");
}

#[test]
fn modality_grouping_gives_single_modality_batches() {
    let (ds, tok) = (finetune(), tokenizer());
    // 3 image + 2 text records, batch 2: one full image batch, the text pair is the last text
    // group and joins the leftover with the last image record (LLaVA's additional batch).
    for seed in 0..8 {
        let mut cfg = config(2, true, true);
        cfg.sampler.seed = seed;
        let mut loader = DataLoader::new(&ds, &tok, cfg);
        let batches = epoch(&mut loader);
        let first = &batches[0];
        let kinds: Vec<bool> = first.images.iter().map(|i| i.is_some()).collect();
        assert_eq!(kinds, [true, true], "seed {seed}: {:?}", first.indices);
        let all: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(&all[2..], {
            let mut t = all[2..].to_vec();
            t.sort_unstable();
            t
        });
    }
}

#[test]
fn unusable_samples_fail_with_their_id_or_are_skipped_and_counted() {
    let (ds, tok) = (finetune(), tokenizer());
    // With 4 visual tokens, the image records need 46 (000000001, 000000003) and 45 (42)
    // positions before their answers start; text_0 (40) and text_1 (45) fit whole. At max_len 45
    // the image records' answers are cut away entirely, which is an error naming the record…
    let mut cfg = config(5, false, false);
    cfg.budget.max_len = 45;
    let mut strict = DataLoader::new(&ds, &tok, cfg);
    let err = strict.next_batch().unwrap_err().to_string();
    assert!(
        err.contains("finetune.json: record 0 (id \"000000001\")"),
        "{err}"
    );
    assert!(err.contains("nothing would be trained on"), "{err}");
    assert!(err.contains("on_error = \"skip\""), "{err}");
    // …or, when asked, a skip recorded in the batch and counted, never a zero-label row.
    cfg.on_error = OnError::Skip;
    let mut lenient = DataLoader::new(&ds, &tok, cfg);
    let b = lenient.next_batch().unwrap().unwrap();
    let skipped: Vec<&str> = b.skipped.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(skipped, ["000000001", "42", "000000003"]);
    assert_eq!(b.indices, [1, 3]);
    assert_eq!(lenient.skipped_total(), 3);
    for row in 0..b.batch_size {
        assert!(b.row_labels(row).iter().any(|&l| l != IGNORE_INDEX));
    }
    assert!(lenient.next_batch().unwrap().is_none());
    // The audit sees the same before training starts.
    let audit = lenient.audit();
    assert_eq!((audit.records, audit.usable, audit.truncated), (5, 2, 0));
    let unusable: Vec<usize> = audit.unusable.iter().map(|s| s.index).collect();
    assert_eq!(unusable, [0, 2, 4]);
    let mut cfg47 = cfg;
    cfg47.budget.max_len = 47;
    let audit = DataLoader::new(&ds, &tok, cfg47).audit();
    // At 47 the three image records keep the first token(s) of their answers: usable, truncated.
    assert_eq!((audit.usable, audit.truncated), (5, 3));
}

#[test]
fn pretraining_uses_the_plain_template_and_square_images() {
    let tok = tokenizer();
    let ds = load_llava_json(
        &fixtures().join("pretrain.json"),
        &fixtures().join("images"),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut cfg = config(4, false, false);
    cfg.template = TemplateKind::Plain;
    cfg.aspect = ImageAspect::Square;
    let mut loader = DataLoader::new(&ds, &tok, cfg);
    let b = loader.next_batch().unwrap().unwrap();
    assert_eq!(b.batch_size, 3);
    assert_eq!(b.row_ids(0)[..2], [1, IMAGE_TOKEN_INDEX]);
    assert!(b
        .images
        .iter()
        .all(|i| i.as_ref().unwrap().aspect == ImageAspect::Square));
    // With drop_last a short final batch is dropped instead.
    cfg.drop_last = true;
    let mut dropping = DataLoader::new(&ds, &tok, cfg);
    assert!(dropping.next_batch().unwrap().is_none());
    assert_eq!(dropping.batches_per_epoch(), 0);
}

#[test]
fn loader_config_reads_llava_names() {
    // What a stage would read from a manifest or a task spec: LLaVA's spellings work.
    let cfg: LoaderConfig = serde_json::from_value(serde_json::json!({
        "template": "v1",
        "budget": {"max_len": 2048, "image_tokens": 576},
        "aspect": "pad",
        "sampler": {"seed": 0, "shuffle": true, "group_by_modality": true, "batch_size": 16},
        "drop_last": false,
        "on_error": "skip"
    }))
    .unwrap();
    assert_eq!(cfg.template, TemplateKind::VicunaV1);
    assert_eq!(cfg.aspect, ImageAspect::Pad);
    assert_eq!(cfg.on_error, OnError::Skip);
    let back: LoaderConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(
        "plain".parse::<TemplateKind>().unwrap(),
        TemplateKind::Plain
    );
    let err = "anyres".parse::<ImageAspect>().unwrap_err();
    assert!(err.contains("expected \"square\" or \"pad\""), "{err}");
    let err = "chatml".parse::<TemplateKind>().unwrap_err();
    assert!(
        err.contains("plain, v0_plain, v1, vicuna_v1, llava_v1"),
        "{err}"
    );
}

/// Tokenisation throughput on 20k two-round conversations with the SentencePiece-style fixture
/// tokenizer. `cargo test --test data_batch -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn tokenize_throughput() {
    let tok = TextTokenizer::from_file(&fixtures().join("tokenizer_sp.json")).unwrap();
    let template = mlvf::data::Template::new(TemplateKind::VicunaV1);
    let conv: Vec<mlvf::data::Turn> = [
        (
            "<image>\nWhat color is the square on the white wall?",
            "The square is red. It is a small square on a white wall.",
        ),
        (
            "Is the wall white? Answer the question using a single word or phrase.",
            "Yes.",
        ),
    ]
    .iter()
    .flat_map(|(q, a)| {
        [
            mlvf::data::Turn::new(mlvf::data::Role::Human, *q),
            mlvf::data::Turn::new(mlvf::data::Role::Gpt, *a),
        ]
    })
    .collect();
    let budget = TokenBudget {
        max_len: 2048,
        image_tokens: 576,
    };
    let t = std::time::Instant::now();
    let mut tokens = 0;
    for _ in 0..20_000 {
        tokens += mlvf::data::tokenize_conversation(&tok, &template, &conv, true, &budget)
            .unwrap()
            .input_ids
            .len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "tokenised 20000 conversations ({tokens} tokens) in {secs:.2} s: {:.0} samples/s",
        2e4 / secs
    );
}
