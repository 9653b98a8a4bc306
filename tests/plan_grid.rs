//! Grid operators: product, zip, exclude/include, when, ablate, dotted axes, extends.

mod manifest_common;
use manifest_common::*;
use serde_json::json;
use std::collections::BTreeSet;

const HEAD: &str = "[grid]\npretrain_data = [\"pt\"]\nsft = [\"sft\"]\nbenchmark = [\"pope\"]\nllm = [\"llm\"]\nencoder = [\"clip\"]\n";

fn cells(body: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.toml", body);
    let plan = mlvf::plan::load(&p, None).unwrap();
    plan.cells.iter().map(|c| json!(c.axes)).collect()
}

fn project(cells: &[serde_json::Value], axes: &[&str]) -> BTreeSet<String> {
    cells
        .iter()
        .map(|c| {
            axes.iter()
                .map(|a| {
                    c.get(*a)
                        .map_or("-".into(), |v| v.to_string().replace('"', ""))
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

#[test]
fn zip_varies_axes_together() {
    let c = cells(&format!("{}fusion = [\"baseline\"]\n", HEAD.replace("llm = [\"llm\"]\nencoder = [\"clip\"]\n", "encoder = [\"clip\", \"sig\"]\nllm = [\"llm\", \"llm2\"]\nzip = [[\"encoder\", \"llm\"]]\n")));
    assert_eq!(
        project(&c, &["encoder", "llm"]),
        BTreeSet::from(["clip/llm".into(), "sig/llm2".into()])
    );
}

#[test]
fn include_takes_unnamed_axes_from_the_product_and_skips_excludes() {
    let body = format!("{HEAD}fusion = [\"E_D\"]\nlayers = [\"18\", \"all\"]\nseed = [0, 1]\nexclude = [{{ seed = 1 }}]\ninclude = [{{ fusion = \"baseline\" }}, {{ fusion = \"I_M\", layers = \"18\", seed = 7 }}]\n");
    let c = cells(&body);
    assert_eq!(
        project(&c, &["fusion", "layers", "seed"]),
        BTreeSet::from([
            "E_D/18/0".to_string(),
            "E_D/all/0".into(),
            "baseline/-/0".into(),
            "baseline/-/1".into(),
            "I_M/18/7".into(),
        ])
    );
}

#[test]
fn when_adds_axes_to_matching_cells_only() {
    let body = format!("{HEAD}fusion = [\"E_D\", \"I_D\"]\nlayers = [\"18\"]\n[[grid.when]]\nmatch = {{ fusion = [\"I_D\", \"I_M\"] }}\naxes = {{ \"finetune.lr\" = [1e-5, 2e-5], sft = [\"sft\", \"syn\"] }}\n");
    let c = cells(&body);
    assert_eq!(c.len(), 1 + 4);
    assert!(c
        .iter()
        .filter(|x| x["fusion"] == "I_D")
        .all(|x| x.get("finetune.lr").is_some()));
    assert!(c
        .iter()
        .filter(|x| x["fusion"] == "E_D")
        .all(|x| x.get("finetune.lr").is_none()));
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.toml", &body);
    let plan = mlvf::plan::load(&p, None).unwrap();
    let lrs: BTreeSet<String> = plan
        .tasks
        .iter()
        .filter(|t| t.stage == mlvf::plan::StageKind::Finetune)
        .map(|t| t.config["hparams"]["lr"].to_string())
        .collect();
    assert_eq!(
        lrs,
        BTreeSet::from(["0.00001".to_string(), "0.00002".into()])
    );
}

#[test]
fn ablate_is_the_baseline_plus_one_change_at_a_time() {
    let body = format!(
        "{}fusion = [\"E_D\", \"E_M\", \"I_D\"]\nlayers = [\"3-18-23\", \"former\", \"all\"]\nencoder = [\"clip\", \"sig\"]\nablate = {{ baseline = {{ fusion = \"E_D\", layers = \"3-18-23\", encoder = \"clip\" }} }}\n",
        HEAD.replace("encoder = [\"clip\"]\n", "")
    );
    let c = cells(&body);
    assert_eq!(
        project(&c, &["fusion", "layers", "encoder"]),
        BTreeSet::from([
            "E_D/3-18-23/clip".to_string(),
            "E_M/3-18-23/clip".into(),
            "I_D/3-18-23/clip".into(),
            "E_D/former/clip".into(),
            "E_D/all/clip".into(),
            "E_D/3-18-23/sig".into(),
        ])
    );
}

#[test]
fn dotted_axes_work_as_keys_or_nested_tables_and_values_are_typed() {
    let body = format!(
        "{HEAD}fusion = [\"baseline\"]\n\"pretrain.lr\" = [1, 2e-3]\nfinetune.epochs = [1, 2]\n"
    );
    let c = cells(&body);
    assert_eq!(c.len(), 4);
    // `1` for a float field is normalised to 1.0, so it matches and hashes like `1.0`.
    assert!(c.iter().any(|x| x["pretrain.lr"] == json!(1.0)));
    assert!(c.iter().any(|x| x["finetune.epochs"] == json!(2)));
}

#[test]
fn defaults_fill_single_entry_axes_seed_and_all_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_raw(
        dir.path(),
        "m.toml",
        "[sweep]\nname = \"d\"\n[models]\nv = { kind = \"vision\", family = \"clip\", source = \"synth:clip\", depth = 6 }\nl = { kind = \"llm\", family = \"llama\", source = \"synth:llama\", layers = 4 }\n[data]\nd = { source = \"synth:world\" }\n[benchmarks]\na = { source = \"synth:pope\" }\nb = { source = \"synth:gqa\" }\n[grid]\nfusion = [\"baseline\"]\n",
    );
    let plan = mlvf::plan::load(&p, None).unwrap();
    assert_eq!(plan.cells.len(), 2);
    assert_eq!(plan.cells[0].axes["seed"], 0);
    assert_eq!(
        plan.store,
        dir.path().canonicalize().unwrap().join("results")
    );
}

#[test]
fn extends_merges_tables_and_resolves_paths_against_the_writing_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("base")).unwrap();
    write(
        &dir.path().join("base"),
        "parent.toml",
        &format!(
            "{HEAD}fusion = [\"E_D\"]\nlayers = [\"18\"]\n[finetune]\nlr = 1e-5\nepochs = 3\n"
        ),
    );
    let child = write_raw(dir.path(), "child.toml", "extends = \"base/parent.toml\"\n[sweep]\nname = \"child\"\n[grid]\nlayers = [\"all\"]\n[finetune]\nlr = 3e-5\n");
    let plan = mlvf::plan::load(&child, None).unwrap();
    assert_eq!(plan.sweep, "child");
    assert_eq!(plan.cells.len(), 1);
    assert_eq!(plan.cells[0].axes["layers"], "all");
    let ft = plan
        .tasks
        .iter()
        .find(|t| t.stage == mlvf::plan::StageKind::Finetune)
        .unwrap();
    assert_eq!(
        (
            ft.config["hparams"]["lr"].as_f64(),
            ft.config["hparams"]["epochs"].as_u64()
        ),
        (Some(3e-5), Some(3))
    );
    // `pt.json` was written in base/parent.toml (via CATALOG), so it resolves under base/.
    let pre = plan
        .tasks
        .iter()
        .find(|t| t.stage == mlvf::plan::StageKind::Pretrain)
        .unwrap();
    assert!(
        pre.config["data"]["json"]
            .as_str()
            .unwrap()
            .ends_with("base/pt.json"),
        "{}",
        pre.config["data"]
    );
    // The store is the parent's `store = "store"`, relative to the parent file.
    assert!(plan.store.ends_with("base/store"));
}

#[test]
fn a_when_matching_no_cell_is_a_warning_but_one_matching_an_include_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{HEAD}fusion = [\"E_D\"]\nlayers = [\"18\"]\ninclude = [{{ fusion = \"baseline\" }}]\n[[grid.when]]\nmatch = {{ fusion = \"baseline\" }}\naxes = {{ seed = [0, 1] }}\n[[grid.when]]\nmatch = {{ fusion = \"I_M\" }}\naxes = {{ seed = [5] }}\n"
    );
    let p = write(dir.path(), "m.toml", &body);
    let (plan, warnings) = mlvf::plan::load_with_warnings(&p, None).unwrap();
    assert_eq!(plan.cells.len(), 3, "E_D/18 + baseline × 2 seeds");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&pos(&p, "{ fusion = \"I_M\" }")),
        "{}",
        warnings[0]
    );
}

#[test]
fn in_an_ablation_an_include_takes_the_baselines_other_values() {
    let body = format!(
        "{}fusion = [\"E_D\", \"I_D\"]\nlayers = [\"3-18-23\", \"all\"]\nencoder = [\"clip\", \"sig\"]\nablate = {{ baseline = {{ fusion = \"E_D\", layers = \"3-18-23\", encoder = \"clip\" }} }}\ninclude = [{{ fusion = \"baseline\" }}]\n",
        HEAD.replace("encoder = [\"clip\"]\n", "")
    );
    let c = cells(&body);
    assert_eq!(
        project(&c, &["fusion", "layers", "encoder"]),
        BTreeSet::from([
            "E_D/3-18-23/clip".to_string(),
            "I_D/3-18-23/clip".into(),
            "E_D/all/clip".into(),
            "E_D/3-18-23/sig".into(),
            "baseline/-/clip".into(),
        ])
    );
}
