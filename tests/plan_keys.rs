//! Planning: what each stage's key depends on, sharing, prepare/encode inputs and order.

mod manifest_common;
use manifest_common::*;
use mlvf::plan::{Plan, StageKind, Task};
use std::collections::HashSet;

fn plan(dir: &std::path::Path, name: &str, body: &str) -> Plan {
    let p = write(dir, name, body);
    mlvf::plan::load(&p, None).unwrap()
}

fn keys(p: &Plan, stage: StageKind) -> HashSet<String> {
    p.tasks
        .iter()
        .filter(|t| t.stage == stage)
        .map(|t| t.key.0.clone())
        .collect()
}

fn of(p: &Plan, stage: StageKind) -> Vec<&Task> {
    p.tasks.iter().filter(|t| t.stage == stage).collect()
}

#[test]
fn external_3_18_and_3_18_23_share_one_pretrain_internal_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "m.toml", GRID);
    assert_eq!(p.cells.len(), 8);
    let pre = of(&p, StageKind::Pretrain);
    assert_eq!(pre.len(), 3, "E_D shares, I_D has two");
    let shared = pre.iter().find(|t| t.axes["fusion"] == "E_D").unwrap();
    assert_eq!(
        shared.axes["layers"],
        serde_json::json!(["3-18", "3-18-23"])
    );
    assert_eq!(shared.cells.len(), 4);
    assert_eq!(
        shared.config["layers"]["groups"],
        serde_json::json!([[3], [18]])
    );
    // One finetune per pretrain (one sft), one eval per finetune × benchmark.
    assert_eq!(of(&p, StageKind::Finetune).len(), 3);
    assert_eq!(of(&p, StageKind::Eval).len(), 6);
}

#[test]
fn pretrain_keys_ignore_finetune_data_hyperparameters_and_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    let a = plan(dir.path(), "a.toml", GRID);
    let b = plan(
        dir.path(),
        "b.toml",
        &format!(
            "{}\n[finetune]\nlr = 1e-5\n",
            GRID.replace(r#"sft = ["sft"]"#, r#"sft = ["sft", "syn"]"#)
                .replace(r#"["pope", "gqa"]"#, r#"["gqa"]"#)
        ),
    );
    assert_eq!(keys(&a, StageKind::Pretrain), keys(&b, StageKind::Pretrain));
    assert!(keys(&a, StageKind::Finetune).is_disjoint(&keys(&b, StageKind::Finetune)));
    // The finetune of each pretrain feeds the sft axis; the lr change reached every finetune.
    let ft = of(&b, StageKind::Finetune);
    assert_eq!(ft.len(), 6);
    assert!(ft.iter().all(|t| t.config["hparams"]["lr"] == 1e-5));
    // Eval settings: a benchmark's own answer length only changes that benchmark's evals.
    let c = plan(
        dir.path(),
        "c.toml",
        &GRID.replace("[grid]", "[eval]\nlimit = 100\n[grid]"),
    );
    assert_eq!(keys(&a, StageKind::Finetune), keys(&c, StageKind::Finetune));
    assert!(keys(&a, StageKind::Eval).is_disjoint(&keys(&c, StageKind::Eval)));
    let gqa = of(&a, StageKind::Eval)
        .into_iter()
        .find(|t| t.axes["benchmark"] == "gqa")
        .unwrap();
    assert_eq!(gqa.config["settings"]["max_new_tokens"], 16);
    assert!(
        gqa.config.get("data").is_none()
            && gqa.config["benchmark"]["path"]
                .as_str()
                .unwrap()
                .ends_with("bench/gqa")
    );
}

#[test]
fn keys_do_not_depend_on_which_other_cells_exist_or_on_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = plan(dir.path(), "a.toml", GRID);
    let b = plan(
        dir.path(),
        "b.toml",
        &GRID.replace(r#"["E_D", "I_D"]"#, r#"["E_D", "E_M", "I_D", "I_M"]"#),
    );
    for s in StageKind::ALL {
        assert!(keys(&a, s).is_subset(&keys(&b, s)), "{s}");
    }
    // Renaming an entry changes no key (entries hash by content).
    let renamed = GRID.replace(r#"encoder = ["clip"]"#, r#"encoder = ["clip-l"]"#);
    let text = std::fs::read_to_string(write(dir.path(), "c.toml", &renamed))
        .unwrap()
        .replacen("\nclip = {", "\nclip-l = {", 1);
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let c = mlvf::plan::load(&dir.path().join("c.toml"), None).unwrap();
    assert_eq!(keys(&a, StageKind::Eval), keys(&c, StageKind::Eval));
    // And planning twice gives the same plan.
    assert_eq!(a.tasks, plan(dir.path(), "a.toml", GRID).tasks);
}

#[test]
fn the_baseline_has_no_layer_set_and_collapses_to_one_model_per_setting() {
    let dir = tempfile::tempdir().unwrap();
    let g = format!(
        "{}include = [{{ fusion = \"baseline\" }}]\n",
        GRID.replace(r#"encoder = ["clip"]"#, r#"encoder = ["clip", "sig"]"#)
    );
    let p = plan(dir.path(), "m.toml", &g);
    let base: Vec<_> = p
        .cells
        .iter()
        .filter(|c| c.axes["fusion"] == "baseline")
        .collect();
    assert_eq!(base.len(), 4, "2 encoders × 2 benchmarks");
    assert!(base.iter().all(|c| !c.axes.contains_key("layers")));
    let pre: Vec<_> = of(&p, StageKind::Pretrain)
        .into_iter()
        .filter(|t| t.axes["fusion"] == "baseline")
        .collect();
    assert_eq!(pre.len(), 2);
    let sig = pre.iter().find(|t| t.axes["encoder"] == "sig").unwrap();
    assert_eq!(
        sig.config["layers"],
        serde_json::json!({"kind": "baseline", "base": 25})
    );
}

#[test]
fn synth_entries_become_prepare_tasks_that_consumers_depend_on() {
    let dir = tempfile::tempdir().unwrap();
    let g = GRID
        .replace(r#"encoder = ["clip"]"#, r#"encoder = ["tiny"]"#)
        .replace(r#"["3-18", "3-18-23"]"#, r#"["former"]"#)
        .replace(r#"sft = ["sft"]"#, r#"sft = ["syn"]"#);
    let p = plan(dir.path(), "m.toml", &g);
    let prep = of(&p, StageKind::Prepare);
    assert_eq!(
        prep.len(),
        2,
        "the tiny encoder and the world the synthetic dataset is part of"
    );
    let model = prep.iter().find(|t| t.config["kind"] == "model").unwrap();
    assert_eq!(model.config["entry"]["source"], "synth:clip");
    let data = prep.iter().find(|t| t.config["kind"] == "world").unwrap();
    for t in of(&p, StageKind::Pretrain) {
        assert!(t.deps.contains(&model.key));
        assert!(
            !t.deps.contains(&data.key),
            "pretrain reads `pt`, not the synthetic sft set"
        );
    }
    for t in of(&p, StageKind::Finetune) {
        assert!(t.deps.contains(&model.key) && t.deps.contains(&data.key));
        assert_eq!(
            t.deps[0].0,
            t.deps
                .iter()
                .find(|d| of(&p, StageKind::Pretrain).iter().any(|x| &x.key == *d))
                .unwrap()
                .0
        );
    }
    assert_eq!(model.cells.len(), p.cells.len());
}

#[test]
fn encode_tasks_are_per_encoder_dataset_and_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let a = plan(
        dir.path(),
        "a.toml",
        &format!("[encode]\nenabled = true\n{GRID}"),
    );
    let enc = of(&a, StageKind::Encode);
    assert_eq!(enc.len(), 2, "(clip, pt, square) and (clip, sft, pad)");
    let aspects: HashSet<_> = enc
        .iter()
        .map(|t| t.config["image_aspect"].as_str().unwrap())
        .collect();
    assert_eq!(aspects, HashSet::from(["square", "pad"]));
    for t in of(&a, StageKind::Pretrain)
        .into_iter()
        .chain(of(&a, StageKind::Finetune))
    {
        assert_eq!(
            t.deps
                .iter()
                .filter(|d| enc.iter().any(|e| &e.key == *d))
                .count(),
            1
        );
    }
    // A grid with other cells plans the same encode keys.
    let b = plan(
        dir.path(),
        "b.toml",
        &format!(
            "[encode]\nenabled = true\n{}",
            GRID.replace(r#"["E_D", "I_D"]"#, r#"["I_M"]"#)
        ),
    );
    assert_eq!(keys(&a, StageKind::Encode), keys(&b, StageKind::Encode));
    assert!(keys(&a, StageKind::Encode).iter().all(|k| !a
        .tasks
        .iter()
        .any(|t| t.stage == StageKind::Encode
            && &t.key.0 == k
            && t.config.to_string().contains("groups"))));
}

#[test]
fn on_error_skip_enters_the_data_spec_and_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let base = plan(dir.path(), "a.toml", GRID);
    let with = |v: &str| {
        let p = manifest_common::write(dir.path(), &format!("{v}.toml"), GRID);
        let text = std::fs::read_to_string(&p).unwrap().replace(
            r#"json = "pt.json", images = "img" }"#,
            &format!(r#"json = "pt.json", images = "img", on_error = "{v}" }}"#),
        );
        std::fs::write(&p, text).unwrap();
        mlvf::plan::load(&p, None).unwrap()
    };
    let (fail, skip) = (with("fail"), with("skip"));
    assert_eq!(
        keys(&base, StageKind::Pretrain),
        keys(&fail, StageKind::Pretrain),
        "writing the default changes nothing"
    );
    assert!(keys(&base, StageKind::Pretrain).is_disjoint(&keys(&skip, StageKind::Pretrain)));
    assert_eq!(
        keys(&base, StageKind::Finetune).len(),
        keys(&skip, StageKind::Finetune).len()
    );
    for t in of(&skip, StageKind::Pretrain) {
        assert_eq!(t.config["data"]["on_error"], "skip");
    }
    for t in of(&skip, StageKind::Finetune) {
        assert!(
            t.config["data"].get("on_error").is_none(),
            "sft is not skip"
        );
    }
}

#[test]
fn mm_projector_lr_enters_the_keys_only_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let base = plan(dir.path(), "a.toml", GRID);
    for t in of(&base, StageKind::Pretrain) {
        assert!(t.config["hparams"].get("mm_projector_lr").is_none());
    }
    let set = plan(
        dir.path(),
        "b.toml",
        &format!("{GRID}\n[pretrain]\nmm_projector_lr = 2e-4\n"),
    );
    assert!(keys(&base, StageKind::Pretrain).is_disjoint(&keys(&set, StageKind::Pretrain)));
    for t in of(&set, StageKind::Pretrain) {
        assert_eq!(t.config["hparams"]["mm_projector_lr"], 2e-4);
    }
    // As a grid axis: one pretrain per value (× the 3 fusion/layer pretrains).
    let axis = plan(
        dir.path(),
        "c.toml",
        &GRID.replace(
            "[grid]\n",
            "[grid]\n\"finetune.mm_projector_lr\" = [1e-4, 2e-4]\n",
        ),
    );
    assert_eq!(
        keys(&axis, StageKind::Pretrain),
        keys(&base, StageKind::Pretrain)
    );
    assert_eq!(of(&axis, StageKind::Finetune).len(), 6);
}

#[test]
fn i_m_settings_split_only_i_m_pretrains_and_the_default_leaves_keys_alone() {
    let dir = tempfile::tempdir().unwrap();
    let grid = GRID.replace(r#"["E_D", "I_D"]"#, r#"["E_D", "I_M"]"#);
    let base = plan(dir.path(), "a.toml", &grid);
    for t in of(&base, StageKind::Pretrain) {
        assert!(t.config.get("i_m").is_none(), "{}", t.config);
    }
    // The default written out changes nothing.
    let default = plan(
        dir.path(),
        "b.toml",
        &format!("{grid}\n[i_m]\nplacement = \"pre\"\n"),
    );
    assert_eq!(
        keys(&default, StageKind::Pretrain),
        keys(&base, StageKind::Pretrain)
    );
    // A placement axis: I_M gets one pretrain per placement and layer set, E_D still shares one.
    let axis = plan(
        dir.path(),
        "c.toml",
        &grid.replace(
            "[grid]\n",
            "[grid]\n\"i_m.placement\" = [\"pre\", \"post\", \"parallel\"]\n",
        ),
    );
    let pre = of(&axis, StageKind::Pretrain);
    let count = |f: &str| pre.iter().filter(|t| t.axes["fusion"] == f).count();
    assert_eq!((count("E_D"), count("I_M")), (1, 6));
    let placements: HashSet<String> = pre
        .iter()
        .filter(|t| t.axes["fusion"] == "I_M")
        .map(|t| t.config["i_m"]["placement"].to_string())
        .collect();
    assert_eq!(
        placements,
        HashSet::from(["null".to_string(), "\"post\"".into(), "\"parallel\"".into()])
    );
    // The I_M `pre` cells are exactly the grid's I_M pretrains without the axis.
    assert!(keys(&base, StageKind::Pretrain).is_subset(&keys(&axis, StageKind::Pretrain)));
}

#[test]
fn encode_budget_is_a_runtime_option_outside_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = plan(
        dir.path(),
        "a.toml",
        &format!("[encode]\nenabled = true\n{GRID}"),
    );
    let b = plan(
        dir.path(),
        "b.toml",
        &format!("[encode]\nenabled = true\nbudget_gb = 0.5\n{GRID}"),
    );
    assert_eq!(keys(&a, StageKind::Encode), keys(&b, StageKind::Encode));
    assert_eq!(keys(&a, StageKind::Pretrain), keys(&b, StageKind::Pretrain));
    for t in of(&b, StageKind::Encode) {
        assert_eq!(t.runtime["budget_gb"], serde_json::json!(0.5));
    }
    assert!(of(&a, StageKind::Encode)
        .iter()
        .all(|t| t.runtime.is_empty()));
    assert!(b
        .tasks
        .iter()
        .filter(|t| t.stage != StageKind::Encode)
        .all(|t| t.runtime.is_empty()));
}

#[test]
fn eval_batch_is_a_runtime_option_outside_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = plan(dir.path(), "a.toml", GRID);
    let b = plan(
        dir.path(),
        "b.toml",
        &GRID.replace("[grid]", "[eval]\nbatch = 4\n[grid]"),
    );
    assert_eq!(keys(&a, StageKind::Eval), keys(&b, StageKind::Eval));
    for t in of(&b, StageKind::Eval) {
        assert_eq!(t.runtime["batch"], serde_json::json!(4));
        assert!(t.config["settings"].get("batch").is_none(), "{}", t.config);
    }
    assert!(a.tasks.iter().all(|t| t.runtime.is_empty()));
    assert!(b
        .tasks
        .iter()
        .filter(|t| t.stage != StageKind::Eval)
        .all(|t| t.runtime.is_empty()));
}

#[test]
fn tasks_come_in_topological_order() {
    let dir = tempfile::tempdir().unwrap();
    let g = format!(
        "[encode]\nenabled = true\n{}",
        GRID.replace(r#"sft = ["sft"]"#, r#"sft = ["sft", "syn"]"#)
    );
    let p = plan(dir.path(), "m.toml", &g);
    let mut seen = HashSet::new();
    for t in &p.tasks {
        for d in &t.deps {
            assert!(seen.contains(d), "{} before its dep {}", t.key, d);
        }
        seen.insert(t.key.clone());
    }
    assert_eq!(seen.len(), p.tasks.len(), "keys are unique");
    for (i, c) in p.cells.iter().enumerate() {
        assert_eq!(
            p.tasks
                .iter()
                .filter(|t| t.stage == StageKind::Eval && t.cells.contains(&i))
                .count(),
            1,
            "{c:?}"
        );
    }
}

#[test]
fn the_paper_grid_plans_offline() {
    let p = mlvf::plan::load(std::path::Path::new("experiments/paper.toml"), None).unwrap();
    assert_eq!(p.cells.len(), 4 * 6 * 2 * 2 * 2 * 7 + 2 * 2 * 2 * 7);
    // Per (encoder, llm): E_D and E_M have 5 distinct models (3-18 ≡ 3-18-23), I_D and I_M 6, +1 baseline.
    assert_eq!(of(&p, StageKind::Pretrain).len(), 4 * (5 + 5 + 6 + 6 + 1));
    assert_eq!(of(&p, StageKind::Finetune).len(), 2 * 92);
    assert_eq!(of(&p, StageKind::Eval).len(), 7 * 184);
    assert_eq!(p.tables[0].cols, vec!["benchmark"]);
    let siglip_e_d: Vec<_> = of(&p, StageKind::Pretrain)
        .into_iter()
        .filter(|t| {
            t.axes["encoder"] == "siglip"
                && t.axes["fusion"] == "E_D"
                && t.axes["layers"] == serde_json::json!(["3-18", "3-18-23"])
        })
        .collect();
    assert_eq!(
        siglip_e_d[0].config["layers"]["groups"],
        serde_json::json!([[3], [20]])
    );
}

#[test]
fn every_config_round_trips_through_its_typed_struct() {
    use mlvf::plan::config::*;
    use mlvf::plan::keys::canonical_json;
    fn check<T: serde::Serialize + serde::de::DeserializeOwned>(t: &Task) {
        let typed: T = serde_json::from_value(t.config.clone())
            .unwrap_or_else(|e| panic!("{} config: {e}\n{}", t.stage, t.config));
        assert_eq!(
            canonical_json(&serde_json::to_value(typed).unwrap()),
            canonical_json(&t.config)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let g = format!(
        "[encode]\nenabled = true\n{}include = [{{ fusion = \"baseline\" }}]\n",
        GRID.replace(r#"sft = ["sft"]"#, r#"sft = ["sft", "syn"]"#)
    );
    let mut plans = vec![plan(dir.path(), "m.toml", &g)];
    plans.push(mlvf::plan::load(std::path::Path::new("experiments/paper.toml"), None).unwrap());
    for p in &plans {
        for t in &p.tasks {
            match t.stage {
                StageKind::Prepare => check::<PrepareConfig>(t),
                StageKind::Encode => check::<EncodeConfig>(t),
                StageKind::Pretrain => check::<PretrainConfig>(t),
                StageKind::Finetune => check::<FinetuneConfig>(t),
                StageKind::Eval => check::<EvalConfig>(t),
            }
        }
    }
    let pre: PretrainConfig = serde_json::from_value(plans[1].tasks[0].config.clone()).unwrap();
    assert_eq!(
        pre.encoder.source().unwrap().canonical(),
        "hf:openai/clip-vit-large-patch14-336"
    );
}

#[test]
fn controls_add_one_eval_each_and_change_no_key_that_existed() {
    let dir = tempfile::tempdir().unwrap();
    let base = plan(dir.path(), "a.toml", GRID);
    let with = plan(
        dir.path(),
        "b.toml",
        &GRID.replace(
            "[grid]",
            "[eval]\nbatch = 4\ncontrols = [\"blank\", \"shuffle\", \"none\"]\n[grid]",
        ),
    );
    // Every task that existed keeps its key (a store stays fully cached); only evals are added.
    for stage in StageKind::ALL {
        assert!(
            keys(&base, stage).is_subset(&keys(&with, stage)),
            "{stage} keys changed"
        );
        if stage != StageKind::Eval {
            assert_eq!(keys(&base, stage), keys(&with, stage));
        }
    }
    let evals = of(&with, StageKind::Eval);
    assert_eq!(evals.len(), 6 * 4);
    let (plain, controls): (Vec<&Task>, Vec<&Task>) = evals
        .iter()
        .partition(|t| t.config.get("control").is_none());
    let plain_keys: HashSet<String> = plain.iter().map(|t| t.key.0.clone()).collect();
    assert_eq!(plain_keys, keys(&base, StageKind::Eval));
    let by_key: std::collections::HashMap<&str, &Task> =
        with.tasks.iter().map(|t| (t.key.0.as_str(), t)).collect();
    for t in &controls {
        // The finetune first, then the with-image eval of the same cells and benchmark.
        let ft = by_key[t.deps[0].0.as_str()];
        let img = by_key[t.deps[1].0.as_str()];
        assert_eq!(ft.stage, StageKind::Finetune);
        assert_eq!(img.stage, StageKind::Eval);
        assert!(img.config.get("control").is_none());
        assert_eq!(img.cells, t.cells);
        assert_eq!(img.config["benchmark"], t.config["benchmark"]);
        assert_eq!(img.config["settings"], t.config["settings"]);
        assert_eq!(t.axes["control"], t.config["control"]);
        assert_eq!(
            t.runtime["batch"],
            serde_json::json!(4),
            "batch reaches controls"
        );
    }
    // Each cell: one with-image eval, one eval per control.
    for (i, _) in with.cells.iter().enumerate() {
        let mut names: Vec<String> = evals
            .iter()
            .filter(|t| t.cells.contains(&i))
            .map(|t| {
                t.config
                    .get("control")
                    .map_or("-".into(), |c| c.to_string())
            })
            .collect();
        names.sort();
        assert_eq!(names, ["\"blank\"", "\"none\"", "\"shuffle\"", "-"]);
    }
    // Dropping a control again leaves the others' keys alone.
    let fewer = plan(
        dir.path(),
        "c.toml",
        &GRID.replace("[grid]", "[eval]\ncontrols = [\"none\"]\n[grid]"),
    );
    assert!(keys(&fewer, StageKind::Eval).is_subset(&keys(&with, StageKind::Eval)));
    assert_eq!(of(&fewer, StageKind::Eval).len(), 12);
}

/// Every manifest the repository ships plans offline; grounding.toml shares no task with the
/// quickstart (other world, other models) and its controls are eval tasks of their own.
#[test]
fn every_shipped_manifest_plans() {
    for entry in std::fs::read_dir("experiments").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            mlvf::plan::load(&path, None).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        }
    }
    let g = mlvf::plan::load(std::path::Path::new("experiments/grounding.toml"), None).unwrap();
    let q = mlvf::plan::load(std::path::Path::new("experiments/quickstart.toml"), None).unwrap();
    let keys: HashSet<&str> = q.tasks.iter().map(|t| t.key.0.as_str()).collect();
    assert!(g.tasks.iter().all(|t| !keys.contains(t.key.0.as_str())));
    assert_eq!(g.cells.len(), 2 * 2, "baseline + E_D, two benchmarks");
    assert_eq!(
        of(&g, StageKind::Eval).len(),
        2 * 2 * 2,
        "with image and blank"
    );
}
