//! LLaVA JSON datasets: the published shapes load, malformed records are named or skipped.

use mlvf::data::{load_llava_json, DataError, LoadOptions, OnError, Role};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava")
}

fn images() -> PathBuf {
    fixtures().join("images")
}

/// Writes `json` to a temporary dataset file and loads it against the fixture images.
fn load_str(
    json: &str,
    opts: &LoadOptions,
) -> (
    tempfile::TempDir,
    Result<mlvf::data::LlavaDataset, DataError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, json).unwrap();
    let result = load_llava_json(&path, &images(), opts);
    (dir, result)
}

fn error_of(json: &str) -> String {
    let (_dir, result) = load_str(json, &LoadOptions::default());
    result.expect_err("the record is malformed").to_string()
}

#[test]
fn loads_the_finetune_mix_shape_with_text_only_and_numeric_ids() {
    let ds = load_llava_json(
        &fixtures().join("finetune.json"),
        &images(),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(ds.len(), 5);
    assert!(ds.skipped.is_empty());
    let ids: Vec<&str> = ds.records.iter().map(|r| &*r.id).collect();
    assert_eq!(ids, ["000000001", "text_0", "42", "text_1", "000000003"]);
    assert_eq!(ds.image_count(), 3);
    let first = &ds.records[0];
    assert_eq!(first.turns.len(), 4);
    assert_eq!(first.turns[0].role, Role::Human);
    assert_eq!(&*first.turns[0].value, "What color is the square?\n<image>");
    assert_eq!(&*first.turns[3].value, "Yes.");
    assert_eq!(
        ds.image_path(first).unwrap(),
        images().join("00000/000000001.png")
    );
    assert!(ds.image_path(&ds.records[1]).is_none());
    // LLaVA's modality_lengths: `len(value.split())` summed over turns (`<image>` counts as a
    // word), negative for text-only records.
    assert_eq!(first.modality_length(), 6 + 4 + 4 + 1);
    assert_eq!(ds.records[1].modality_length(), -3);
}

#[test]
fn streaming_and_in_memory_parsing_agree() {
    let streamed = LoadOptions {
        in_memory_limit: 0,
        ..LoadOptions::default()
    };
    let a = load_llava_json(
        &fixtures().join("finetune.json"),
        &images(),
        &LoadOptions::default(),
    )
    .unwrap();
    let b = load_llava_json(&fixtures().join("finetune.json"), &images(), &streamed).unwrap();
    assert_eq!(a.records, b.records);
    let (_d, r) = load_str(
        r#"[{"id": "ok", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, {"id": "z"}]"#,
        &streamed,
    );
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("record 1 (id \"z\"): has no \"conversations\""));
    let (_d, r) = load_str(
        "[{\"id\": 1}, {",
        &LoadOptions {
            on_error: OnError::Skip,
            ..streamed
        },
    );
    assert!(r.unwrap_err().to_string().contains("near record 1"));
}

#[test]
fn loads_the_pretrain_caption_shape() {
    let ds = load_llava_json(
        &fixtures().join("pretrain.json"),
        &images(),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(ds.len(), 3);
    assert!(ds
        .records
        .iter()
        .all(|r| r.has_image() && r.turns.len() == 2));
    assert_eq!(&*ds.records[2].turns[1].value, "a small green dot");
}

#[test]
fn missing_conversations_names_file_index_and_id() {
    let msg = error_of(
        r#"[{"id": "ok", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
                          {"id": "cap_17", "image": "00000/000000001.png"}]"#,
    );
    assert!(msg.contains("bad.json"), "{msg}");
    assert!(msg.contains("record 1 (id \"cap_17\")"), "{msg}");
    assert!(msg.contains("no \"conversations\" field"), "{msg}");
    assert!(msg.contains("on_error = \"skip\""), "{msg}");
}

#[test]
fn wrong_role_order_is_reported() {
    let msg = error_of(
        r#"[{"id": 7, "conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "yo"}]}]"#,
    );
    assert!(msg.contains("record 0 (id \"7\")"), "{msg}");
    assert!(msg.contains("turn 0 is from \"gpt\""), "{msg}");
    let msg = error_of(
        r#"[{"id": "a", "conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q2"}]}]"#,
    );
    assert!(msg.contains("turn 1 is from \"human\""), "{msg}");
    let msg = error_of(r#"[{"id": "a", "conversations": [{"from": "human", "value": "q"}]}]"#);
    assert!(msg.contains("unanswered human turn"), "{msg}");
    let msg = error_of(
        r#"[{"id": "a", "conversations": [{"from": "user", "value": "q"}, {"from": "gpt", "value": "a"}]}]"#,
    );
    assert!(
        msg.contains("\"from\": \"user\"; expected \"human\" or \"gpt\""),
        "{msg}"
    );
}

#[test]
fn image_without_placeholder_and_placeholder_without_image_are_reported() {
    let msg = error_of(
        r#"[{"id": "x1", "image": "00000/000000001.png", "conversations": [{"from": "human", "value": "Describe."}, {"from": "gpt", "value": "red"}]}]"#,
    );
    assert!(msg.contains("record 0 (id \"x1\")"), "{msg}");
    assert!(msg.contains("no <image> in its first human turn"), "{msg}");
    let msg = error_of(
        r#"[{"id": "x2", "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "red"}]}]"#,
    );
    assert!(
        msg.contains("<image> in turn 0 but no \"image\" field"),
        "{msg}"
    );
    let msg = error_of(
        r#"[{"id": "x3", "image": "00000/000000001.png", "conversations": [{"from": "human", "value": "<image>\nA"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "<image> again"}, {"from": "gpt", "value": "c"}]}]"#,
    );
    assert!(msg.contains("turn(s) [0, 2]"), "{msg}");
}

#[test]
fn missing_image_file_is_a_malformed_record() {
    let msg = error_of(
        r#"[{"id": "gone", "image": "00000/nope.jpg", "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "red"}]}]"#,
    );
    assert!(msg.contains("record 0 (id \"gone\")"), "{msg}");
    assert!(msg.contains("nope.jpg does not exist"), "{msg}");
    // …unless the caller opts out of the check (e.g. images on a remote mount at train time).
    let (_d, ok) = load_str(
        r#"[{"id": "gone", "image": "00000/nope.jpg", "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "red"}]}]"#,
        &LoadOptions {
            check_images: false,
            ..LoadOptions::default()
        },
    );
    assert_eq!(ok.unwrap().len(), 1);
}

#[test]
fn wrong_types_are_per_record_errors_not_parse_failures() {
    let msg = error_of(r#"[{"id": "m", "image": ["a.jpg", "b.jpg"], "conversations": []}]"#);
    assert!(
        msg.contains("record 0 (id \"m\")") && msg.contains("multi-image"),
        "{msg}"
    );
    let msg = error_of(
        r#"[{"id": "v", "conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]}]"#,
    );
    assert!(
        msg.contains("turn 0 has a \"value\" that is a number"),
        "{msg}"
    );
    let msg = error_of(
        r#"[{"id": "e", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]}]"#,
    );
    assert!(msg.contains("turn 1 (gpt) is empty"), "{msg}");
    let msg = error_of(
        r#"[{"id": "ok", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, 17]"#,
    );
    assert!(msg.contains("record 1 (id <none>): is a number"), "{msg}");
}

#[test]
fn broken_json_names_the_file_and_position() {
    let msg = error_of("[{\"id\": \"a\", \"conversations\": [}]");
    assert!(msg.contains("bad.json"), "{msg}");
    assert!(
        msg.contains("not a LLaVA JSON dataset (near record 0)"),
        "{msg}"
    );
    assert!(msg.contains("line 1"), "{msg}");
    let msg = error_of(r#"{"id": "a"}"#);
    assert!(msg.contains("JSON array"), "{msg}");
    let (_d, r) = load_str("[]", &LoadOptions::default());
    assert!(r.unwrap().is_empty());
    let missing = load_llava_json(
        Path::new("/no/such/file.json"),
        &images(),
        &LoadOptions::default(),
    );
    let msg = missing.unwrap_err().to_string();
    assert!(
        msg.contains("cannot open dataset /no/such/file.json"),
        "{msg}"
    );
}

#[test]
fn skip_mode_leaves_malformed_records_out_and_counts_them() {
    let json = r#"[
      {"id": "good1", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
      {"id": "nocon"},
      {"id": "noimg", "image": "00000/missing.png", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]},
      {"id": 5, "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
      {"id": "good2", "image": "00000/000000002.png", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}
    ]"#;
    let (_d, ds) = load_str(
        json,
        &LoadOptions {
            on_error: OnError::Skip,
            ..LoadOptions::default()
        },
    );
    let ds = ds.unwrap();
    let ids: Vec<&str> = ds.records.iter().map(|r| &*r.id).collect();
    assert_eq!(ids, ["good1", "good2"]);
    assert_eq!(ds.skipped.len(), 3);
    let skipped: Vec<(usize, Option<&str>)> = ds
        .skipped
        .iter()
        .map(|s| (s.index, s.id.as_deref()))
        .collect();
    assert_eq!(
        skipped,
        [(1, Some("nocon")), (2, Some("noimg")), (3, Some("5"))]
    );
    assert!(ds.skipped[1].reason.contains("missing.png does not exist"));
    // Syntax errors are never skippable: the rest of the file cannot be trusted.
    let (_d, r) = load_str(
        "[{\"id\": 1}, {",
        &LoadOptions {
            on_error: OnError::Skip,
            ..LoadOptions::default()
        },
    );
    assert!(r.unwrap_err().to_string().contains("near record 1"));
}

/// Parse time of a generated 100k-record file shaped like llava_v1_5_mix665k (2/3 image records
/// with 2–3 rounds, 1/3 text-only), images unchecked. Run with
/// `cargo test --release --test data_json -- --ignored --nocapture parse_100k`.
#[test]
#[ignore]
fn parse_100k_records_timing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mix100k.json");
    let mut out = String::with_capacity(64 << 20);
    out.push('[');
    for i in 0..100_000usize {
        if i > 0 {
            out.push(',');
        }
        let rounds = 2 + i % 2;
        let mut turns = Vec::new();
        for r in 0..rounds {
            let q = if r == 0 && i % 3 != 0 {
                "<image>\nWhat is the man in the picture doing, and what is on the table next to him?".to_string()
            } else {
                format!("Question {r} about record {i}: can you explain the scene in more detail?")
            };
            turns.push(serde_json::json!({"from": "human", "value": q}));
            turns.push(serde_json::json!({"from": "gpt", "value": "The man is sitting at a wooden table, reading a newspaper while a cup of coffee and a plate with a croissant rest beside him. Sunlight comes through the window behind him."}));
        }
        let mut rec = serde_json::json!({"id": format!("{i:09}"), "conversations": turns});
        if i % 3 != 0 {
            rec["image"] = serde_json::json!(format!("coco/train2017/{i:012}.jpg"));
        }
        out.push_str(&rec.to_string());
    }
    out.push(']');
    std::fs::write(&path, &out).unwrap();
    let mb = out.len() as f64 / 1e6;
    for (mode, in_memory_limit) in [("from memory", u64::MAX), ("streamed", 0)] {
        let t = Instant::now();
        let ds = load_llava_json(
            &path,
            Path::new("/unused"),
            &LoadOptions {
                check_images: false,
                in_memory_limit,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(ds.len(), 100_000);
        println!(
            "{mode}: parsed 100000 records ({mb:.1} MB) in {secs:.3} s: {:.0} records/s, {:.1} MB/s",
            1e5 / secs,
            mb / secs
        );
    }
}

#[test]
fn written_datasets_load_back_identically() {
    let ds = load_llava_json(
        &fixtures().join("finetune.json"),
        &images(),
        &LoadOptions::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/copy.json");
    mlvf::data::write_llava_json(&out, &ds.records).unwrap();
    let back = load_llava_json(&out, &images(), &LoadOptions::default()).unwrap();
    assert_eq!(back.records, ds.records);
    // Text-only records are written without an "image" key, as in the published files.
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(raw[1].get("image").is_none());
    assert_eq!(raw[2]["id"], "42");
    // No temporary files are left next to it.
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);
}
