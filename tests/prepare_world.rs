//! The world prepare task: one per world config, published so consumers find their parts.

mod prepare_common;
use mlvf::plan::config::{BenchmarkSpec, DataSpec, EvalConfig, FinetuneConfig, PretrainConfig};
use mlvf::plan::StageKind;
use mlvf::stages::prepare::{benchmark_dir, dataset_files, find_world};
use prepare_common::*;

#[test]
fn synth_datasets_benchmarks_and_models_share_one_world_task() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), TINY);
    let prep = prepares(&p);
    let worlds: Vec<_> = prep
        .iter()
        .filter(|t| t.config["kind"] == "world")
        .collect();
    assert_eq!(
        worlds.len(),
        1,
        "one world for datasets, benchmarks and models"
    );
    let world = worlds[0];
    // The key hashes the full config (defaults filled), not the entry name.
    assert_eq!(world.config["entry"]["params"]["seed"], 1);
    assert_eq!(world.config["entry"]["params"]["max_objects"], 5);
    // Model keys see every trainer setting, defaults included.
    let clip = prep
        .iter()
        .find(|t| t.config["entry"]["source"] == "synth:clip")
        .unwrap();
    assert_eq!(clip.config["entry"]["params"]["width"], 16);
    assert_eq!(clip.config["entry"]["params"]["embed_dim"], 64);
    assert_eq!(world.cells.len(), p.cells.len());
    let models: Vec<_> = prep
        .iter()
        .filter(|t| t.config["kind"] == "model")
        .collect();
    assert_eq!(models.len(), 2);
    for m in &models {
        assert_eq!(
            m.deps,
            vec![world.key.clone()],
            "a model trains on its world"
        );
    }
    for t in p.tasks.iter().filter(|t| t.stage == StageKind::Pretrain) {
        assert!(t.deps.contains(&world.key), "pretrain reads synth:pretrain");
        let c: PretrainConfig = serde_json::from_value(t.config.clone()).unwrap();
        assert_eq!(c.data.params["world"], world.config["entry"]["params"]);
    }
    for t in p.tasks.iter().filter(|t| t.stage == StageKind::Eval) {
        assert!(t.deps.contains(&world.key), "eval reads a synth benchmark");
    }

    // Renaming the world entry, or spelling the same config inline, changes no key.
    let inline = TINY.replace(
        "params = { world = \"world\" }",
        "params = { world = { seed = 1, n_pretrain = 64, n_finetune = 48, n_per_benchmark = 24 } }",
    );
    let renamed = TINY
        .replace("world = \"world\"", "world = \"w2\"")
        .replace("\nworld   =", "\nw2   =");
    let keys = |body: &str| {
        let d = tempfile::tempdir().unwrap();
        let mut k: Vec<String> = plan(d.path(), body)
            .tasks
            .iter()
            .map(|t| t.key.0.clone())
            .collect();
        k.sort();
        k
    };
    let mut base: Vec<String> = p.tasks.iter().map(|t| t.key.0.clone()).collect();
    base.sort();
    assert_eq!(keys(&renamed), base);
    assert_eq!(
        keys(&inline)[..],
        base[..],
        "inline world in data/benchmarks is the same world"
    );

    // A different world config is a different world (and different downstream keys).
    let other = keys(&TINY.replace("seed = 1,", "seed = 2,"));
    assert!(other.iter().all(|k| !base.contains(k)));
}

#[test]
fn world_task_publishes_every_part_and_consumers_locate_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), TINY);
    let world = prepares(&p)
        .into_iter()
        .find(|t| t.config["kind"] == "world")
        .unwrap();
    let published = std::collections::HashMap::from([(
        world.key.0.clone(),
        run_task(&dir.path().join("store"), world, &Default::default()).unwrap(),
    )]);
    let out = &published[&world.key.0];
    assert!(out.join("world/world.json").is_file());
    let marker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prepared.json")).unwrap()).unwrap();
    assert_eq!(marker["kind"], "world");

    let ft = p
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Finetune)
        .unwrap();
    let deps = deps_of(ft, &published);
    let c: FinetuneConfig = serde_json::from_value(ft.config.clone()).unwrap();
    let (json, images) = dataset_files(&c.data, &deps).unwrap();
    assert!(json.ends_with("finetune/instructions.json") && json.is_file());
    assert!(images.is_dir());
    let pt = p
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Pretrain)
        .unwrap();
    let c: PretrainConfig = serde_json::from_value(pt.config.clone()).unwrap();
    let (json, _) = dataset_files(&c.data, &deps_of(pt, &published)).unwrap();
    assert!(json.ends_with("pretrain/captions.json") && json.is_file());
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(records.len(), 64);

    for ev in p.tasks.iter().filter(|t| t.stage == StageKind::Eval) {
        let c: EvalConfig = serde_json::from_value(ev.config.clone()).unwrap();
        let b = benchmark_dir(&c.benchmark, &deps_of(ev, &published)).unwrap();
        assert!(b.join("data.jsonl").is_file(), "{}", b.display());
        assert!(b.join("manifest.json").is_file());
    }

    // A consumer whose world is not among its deps gets a clear error, not a wrong world.
    let other: DataSpec = serde_json::from_value(serde_json::json!({
        "source": "synth:pretrain", "params": {"world": {"seed": 99}}
    }))
    .unwrap();
    let err = dataset_files(&other, &deps).unwrap_err().to_string();
    assert!(err.contains("synthetic world"), "{err}");
    let bad: BenchmarkSpec =
        serde_json::from_value(serde_json::json!({"source": "synth:pope"})).unwrap();
    assert!(benchmark_dir(&bad, &[]).is_err());
    assert!(find_world(&deps, None).is_ok());
}

#[test]
fn bad_synth_entries_are_plan_errors_that_say_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    for (from, to, says) in [
        ("synth:pope", "synth:vqav2", "use one of"),
        (
            "world = \"world\" } }\ngqa",
            "world = \"nope\" } }\ngqa",
            "names no [data] entry",
        ),
        ("n_pretrain = 64", "n_pretrian = 64", "n_pretrian"),
        (
            "source = \"synth:clip\"",
            "source = \"synth:llama\"",
            "family",
        ),
        ("width = 16", "widht = 16", "unknown field `widht`"),
    ] {
        assert!(TINY.contains(from), "{from}");
        std::fs::write(&path, TINY.replacen(from, to, 1)).unwrap();
        let err = mlvf::plan::load(&path, None).unwrap_err().to_string();
        assert!(err.contains(says), "{to}: {err}");
        assert!(
            err.contains("m.toml:"),
            "errors name the file and line: {err}"
        );
    }
}

#[test]
fn quickstart_plans_one_world_and_two_foundation_models_shared_by_every_cell() {
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/quickstart.toml");
    let p = mlvf::plan::load(&manifest, None).unwrap();
    let prep = prepares(&p);
    let kinds: Vec<&str> = prep
        .iter()
        .map(|t| t.config["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "world").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "model").count(), 2);
    for t in prep {
        assert_eq!(
            t.cells.len(),
            p.cells.len(),
            "{:?} serves every cell",
            t.axes
        );
    }
    assert_eq!(
        p.cells.len(),
        36,
        "(baseline + 4 paradigms × 2 sets) × 4 benchmarks"
    );
    // The 12-layer tower makes the paper's layer sets distinct (see synth::foundation::vision).
    let groups = |set: &str| {
        let t = p
            .tasks
            .iter()
            .find(|t| {
                t.stage == StageKind::Pretrain
                    && t.axes["fusion"] == "E_D"
                    && t.axes["layers"] == set
            })
            .unwrap();
        assert_eq!(
            t.config["layers"]["base"], 11,
            "LLaVA's penultimate layer of 12"
        );
        t.config["layers"]["groups"].clone()
    };
    assert_eq!(groups("3-18-23"), serde_json::json!([[1], [9]]));
    assert_eq!(groups("former"), serde_json::json!([[1, 2, 3, 4, 5, 6]]));

    let out = assert_cmd::Command::cargo_bin("mlvf")
        .unwrap()
        .args(["plan", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("world=world").count(), 1, "{text}");
    assert!(
        text.contains("models=tiny-clip") && text.contains("models=tiny-llama"),
        "{text}"
    );
}

#[test]
fn siglip_and_clip_entries_plan_with_their_own_default_learning_rates() {
    let dir = tempfile::tempdir().unwrap();
    let body = TINY
        .replace(
            "[benchmarks]",
            "sig = { kind = \"vision\", family = \"siglip\", source = \"synth:siglip\", depth = 3, params = { world = \"world\" } }\n\n[benchmarks]",
        )
        .replace("encoder       = [\"clip\"]", "encoder       = [\"clip\", \"sig\"]");
    let p = plan(dir.path(), &body);
    let lr = |family: &str| {
        prepares(&p)
            .iter()
            .find(|t| t.config["entry"]["family"] == family)
            .unwrap_or_else(|| panic!("no prepare task for {family}"))
            .config["entry"]["params"]["lr"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(lr("siglip"), mlvf::synth::foundation::vision::SIGLIP_LR);
    assert_eq!(lr("clip"), 2e-3);
}
