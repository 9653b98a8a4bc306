//! `mlvf inspect llm` and `mlvf inspect generate` on the committed tiny checkpoints.

use assert_cmd::Command;
use candle_core::{DType, Device, Tensor};
use mlvf::model::hub::ModelFiles;
use mlvf::model::llm::{generate_from_ids, GenerateConfig, Llama};
use std::path::PathBuf;

const PROMPT: &str = "a red square is left of a blue circle and a green star";

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llm")
        .join(name)
}

#[test]
fn inspect_llm_writes_transformers_logits_for_the_tokenized_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sub/logits.safetensors");
    let dir = fixture_dir("tiny-untied-linear");
    Command::cargo_bin("mlvf")
        .unwrap()
        .args([
            "inspect",
            "llm",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            PROMPT,
            "--device",
            "cpu",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("[30, 300]"));
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let want =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let want_logits = want["logits"].squeeze(0).unwrap();
    assert_eq!(got["logits"].dims(), want_logits.dims());
    assert_eq!(got["logits"].dtype(), DType::F32);
    let d = (&got["logits"] - &want_logits)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(d.to_scalar::<f32>().unwrap() <= 1e-4);
    let ids: Vec<u32> = got["input_ids"].to_vec1().unwrap();
    let want_ids: Vec<u32> = want["input_ids"]
        .squeeze(0)
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(ids, want_ids);
}

#[test]
fn inspect_generate_prints_the_greedy_completion() {
    let dir = fixture_dir("tiny-tied");
    let out = Command::cargo_bin("mlvf")
        .unwrap()
        .args([
            "inspect",
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "a red",
            "--max-new-tokens",
            "6",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same completion through the library.
    let files = ModelFiles::from_dir(&dir).unwrap();
    let tok = files.load_tokenizer().unwrap();
    let model = Llama::load(&files, DType::F32, &Device::Cpu).unwrap();
    let ids = tok.encode("a red", true).unwrap().get_ids().to_vec();
    let gen = generate_from_ids(&model, &ids, &GenerateConfig::for_model(&model, 6)).unwrap();
    assert!(!gen.is_empty());
    let text = tok.decode(&gen, true).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
        text
    );
    // Sanity: the first generated token is the argmax after the prompt.
    let logits = model
        .forward_ids(
            &Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            None,
        )
        .unwrap();
    let last = logits
        .squeeze(0)
        .unwrap()
        .get(ids.len() - 1)
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    assert!(gen[0] == last || model.config().eos_token_ids.contains(&last));
}

#[test]
fn bad_models_and_devices_fail_with_a_message() {
    Command::cargo_bin("mlvf")
        .unwrap()
        .args([
            "inspect",
            "llm",
            "--model",
            "./no/such/model",
            "--prompt",
            "x",
            "--out",
            "/tmp/never.safetensors",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no such directory"));
    Command::cargo_bin("mlvf")
        .unwrap()
        .args([
            "inspect",
            "generate",
            "--model",
            fixture_dir("tiny-tied").to_str().unwrap(),
            "--prompt",
            "x",
            "--device",
            "cuda:x",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("ordinal"));
}

#[test]
fn hub_ids_resolve_from_the_offline_cache_named_by_hf_home() {
    let home = tempfile::tempdir().unwrap();
    let commit = "fedcba9876543210fedcba9876543210fedcba98";
    let repo = home.path().join("hub/models--tiny-org--tiny-llama");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture_dir("tiny-tied").join(f), snap.join(f)).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let run = |model: &str| {
        Command::cargo_bin("mlvf")
            .unwrap()
            .env("HF_HOME", home.path())
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_ENDPOINT", "http://127.0.0.1:9") // never contacted offline
            .env_remove("HF_HUB_CACHE")
            .args([
                "inspect",
                "generate",
                "--model",
                model,
                "--prompt",
                "a red",
                "--max-new-tokens",
                "3",
            ])
            .assert()
    };
    run("tiny-org/tiny-llama").success();
    run("tiny-org/other")
        .failure()
        .stderr(predicates::str::contains("models--tiny-org--other"));
}
