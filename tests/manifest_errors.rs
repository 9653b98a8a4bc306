//! Manifest validation: every error names file:line:column of the offending value, says what is
//! wrong and how to fix it.

mod manifest_common;
use manifest_common::*;

fn contains_all(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected `{p}` in:\n{msg}");
    }
}

#[test]
fn unknown_fusion_is_located_and_gets_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &GRID.replace(r#"["E_D", "I_D"]"#, r#"["E_D", "E-M"]"#),
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"E-M\""),
            "unknown fusion `E-M`",
            "did you mean `E_M`?",
        ],
    );
}

#[test]
fn malformed_and_out_of_range_layer_sets_are_reported_at_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &GRID.replace(r#"["3-18", "3-18-23"]"#, r#"["3-18", "3-x", "2-30"]"#),
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"3-x\""),
            "not one of 18, 3-18",
            &pos(&p, "\"2-30\""),
            "1 to 24",
        ],
    );

    // `3-18-23` does not fit a 4-layer encoder: the message names the value, encoder and depth.
    let g = GRID
        .replace(r#"encoder = ["clip"]"#, r#"encoder = ["tiny"]"#)
        .replace(r#"["3-18", "3-18-23"]"#, r#"["former", "3-18-23"]"#);
    let p = write(dir.path(), "m2.toml", &g);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"3-18-23\""),
            "encoder `tiny` (depth 4)",
            "collide",
            "exclude",
        ],
    );
    assert!(
        !msg.contains("former"),
        "former fits a 4-layer encoder:\n{msg}"
    );
}

#[test]
fn unknown_references_name_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let g = GRID
        .replace(r#"encoder = ["clip"]"#, r#"encoder = ["clipp", "llm"]"#)
        .replace(r#"sft = ["sft"]"#, r#"sft = ["sftt"]"#)
        .replace(r#"["pope", "gqa"]"#, r#"["pope", "mmbench"]"#);
    let p = write(dir.path(), "m.toml", &g);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"clipp\""),
            "unknown vision model `clipp`",
            "did you mean `clip`?",
            "`llm` is an LLM, not vision model",
            &pos(&p, "\"sftt\""),
            "unknown dataset `sftt`",
            &pos(&p, "\"mmbench\""),
            "unknown benchmark `mmbench`",
            "4 errors",
        ],
    );
}

#[test]
fn zip_groups_of_unequal_length_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let g = GRID
        .replace(r#"encoder = ["clip"]"#, r#"encoder = ["clip", "sig"]"#)
        .replace(
            r#"llm = ["llm"]"#,
            "llm = [\"llm\", \"llm2\", \"llm\"]\nzip = [[\"encoder\", \"llm\"]]",
        );
    let p = write(dir.path(), "m.toml", &g);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "[\"encoder\", \"llm\"]]"),
            "zip group of unequal lengths",
            "`encoder` has 2",
            "`llm` has 3",
        ],
    );
}

#[test]
fn an_exclude_matching_nothing_is_a_located_warning() {
    let dir = tempfile::tempdir().unwrap();
    let g = format!("{GRID}exclude = [{{ fusion = \"E_D\", layers = \"all\" }}, {{ fusion = \"I_D\", layers = \"3-18\" }}]\n");
    let p = write(dir.path(), "m.toml", &g);
    let (plan, warnings) = mlvf::plan::load_with_warnings(&p, None).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    contains_all(
        &warnings[0],
        &[
            "warning:",
            &pos(&p, "{ fusion = \"E_D\", layers = \"all\" }"),
            "matches no cell",
        ],
    );
    // The other exclude did remove I_D/3-18.
    assert!(!plan
        .cells
        .iter()
        .any(|c| c.axes["fusion"] == "I_D" && c.axes["layers"] == "3-18"));
}

#[test]
fn extends_cycles_are_errors_at_the_extends_value() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_raw(
        dir.path(),
        "a.toml",
        "extends = \"b.toml\"\n[sweep]\nname = \"a\"\n",
    );
    let b = write_raw(dir.path(), "b.toml", "extends = \"./a.toml\"\n");
    let msg = plan_error(&a);
    contains_all(
        &msg,
        &[
            &pos(&b, "\"./a.toml\""),
            "`extends` cycle: a.toml → b.toml → a.toml",
        ],
    );
}

#[test]
fn errors_in_a_parent_manifest_point_into_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("base")).unwrap();
    let parent = write(
        &dir.path().join("base"),
        "parent.toml",
        &format!("{GRID}\n[finetune]\nlr = \"fast\"\n"),
    );
    let child = write_raw(
        dir.path(),
        "child.toml",
        "extends = \"base/parent.toml\"\n[grid]\nseed = [0, 1]\n",
    );
    let msg = plan_error(&child);
    contains_all(
        &msg,
        &[&pos(&parent, "\"fast\""), "[finetune] `lr`", "expected f64"],
    );
}

#[test]
fn unknown_keys_anywhere_get_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{GRID}\n[finetune]\nlrr = 1e-5\n[encode]\nenable = true\n[[table]]\nname = \"main\"\nrows = [\"fusion\", \"layer\"]\ncols = [\"benchmark\"]\nwhere = {{ encoders = [\"clip\"] }}\n[evall]\n");
    let p = write(dir.path(), "m.toml", &body);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "lrr"),
            "unknown key `lrr` in [finetune]",
            "did you mean `lr`?",
            &pos(&p, "enable ="),
            "did you mean `enabled`?",
            &pos(&p, "\"layer\""),
            "did you mean `layers`?",
            &pos(&p, "encoders ="),
            "[[table]] where: `encoders` is not an axis of this grid",
            &pos(&p, "evall"),
            "did you mean `eval`?",
        ],
    );
}

#[test]
fn i_m_settings_are_checked_in_the_section_and_as_axes() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}\n[i_m]\nplacment = \"post\"\nvisibility = \"sometimes\"\n",
        GRID.replace(
            "[grid]\n",
            "[grid]\n\"i_m.placement\" = [\"pre\", \"sideways\"]\n"
        )
    );
    let p = write(dir.path(), "m.toml", &body);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "placment"),
            "unknown key `placment` in [i_m]",
            "did you mean `placement`?",
            &pos(&p, "\"sometimes\""),
            "[i_m] `visibility`",
            &pos(&p, "\"sideways\""),
            "`i_m.placement` = \"sideways\"",
        ],
    );
}

#[test]
fn hyper_parameters_of_the_wrong_type_are_rejected_in_sections_and_axes() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{GRID}\"finetune.lr\" = [2e-5, \"fast\"]\npretrain.batch = [8, 2.5]\n\n[pretrain]\nbatch = \"8\"\nscheduler = \"cosin\"\n");
    let p = write(dir.path(), "m.toml", &body);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"fast\""),
            "`finetune.lr` = \"fast\"",
            &pos(&p, "2.5"),
            "expected u64",
            &pos(&p, "\"8\""),
            &pos(&p, "\"cosin\""),
            "expected one of `cosine`",
        ],
    );
}

#[test]
fn unknown_axes_and_dotted_fields_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{GRID}benchmarks = [\"pope\"]\n\"finetune.lrate\" = [1e-5]\n");
    let p = write(dir.path(), "m.toml", &body);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "benchmarks ="),
            "unknown axis `benchmarks`",
            "did you mean `benchmark`?",
            "`finetune` has no field `lrate`",
        ],
    );
}

#[test]
fn bad_entries_and_syntax_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_raw(dir.path(), "m.toml", "[sweep]\nname = \"x\"\n[models]\nv = { kind = \"vison\", family = \"clip\", source = \"hf:clip\" }\n");
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            "unknown kind `vison`",
            "did you mean `vision`?",
            "not a Hugging Face reference",
            "[grid]",
        ],
    );
    let p = write_raw(dir.path(), "bad.toml", "[sweep]\nname = \"x\nstore = 3\n");
    let msg = plan_error(&p);
    contains_all(&msg, &[&format!("{}:2:", p.display()), "TOML syntax"]);
    let missing = dir.path().join("nope.toml");
    assert!(plan_error(&missing).contains("cannot read manifest"));
}

#[test]
fn a_fusion_needing_layers_without_a_layers_axis_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &GRID.replace("layers = [\"3-18\", \"3-18-23\"]\n", ""),
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[&pos(&p, "\"E_D\""), "fusion `E_D` needs a layer set"],
    );
}

#[test]
fn an_axis_named_only_by_include_still_needs_a_grid_axis() {
    let dir = tempfile::tempdir().unwrap();
    let g = GRID.replace(
        "fusion = [\"E_D\", \"I_D\"]\n",
        "include = [{ fusion = \"baseline\" }]\n",
    );
    let p = write(dir.path(), "m.toml", &g);
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "[grid]"),
            "[grid] has no `fusion` axis",
            "add e.g. `fusion = [",
        ],
    );
}

#[test]
fn towers_too_shallow_to_fuse_are_rejected_at_their_depth() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_raw(
        dir.path(),
        "m.toml",
        "[sweep]\nname = \"x\"\n[models]\nv = { kind = \"vision\", family = \"siglip\", source = \"synth:siglip\", depth = 2 }\nl = { kind = \"llm\", family = \"llama\", source = \"synth:llama\", layers = 0 }\n",
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "2 }"),
            "drops its last layer",
            &pos(&p, "0 }"),
            "at least one decoder layer",
        ],
    );
}

#[test]
fn a_bad_on_error_is_located_and_gets_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.toml", GRID);
    let text = std::fs::read_to_string(&p).unwrap().replace(
        r#"json = "pt.json", images = "img" }"#,
        r#"json = "pt.json", images = "img", on_error = "skp" }"#,
    );
    std::fs::write(&p, text).unwrap();
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"skp\""),
            "[data.pt]: unknown on_error `skp`",
            "did you mean `skip`?",
        ],
    );
}

#[test]
fn mm_projector_lr_is_type_checked_and_suggested() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &format!(
            "{GRID}\n[pretrain]\nmm_projector_lr = \"fast\"\n[finetune]\nmm_projecter_lr = 1e-4\n"
        ),
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"fast\""),
            "[pretrain] `mm_projector_lr` = \"fast\"",
            &pos(&p, "mm_projecter_lr"),
            "unknown key `mm_projecter_lr` in [finetune]",
            "did you mean `mm_projector_lr`?",
        ],
    );
}

/// Every numeric stage setting with a domain: (section, field, a valid value, an invalid one,
/// a word of the hint). The invalid value is reported at its file:line:col, whether a section
/// sets it or a grid axis sweeps it; the valid one plans.
const DOMAINS: [(&str, &str, &str, &str, &str); 22] = [
    ("pretrain", "lr", "2e-5", "-2e-5", "1e-3"),
    ("finetune", "lr", "2e-5", "0", "2e-5"),
    ("finetune", "lr", "2e-5", "nan", "finite number"),
    (
        "finetune",
        "mm_projector_lr",
        "1e-3",
        "-1e-3",
        "leave it out",
    ),
    ("finetune", "weight_decay", "0.0", "-0.1", "0.0"),
    ("finetune", "warmup_ratio", "0.03", "1.5", "warmup_steps"),
    ("finetune", "warmup_ratio", "0.0", "-0.1", "[0, 1)"),
    ("finetune", "batch", "1", "0", "set 1"),
    ("pretrain", "grad_accum", "8", "0", "no accumulation"),
    ("finetune", "epochs", "1", "0", "max_steps"),
    ("finetune", "max_steps", "10", "0", "leave `max_steps` out"),
    ("finetune", "max_len", "2048", "0", "2048"),
    ("eval", "max_new_tokens", "16", "0", "16"),
    ("eval", "temperature", "0.0", "-1", "greedy"),
    ("eval", "temperature", "0.7", "inf", "finite number"),
    ("eval", "num_beams", "1", "0", "greedy"),
    ("eval", "batch", "8", "0", "default (16)"),
    ("eval", "limit", "5", "0", "every sample"),
    ("i_m", "init_std", "0.02", "0", "0.02"),
    ("i_m", "init_std", "0.02", "-0.02", "0.02"),
    ("pretrain", "max_len", "1", "0", "text + image"),
    ("pretrain", "epochs", "2", "0", "max_steps"),
];

#[test]
fn every_stage_setting_outside_its_domain_is_located_in_a_section() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (section, field, ok, bad, hint)) in DOMAINS.iter().enumerate() {
        let body = |v: &str| GRID.replace("[grid]", &format!("[{section}]\n{field} = {v}\n[grid]"));
        let good = write(dir.path(), &format!("ok{i}.toml"), &body(ok));
        if let Err(e) = mlvf::plan::load_with_warnings(&good, None) {
            panic!("[{section}] {field} = {ok} should plan: {e:#}");
        }
        let p = write(dir.path(), &format!("bad{i}.toml"), &body(bad));
        let msg = plan_error(&p);
        contains_all(
            &msg,
            &[
                &pos(&p, &format!("{bad}\n[grid]")),
                &format!("[{section}] `{field}`"),
                hint,
            ],
        );
    }
}

#[test]
fn every_stage_setting_outside_its_domain_is_located_in_a_grid_axis() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (section, field, ok, bad, hint)) in DOMAINS.iter().enumerate() {
        let axis = format!("\"{section}.{field}\" = [{ok}, {bad}]");
        let p = write(
            dir.path(),
            &format!("axis{i}.toml"),
            &format!("{GRID}{axis}\n"),
        );
        let msg = plan_error(&p);
        contains_all(
            &msg,
            &[
                &pos(&p, &format!("{bad}]\n")),
                &format!("`{section}.{field}`"),
                hint,
            ],
        );
        assert!(
            !msg.contains(&format!("= {ok}:")),
            "the valid value {ok} was reported:\n{msg}"
        );
    }
}

#[test]
fn an_eval_batch_of_zero_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &GRID.replace("[grid]", "[eval]\nbatch = 0\n[grid]"),
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[&pos(&p, "0\n[grid]"), "[eval] `batch` = 0", "default (16)"],
    );
}

#[test]
fn unknown_or_repeated_controls_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &GRID.replace(
            "[grid]",
            "[eval]\ncontrols = [\"blank\", \"shufle\", \"blank\"]\n[grid]",
        ),
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "\"shufle\""),
            "unknown control `shufle`",
            "did you mean `shuffle`?",
            "`blank`, `shuffle`, `none`",
            "`blank` is listed twice",
        ],
    );
    // The repeat is reported at the second `"blank"`.
    let text = std::fs::read_to_string(&p).unwrap();
    let at = text.rfind("\"blank\"").unwrap();
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').unwrap();
    let second = format!(
        "{}:{line}:{col}: [eval] controls: `blank` is listed twice",
        p.display()
    );
    assert!(msg.contains(&second), "{second} not in\n{msg}");

    // A misspelt key gets the name; controls are no grid axis.
    let p = write(
        dir.path(),
        "m2.toml",
        &GRID.replace(
            "[grid]",
            "[eval]\ncontrol = [\"blank\"]\n[grid]\n\"eval.controls\" = [\"blank\"]",
        ),
    );
    let msg = plan_error(&p);
    contains_all(
        &msg,
        &[
            &pos(&p, "control ="),
            "did you mean `controls`?",
            &pos(&p, "\"eval.controls\""),
            "not a grid axis",
        ],
    );
}

/// `[executor]` settings: (TOML lines, the value an error points at, words of its message).
const EXECUTOR_ERRORS: [(&str, &str, &str); 9] = [
    ("jobs = 0", "0\n", "runs at least one task at a time"),
    (
        "partiton = \"gpu\"",
        "partiton",
        "did you mean `partition`?",
    ),
    (
        "kind = \"slurmm\"",
        "\"slurmm\"",
        "unknown variant `slurmm`",
    ),
    ("time = \"4h\"", "\"4h\"", "not a Slurm time limit"),
    ("mem = \"64 GB\"", "\"64 GB\"", "not a memory size"),
    ("cpus = 0", "0\n", "at least one CPU"),
    (
        "extra = [\"constraint=a100\"]",
        "[\"constraint",
        "not one sbatch option",
    ),
    ("poll_s = -1", "-1", "positive number of seconds"),
    (
        "max_array_size = 0",
        "0\n",
        "an array holds at least one job",
    ),
];

#[test]
fn executor_settings_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (line, at, words)) in EXECUTOR_ERRORS.iter().enumerate() {
        let p = write(
            dir.path(),
            &format!("e{i}.toml"),
            &format!("{GRID}\n[executor]\n{line}\n"),
        );
        let msg = plan_error(&p);
        let needle = format!("{line}\n");
        let line_start = std::fs::read_to_string(&p).unwrap().find(&needle).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let offset = line_start + line.find(at.trim_end()).unwrap();
        let l = text[..offset].matches('\n').count() + 1;
        let c = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
        contains_all(&msg, &[&format!("{}:{l}:{c}", p.display()), words]);
    }
}

#[test]
fn executor_stage_overrides_name_real_stages_and_valid_times() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &format!("{GRID}\n[executor.stage.train]\ngpus = 1\n"),
    );
    contains_all(
        &plan_error(&p),
        &[
            "no stage called \"train\"",
            "stages: prepare, encode, pretrain, finetune, eval",
        ],
    );
    let p = write(
        dir.path(),
        "m2.toml",
        &format!("{GRID}\n[executor.stage.eval]\ntime = \"half an hour\"\n"),
    );
    contains_all(
        &plan_error(&p),
        &[
            "[executor.stage.eval] `time` = \"half an hour\"",
            "HH:MM:SS",
        ],
    );
}

/// The executor reads `[executor]` from the plan, so settings a manifest inherits through
/// `extends` reach it (they used to be read again from the child file alone).
#[test]
fn an_inherited_executor_reaches_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "parent.toml",
        &format!("{GRID}\n[executor]\nkind = \"slurm\"\njobs = 3\ntime = \"01:00:00\"\n[executor.stage.eval]\ngpus = 0\n"),
    );
    let child = write_raw(
        dir.path(),
        "child.toml",
        "extends = \"parent.toml\"\n[grid]\nseed = [0, 1]\n",
    );
    let (plan, _) = mlvf::plan::load_with_warnings(&child, None).unwrap();
    let cfg = mlvf::exec::slurm::SlurmConfig::from_settings(&plan.executor);
    assert_eq!(cfg.kind, mlvf::exec::slurm::ExecutorKind::Slurm);
    assert_eq!(cfg.jobs, Some(3));
    assert_eq!(
        cfg.resources(mlvf::plan::StageKind::Eval).sbatch_options(),
        ["--time=01:00:00"]
    );
    // And the plan's JSON carries it (what `mlvf run --plan-json` and Slurm workers read).
    let json = serde_json::to_string(&plan).unwrap();
    let back: mlvf::plan::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back.executor, plan.executor);
}

#[test]
fn a_benchmark_answer_length_and_an_encode_budget_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let body = GRID.replace("[grid]", "[encode]\nenabled = true\nbudget_gb = -5\n[grid]");
    let p = write(dir.path(), "m.toml", &body);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("max_new_tokens = 16", "max_new_tokens = 0");
    std::fs::write(&p, text).unwrap();
    contains_all(
        &plan_error(&p),
        &[
            &pos(&p, "-5"),
            "[encode] `budget_gb` = -5",
            "no limit",
            &pos(&p, "0 }"),
            "`max_new_tokens` = 0",
        ],
    );
}
