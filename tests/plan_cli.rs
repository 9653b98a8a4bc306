//! `mlvf plan` and `mlvf explain` end to end.

mod manifest_common;
use assert_cmd::Command;
use manifest_common::*;
use predicates::str::contains;

fn mlvf() -> Command {
    Command::cargo_bin("mlvf").unwrap()
}

#[test]
fn a_bad_manifest_exits_2_names_the_position_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &GRID.replace("\"E_D\", \"I_D\"", "\"E_D\", \"ID\""),
    );
    mlvf()
        .args(["plan", p.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains(pos(&p, "\"ID\"")))
        .stderr(contains("did you mean `I_D`?"));
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the manifest");
}

#[test]
fn json_output_is_the_documented_object_and_sees_cached_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.toml", GRID);
    let plan = mlvf::plan::load(&p, None).unwrap();
    let done = plan
        .tasks
        .iter()
        .find(|t| t.stage == mlvf::plan::StageKind::Pretrain)
        .unwrap();
    // Publish it the way a worker does, so its DONE record verifies; a second task gets a bare
    // DONE.json, which must not count as cached.
    let tmp = mlvf::store::layout::tmp_dir(&plan.store, &done.key, 1);
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("weights.bin"), b"trained").unwrap();
    let info = mlvf::store::publish::AttemptInfo {
        stage: done.stage,
        key: done.key.clone(),
        version: done.version,
        attempt: 1,
        started_ms: 0,
        primary_metric: None,
    };
    mlvf::store::publish::publish(&plan.store, &tmp, &info).unwrap();
    let fake = plan
        .tasks
        .iter()
        .find(|t| t.stage == mlvf::plan::StageKind::Pretrain && t.key != done.key)
        .unwrap();
    let path = mlvf::store::layout::done_path(&plan.store, fake.stage, &fake.key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{}").unwrap();
    let out = mlvf()
        .args(["plan", p.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["sweep"], "t");
    assert_eq!(
        j["stages"]["pretrain"],
        serde_json::json!({"total": 3, "cached": 1, "missing": 2})
    );
    let t = j["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == done.key.0)
        .unwrap();
    assert_eq!(t["state"], "cached");
    assert_eq!(t["cells"][0]["fusion"], "E_D");
    assert!(t["deps"].is_array());
    // Text and dot formats render the same plan.
    mlvf()
        .args(["plan", p.to_str().unwrap()])
        .assert()
        .success()
        .stdout(contains("pretrain         3       1       2"))
        .stdout(contains("each pretrain feeds 1–1 finetunes"));
    mlvf()
        .args(["plan", p.to_str().unwrap(), "--format", "dot"])
        .assert()
        .success()
        .stdout(contains("digraph"))
        .stdout(contains(done.key.short()));
}

#[test]
fn explain_prints_the_pre_image_and_why_an_edit_reruns_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.toml", GRID);
    let plan = mlvf::plan::load(&p, None).unwrap();
    // What the store controller does: one spec per planned task.
    for t in &plan.tasks {
        let sp = mlvf::store::layout::spec_path(&plan.store, &t.key);
        std::fs::create_dir_all(sp.parent().unwrap()).unwrap();
        std::fs::write(sp, serde_json::to_string(t).unwrap()).unwrap();
    }
    let eval = plan
        .tasks
        .iter()
        .find(|t| t.stage == mlvf::plan::StageKind::Eval)
        .unwrap();
    let prefix = &eval.key.0[..10];
    mlvf()
        .args(["explain", prefix, p.to_str().unwrap()])
        .assert()
        .success()
        .stdout(contains("\"stage\": \"eval\""))
        .stdout(contains("unchanged"));
    // Edit the finetune learning rate: the eval reruns because its finetune changed.
    std::fs::write(
        &p,
        std::fs::read_to_string(&p).unwrap() + "\n[finetune]\nlr = 1e-5\n",
    )
    .unwrap();
    mlvf()
        .args(["explain", prefix, p.to_str().unwrap()])
        .assert()
        .success()
        .stdout(contains("would rerun"))
        .stdout(contains("an upstream task changed"))
        .stdout(contains("config.hparams.lr: 0.00002 → 0.00001"));
    // Without a manifest, the stored spec alone.
    let store = plan.store.to_str().unwrap().to_string();
    mlvf()
        .args(["explain", prefix, "--store", &store])
        .assert()
        .success()
        .stdout(contains(eval.key.0.as_str()));
    mlvf()
        .args(["explain", "zzzz", "--store", &store])
        .assert()
        .code(2)
        .stderr(contains("no task key starts with `zzzz`"));
}

#[test]
fn explain_names_the_axis_that_changed_when_no_cell_matches() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.toml", GRID);
    let plan = mlvf::plan::load(&p, None).unwrap();
    for t in &plan.tasks {
        let sp = mlvf::store::layout::spec_path(&plan.store, &t.key);
        std::fs::create_dir_all(sp.parent().unwrap()).unwrap();
        std::fs::write(sp, serde_json::to_string(t).unwrap()).unwrap();
    }
    let old = plan
        .tasks
        .iter()
        .find(|t| {
            t.stage == mlvf::plan::StageKind::Finetune
                && t.axes["fusion"] == "I_D"
                && t.axes["layers"] == "3-18"
        })
        .unwrap();
    std::fs::write(
        &p,
        std::fs::read_to_string(&p).unwrap().replace(
            r#"layers = ["3-18", "3-18-23"]"#,
            r#"layers = ["3-18-23", "18"]"#,
        ),
    )
    .unwrap();
    mlvf()
        .args(["explain", old.key.short(), p.to_str().unwrap()])
        .assert()
        .success()
        .stdout(contains("no planned finetune has the same axis values"))
        .stdout(contains("differs in layers: \"3-18\" → "))
        .stdout(contains("config.layers.injections"));
}
