//! `mlvf synth` from the command line.

use assert_cmd::Command;
use predicates::str::contains;

#[test]
fn writes_a_world_and_reports_what_it_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("world");
    let cfg = tmp.path().join("world.toml");
    std::fs::write(
        &cfg,
        "n_pretrain = 10\nn_finetune = 12\nn_per_benchmark = 12\n",
    )
    .unwrap();
    Command::cargo_bin("mlvf")
        .unwrap()
        .args([
            "synth",
            "--scale",
            "test",
            "--seed",
            "4",
            "--image-size",
            "72",
            "--threads",
            "2",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--config")
        .arg(&cfg)
        .assert()
        .success()
        .stdout(contains("synth_pope"))
        .stdout(contains("pretrain"));
    let world = mlvf::synth::WorldSummary::load(&out).unwrap();
    assert_eq!(world.config.seed, 4);
    assert_eq!(world.config.image_size, 72);
    assert_eq!(world.pretrain.records, 10);
    assert_eq!(world.finetune.records, 12);
    let pope = world.benchmark_dir(&out, "pope").unwrap();
    assert!(pope.join("manifest.json").is_file());
    // Fields the file does not set keep the preset's values.
    assert_eq!(
        world.config.max_objects,
        mlvf::synth::SynthConfig::default().max_objects
    );
}

#[test]
fn bad_flags_are_user_errors() {
    let tmp = tempfile::tempdir().unwrap();
    Command::cargo_bin("mlvf")
        .unwrap()
        .args(["synth", "--scale", "huge", "--out"])
        .arg(tmp.path().join("w"))
        .assert()
        .code(2)
        .stderr(contains("unknown scale `huge`"));
    let cfg = tmp.path().join("typo.toml");
    std::fs::write(&cfg, "n_pretrian = 10\n").unwrap();
    Command::cargo_bin("mlvf")
        .unwrap()
        .args(["synth", "--scale", "test", "--out"])
        .arg(tmp.path().join("w"))
        .arg("--config")
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(contains("n_pretrian"));
    assert!(!tmp.path().join("w").exists());
}
