//! `mlvf score` end to end: lmms-eval sample logs (HEAD and classic shapes), our own outputs
//! round-tripping, text output, and user errors.

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
}

fn score_json(bench: &Path, preds: &Path, extra: &[&str]) -> Value {
    let out = Command::cargo_bin("mlvf")
        .unwrap()
        .args(["score", "--benchmark"])
        .arg(bench)
        .arg("--predictions")
        .arg(preds)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn scores_an_lmms_eval_head_samples_log_by_doc_id() {
    let v = score_json(
        &fixture("gqa_mini"),
        &fixture("gqa_mini_lmms_samples.jsonl"),
        &[],
    );
    assert_eq!(v["task"], "gqa_mini");
    assert_eq!(v["metrics"]["exact_match"], 0.75);
    assert_eq!(v["n"], 4);
    assert_eq!(v["missing"], 0);
    assert_eq!(v["primary"]["metric"], "exact_match");
    assert_eq!(v["primary"]["value"], 0.75);
}

#[test]
fn scores_a_classic_samples_log_with_missing_docs() {
    let v = score_json(
        &fixture("gqa_mini"),
        &fixture("gqa_mini_lmms_classic.jsonl"),
        &[],
    );
    assert_eq!(v["metrics"]["exact_match"], 1.0);
    assert_eq!(v["n"], 3);
    assert_eq!(v["missing"], 1);
}

#[test]
fn writes_lmms_eval_shaped_outputs_that_rescore_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples_gqa_mini.jsonl");
    let results = tmp.path().join("results.json");
    let args = [
        "--samples-out",
        samples.to_str().unwrap(),
        "--results-out",
        results.to_str().unwrap(),
    ];
    let first = score_json(
        &fixture("gqa_mini"),
        &fixture("gqa_mini_lmms_samples.jsonl"),
        &args,
    );

    let r: Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(r["results"]["gqa_mini"]["exact_match,none"], 0.75);
    assert_eq!(r["results"]["gqa_mini"]["samples"], 4);
    assert_eq!(r["n-samples"]["gqa_mini"]["effective"], 4);
    assert_eq!(
        r["configs"]["gqa_mini"]["generation_kwargs"]["max_new_tokens"],
        16
    );
    assert_eq!(r["versions"]["gqa_mini"], "head-2026-08");
    assert_eq!(r["date"].as_str().unwrap().len(), 15);

    let text = std::fs::read_to_string(&samples).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["doc_id"], 1);
    assert_eq!(lines[1]["id"], "g2");
    assert_eq!(lines[1]["filtered_resps"][0], "Red.");
    assert_eq!(lines[1]["target"], "red");
    assert_eq!(lines[2]["exact_match"], 0.0);
    assert!(lines[0]["input"]
        .as_str()
        .unwrap()
        .starts_with("Is it overcast?\n"));

    // Our samples log is itself a valid predictions file.
    let again = score_json(&fixture("gqa_mini"), &samples, &[]);
    assert_eq!(again["metrics"], first["metrics"]);
}

#[test]
fn text_format_lists_every_metric() {
    let out = Command::cargo_bin("mlvf")
        .unwrap()
        .args(["score", "--format", "text", "--benchmark"])
        .arg(fixture("gqa_mini"))
        .arg("--predictions")
        .arg(fixture("gqa_mini_lmms_samples.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        s.contains("gqa_mini") && s.contains("exact_match") && s.contains("0.7500"),
        "{s}"
    );
}

#[test]
fn a_bad_benchmark_is_a_user_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("mlvf")
        .unwrap()
        .args(["score", "--benchmark"])
        .arg(tmp.path())
        .arg("--predictions")
        .arg(fixture("gqa_mini_lmms_samples.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn predictions_for_nothing_are_a_user_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("p.jsonl");
    std::fs::write(&p, "{\"doc_id\": 99, \"filtered_resps\": [\"yes\"]}\n").unwrap();
    let out = Command::cargo_bin("mlvf")
        .unwrap()
        .args(["score", "--benchmark"])
        .arg(fixture("gqa_mini"))
        .arg("--predictions")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no prediction"));
}

/// The exporter's offline self-test writes benchmarks that load and score here.
/// Needs python3 with Pillow, hence ignored by default: `cargo test --test eval_score_cli -- --ignored`.
#[test]
#[ignore]
fn exporter_self_test_output_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export_lmms_task.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .args(["--self-test", "--out"])
        .arg(tmp.path())
        .status()
        .expect("python3 must be installed for this test");
    assert!(status.success());
    let preds = tmp.path().join("p.jsonl");
    std::fs::write(&preds, "{\"doc_id\": 0, \"filtered_resps\": [\"Yes\"]}\n{\"doc_id\": 1, \"filtered_resps\": [\"No\"]}\n")
        .unwrap();
    let v = score_json(&tmp.path().join("mme"), &preds, &[]);
    assert_eq!(v["metrics"]["mme_perception_score"], 200.0);
    let v = score_json(&tmp.path().join("mmbench_en_dev_static"), &preds, &[]);
    assert_eq!(v["n"], 2);
    // export_task driven through lmms-eval/datasets stand-ins: 3 POPE docs, gt yes/no/yes.
    let v = score_json(&tmp.path().join("pope_adv_export"), &preds, &[]);
    assert_eq!((v["n"].as_u64(), v["missing"].as_u64()), (Some(2), Some(1)));
    assert_eq!(v["metrics"]["pope_recall"], 1.0);
}

#[test]
fn scores_an_mlvf_cache_and_overrides_the_scorer() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("predictions.jsonl");
    // Our cache format: a header (its data hash does not match: a warning, not an error, here),
    // then one record per answer; the last one was cut off by a kill and is ignored.
    std::fs::write(
        &p,
        "{\"mlvf_predictions\": 1, \"task\": \"gqa_mini\", \"data_blake3\": \"x\", \"template\": \"vicuna_v1\"}\n\
         {\"doc_id\": 0, \"id\": \"g1\", \"response\": \"No\"}\n\
         {\"doc_id\": 1, \"id\": \"g2\", \"response\": \"Red!\"}\n\
         {\"doc_id\": 2, \"id\": \"g3\", \"resp",
    )
    .unwrap();
    let v = score_json(&fixture("gqa_mini"), &p, &[]);
    assert_eq!((v["n"].as_u64(), v["missing"].as_u64()), (Some(2), Some(2)));
    assert_eq!(v["metrics"]["exact_match"], 1.0);
    let v = score_json(&fixture("gqa_mini"), &p, &["--scorer", "realworldqa"]);
    assert_eq!(v["scorer"], "realworldqa");
    assert_eq!(
        v["metrics"]["exact_match"], 0.5,
        "\"Red!\" is wrong under RealWorldQA's rule"
    );
    let v = score_json(&fixture("gqa_mini"), &p, &["--scorer", "anls"]);
    assert_eq!(
        v["primary"]["metric"], "anls",
        "the primary falls back to the new scorer's metric"
    );
    assert_eq!(v["primary"]["value"], 0.875, "\"No\" 1.0, \"Red!\" 1 - 1/4");
    // A scorer whose fields the data lacks fails with the sample named.
    let out = Command::cargo_bin("mlvf")
        .unwrap()
        .args(["score", "--scorer", "mme_yesno", "--benchmark"])
        .arg(fixture("gqa_mini"))
        .arg("--predictions")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sample \"g1\""));
}
