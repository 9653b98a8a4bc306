//! A user's own data, end to end through the CLI: nothing here comes from the synthetic world.
//!
//! The test writes what a user would bring: PNG photos (drawn with the `image` crate), a LLaVA
//! pretrain and instruction set, two benchmarks in the local `mmeval-jsonl/1` format, and
//! Hugging Face–layout checkpoints of a tiny CLIP vision tower and a tiny LLaMA with its
//! `tokenizer.json` (random weights; configs written by hand as `save_pretrained` writes them).
//! A manifest names them by path; `mlvf run` trains and evaluates the baseline and two fusion
//! paradigms, `mlvf results` tabulates one finite score per cell × benchmark, and a second
//! `mlvf run` finds everything cached.

use assert_cmd::Command;
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use image::{Rgb, RgbImage};
use mlvf::eval::{BenchmarkManifest, BenchmarkWriter, Sample};
use mlvf::model::llm::{Llama, LlamaConfig};
use mlvf::model::vision::{VisionConfig, VisionTower};
use serde_json::{json, Value};
use std::path::Path;

const COLORS: [(&str, [u8; 3]); 3] = [
    ("red", [220, 30, 30]),
    ("green", [30, 200, 60]),
    ("blue", [40, 60, 220]),
];
const SHAPES: [&str; 2] = ["square", "disc"];

/// A 32-px photo of one filled shape on a grey background.
fn draw(color: [u8; 3], shape: &str) -> RgbImage {
    RgbImage::from_fn(32, 32, |x, y| {
        let (dx, dy) = (x as f32 - 15.5, y as f32 - 15.5);
        let inside = match shape {
            "square" => dx.abs() < 9.0 && dy.abs() < 9.0,
            _ => dx * dx + dy * dy < 100.0,
        };
        if inside {
            Rgb(color)
        } else {
            Rgb([128, 128, 128])
        }
    })
}

/// Every (colour, shape) pair, as `(file name, colour, shape)`.
fn photos() -> Vec<(String, &'static str, &'static str)> {
    COLORS
        .iter()
        .flat_map(|(c, _)| SHAPES.iter().map(move |s| (format!("{c}_{s}.png"), *c, *s)))
        .collect()
}

fn turn(from: &str, value: &str) -> Value {
    json!({"from": from, "value": value})
}

/// `data/images/<colour>_<shape>.png` plus LLaVA JSON captions (pretrain) and instructions
/// (finetune: one- and two-turn conversations, and a text-only record as LLaVA's mix has).
fn write_datasets(root: &Path) {
    let images = root.join("data/images");
    std::fs::create_dir_all(&images).unwrap();
    let mut pretrain = Vec::new();
    let mut finetune = Vec::new();
    for (i, (file, color, shape)) in photos().into_iter().enumerate() {
        let rgb = COLORS.iter().find(|c| c.0 == color).unwrap().1;
        draw(rgb, shape).save(images.join(&file)).unwrap();
        pretrain.push(json!({
            "id": format!("cap-{i}"),
            "image": file,
            "conversations": [turn("human", "<image>\nDescribe the image briefly."),
                              turn("gpt", &format!("A {color} {shape} on grey."))],
        }));
        let mut conv = vec![
            turn(
                "human",
                "<image>\nWhat color is the shape?\nAnswer the question using a single word or phrase.",
            ),
            turn("gpt", &format!("{}.", capitalise(color))),
        ];
        if i % 2 == 0 {
            conv.push(turn("human", "And which shape is it?"));
            conv.push(turn("gpt", &format!("A {shape}.")));
        }
        finetune.push(json!({"id": format!("sft-{i}"), "image": file, "conversations": conv}));
    }
    finetune.push(json!({
        "id": "text-only",
        "conversations": [turn("human", "Name a colour."), turn("gpt", "Red.")],
    }));
    let write = |name: &str, v: &Vec<Value>| {
        std::fs::write(
            root.join("data").join(name),
            serde_json::to_string_pretty(v).unwrap(),
        )
        .unwrap()
    };
    write("pretrain.json", &pretrain);
    write("finetune.json", &finetune);
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().unwrap().to_uppercase().chain(c).collect()
}

fn bench_manifest(task: &str, scorer: &str, primary: &str) -> BenchmarkManifest {
    serde_json::from_value(json!({
        "format": "mmeval-jsonl/1", "task": task, "count": 0,
        "source": {"made_by": "tests/own_data.rs"},
        "generation": {"max_new_tokens": 16}, "scorer": scorer,
        "report": {"primary": primary, "scale": 100}
    }))
    .unwrap()
}

/// Two benchmarks of 4 questions each: open colour questions scored by exact match (GQA's
/// scorer), and two-option shape questions scored by letter (CV-Bench's).
fn write_benchmarks(root: &Path) {
    let mut colors = BenchmarkWriter::new(
        &root.join("bench/colors"),
        bench_manifest("colors", "exact_match_hf", "exact_match"),
    )
    .unwrap();
    let mut shapes = BenchmarkWriter::new(
        &root.join("bench/shapes"),
        bench_manifest("shapes", "cvbench_letter", "cv_bench_acc"),
    )
    .unwrap();
    for (i, (_, color, shape)) in photos().into_iter().take(4).enumerate() {
        let rgb = COLORS.iter().find(|c| c.0 == color).unwrap().1;
        let img = image::DynamicImage::ImageRgb8(draw(rgb, shape));
        let short = "\nAnswer the question using a single word or phrase.";
        let path = colors.add_image(&img).unwrap();
        colors
            .push(&Sample::new(
                format!("c{i}"),
                vec![path],
                format!("What color is the shape?{short}"),
                color.into(),
            ))
            .unwrap();
        let path = shapes.add_image(&img).unwrap();
        let mut s = Sample::new(
            format!("s{i}"),
            vec![path],
            "Which shape is in the image?\n(A) square\n(B) disc\nAnswer with the option's letter from the given choices directly.".into(),
            if shape == "square" { "(A)" } else { "(B)" }.into(),
        );
        s.options = Some(vec!["square".into(), "disc".into()]);
        shapes.push(&s).unwrap();
    }
    assert_eq!(colors.finish().unwrap().samples.len(), 4);
    assert_eq!(shapes.finish().unwrap().samples.len(), 4);
}

/// `model.safetensors` for the model `build` makes from a `VarMap`, under the HF names the
/// engine's loaders (and transformers) read. Matrices get seeded uniform values of std 0.02
/// (HF's `initializer_range`), so the checkpoint is the same on every run; vectors keep the
/// builder's values (norm weights 1, biases 0).
fn random_weights(dir: &Path, build: impl FnOnce(VarBuilder)) {
    use rand::{Rng, SeedableRng};
    let map = VarMap::new();
    build(VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut vars: Vec<_> = map.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let bound = 0.02 * 3f32.sqrt();
    for (_, var) in vars.iter().filter(|(_, v)| v.rank() >= 2) {
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let t = candle_core::Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap();
        var.set(&t).unwrap();
    }
    map.save(dir.join("model.safetensors")).unwrap();
}

/// A `CLIPVisionModel` checkpoint: 4 layers, width 32, 32-px images in 8-px patches.
fn write_vision_tower(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = json!({
        "architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
        "hidden_act": "quick_gelu", "hidden_size": 32, "intermediate_size": 64,
        "num_attention_heads": 4, "num_hidden_layers": 4, "num_channels": 3,
        "image_size": 32, "patch_size": 8, "layer_norm_eps": 1e-5,
        "attention_dropout": 0.0, "projection_dim": 32, "dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let preprocessor = json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true, "size": {"shortest_edge": 32}, "resample": 3,
        "do_center_crop": true, "crop_size": {"height": 32, "width": 32},
        "do_rescale": true, "rescale_factor": 1.0 / 255.0, "do_normalize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": true
    });
    std::fs::write(
        dir.join("preprocessor_config.json"),
        preprocessor.to_string(),
    )
    .unwrap();
    let cfg = VisionConfig::from_file(&dir.join("config.json")).unwrap();
    random_weights(dir, |vb| {
        VisionTower::new(&cfg, vb.pp("vision_model")).unwrap();
    });
}

/// A byte-level BPE `tokenizer.json` without merges (every byte is a token, so any text
/// encodes), with LLaMA's specials `<unk>` 0, `<s>` 1, `</s>` 2 and `<s>` put in front of every
/// sequence, written as the JSON a user's download holds. Returns the vocabulary size.
fn write_tokenizer(path: &Path) -> usize {
    let specials = ["<unk>", "<s>", "</s>"];
    let mut bytes: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    bytes.sort_unstable();
    let vocab: serde_json::Map<String, Value> = specials
        .iter()
        .map(|s| s.to_string())
        .chain(bytes.iter().map(char::to_string))
        .enumerate()
        .map(|(i, t)| (t, json!(i)))
        .collect();
    let n = vocab.len();
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": true, "use_regex": true});
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null,
        "pre_tokenizer": byte_level, "decoder": byte_level,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    });
    std::fs::write(path, serde_json::to_string_pretty(&tokenizer).unwrap()).unwrap();
    let check = tokenizers::Tokenizer::from_file(path).unwrap();
    let ids = check.encode("Red.</s>", true).unwrap().get_ids().to_vec();
    assert_eq!((ids[0], *ids.last().unwrap(), ids.len()), (1, 2, 6));
    n
}

/// A `LlamaForCausalLM` checkpoint: 2 layers, hidden 32, GQA 4/2 heads, tied embeddings.
fn write_llm(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let vocab = write_tokenizer(&dir.join("tokenizer.json"));
    let config = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": true, "vocab_size": vocab,
        "bos_token_id": 1, "eos_token_id": 2, "dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let cfg = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    random_weights(dir, |vb| {
        Llama::new(&cfg, vb).unwrap();
    });
}

/// Models by absolute path (as a user points at a download), data and benchmarks relative to
/// the manifest; a few optimiser steps per stage, short answers.
fn manifest(root: &Path) -> String {
    let abs = |p: &str| root.join(p).display().to_string();
    format!(
        r#"
[sweep]
name = "own-data"
store = "store"

[models]
my-clip  = {{ kind = "vision", family = "clip", source = "{clip}", depth = 4 }}
my-llama = {{ kind = "llm", family = "llama", source = "{llama}", layers = 2 }}

[data]
captions     = {{ format = "llava-json", json = "data/pretrain.json", images = "data/images" }}
instructions = {{ json = "data/finetune.json", images = "data/images" }}

[benchmarks]
colors = {{ path = "bench/colors" }}
shapes = {{ path = "bench/shapes", max_new_tokens = 3 }}

[grid]
fusion        = ["E_D", "I_M"]
layers        = ["idx:1-2-3"]
pretrain_data = ["captions"]
sft           = ["instructions"]
include       = [{{ fusion = "baseline" }}]

[pretrain]
lr = 1e-3
warmup_steps = 1
batch = 2
grad_accum = 1
max_steps = 3
max_len = 128

[finetune]
lr = 5e-3
warmup_steps = 1
batch = 2
grad_accum = 1
epochs = 4
max_steps = 8
max_len = 512

[eval]
max_new_tokens = 4

[[table]]
name = "main"
rows = ["fusion", "layers"]
cols = ["benchmark"]

[[table]]
name = "shapes-only"
rows = ["fusion", "layers"]
cols = ["benchmark"]
average = true
where = {{ benchmark = ["shapes"] }}
"#,
        clip = abs("models/clip-tiny"),
        llama = abs("models/llama-tiny"),
    )
}

fn mlvf(root: &Path) -> Command {
    let mut c = Command::cargo_bin("mlvf").unwrap();
    c.current_dir(root)
        .env("MLVF_DEVICE", "cpu")
        .env("HF_HUB_OFFLINE", "1");
    c
}

/// Runs `c`, which must succeed; returns its stdout, and stdout + stderr (for messages).
fn output(c: &mut Command) -> (String, String) {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{c:?} failed:\n{all}");
    (stdout, all)
}

#[test]
fn a_sweep_on_the_users_own_files_runs_tabulates_and_caches() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_datasets(root);
    write_benchmarks(root);
    write_vision_tower(&root.join("models/clip-tiny"));
    write_llm(&root.join("models/llama-tiny"));
    let m = root.join("sweep.toml");
    std::fs::write(&m, manifest(root)).unwrap();

    // 3 cells (baseline, E_D, I_M) × 2 benchmarks: no prepare task, nothing synthetic.
    let plan = mlvf::plan::load(&m, None).unwrap();
    let count = |s: mlvf::plan::StageKind| plan.tasks.iter().filter(|t| t.stage == s).count();
    use mlvf::plan::StageKind::*;
    assert_eq!(
        [
            count(Prepare),
            count(Pretrain),
            count(Finetune),
            count(Eval)
        ],
        [0, 3, 3, 6]
    );

    let (_, run) = output(mlvf(root).args(["run", "sweep.toml", "--no-progress", "-j", "1"]));
    let store = root.join("store");
    for t in &plan.tasks {
        assert!(
            mlvf::store::done::verify(&store, t.stage, &t.key, mlvf::store::VerifyLevel::Fast)
                .is_ok(),
            "{} {} not done:\n{run}",
            t.stage,
            t.key
        );
    }

    // The table: one row per cell, one finite score per benchmark.
    let (csv, _) = output(mlvf(root).args(["results", "sweep.toml", "--format", "csv"]));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header,
        ["fusion", "layers", "colors", "shapes", "best_in"],
        "{csv}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut cells: Vec<String> = rows.iter().map(|r| format!("{}/{}", r[0], r[1])).collect();
    cells.sort();
    assert_eq!(
        cells,
        ["E_D/idx:1-2-3", "I_M/idx:1-2-3", "baseline/-"],
        "{csv}"
    );
    for r in &rows {
        for col in [2, 3] {
            let score: f64 = r[col]
                .parse()
                .unwrap_or_else(|e| panic!("{} in {r:?}: {e}\n{csv}", header[col]));
            assert!(score.is_finite() && (0.0..=100.0).contains(&score), "{r:?}");
        }
    }

    // A table restricted to one benchmark (`where`) has only its column, and its average.
    let (shapes_csv, _) = output(mlvf(root).args([
        "results",
        "sweep.toml",
        "--table",
        "shapes-only",
        "--format",
        "csv",
    ]));
    let header: Vec<&str> = shapes_csv.lines().next().unwrap().split(',').collect();
    assert_eq!(
        header,
        ["fusion", "layers", "shapes", "avg", "best_in"],
        "{shapes_csv}"
    );
    assert_eq!(shapes_csv.lines().count(), 4, "{shapes_csv}");

    // Training read the user's conversations: every finetune's loss fell.
    for t in plan.tasks.iter().filter(|t| t.stage == Finetune) {
        let dir = mlvf::store::layout::task_dir(&store, Finetune, &t.key);
        let loss: Vec<f64> = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|m| m["name"] == "loss")
            .map(|m| m["value"].as_f64().unwrap())
            .collect();
        assert_eq!(loss.len(), 8);
        assert!(loss[7] < loss[0] - 0.3, "{loss:?}");
    }

    // Each eval answered every question of its benchmark, with the benchmark entry's
    // `max_new_tokens` (3 for `shapes`) winning over `[eval]`'s 4.
    for t in plan.tasks.iter().filter(|t| t.stage == Eval) {
        let dir = mlvf::store::layout::task_dir(&store, Eval, &t.key);
        let text = std::fs::read_to_string(dir.join("predictions.jsonl")).unwrap();
        let answers: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|p| p.get("response").is_some())
            .collect();
        let budget = if t.config["benchmark"]["path"]
            .as_str()
            .unwrap()
            .ends_with("shapes")
        {
            3
        } else {
            4
        };
        assert_eq!(answers.len(), 4, "{text}");
        assert!(
            answers.iter().all(|a| a["max_new_tokens"] == budget),
            "{text}"
        );
    }

    // Everything is cached the second time: no task starts an attempt, nothing changes.
    let attempts = || {
        walkdir::WalkDir::new(store.join("logs"))
            .into_iter()
            .count()
    };
    let before = attempts();
    let (_, again) = output(mlvf(root).args(["run", "sweep.toml", "--no-progress", "-j", "1"]));
    assert_eq!(attempts(), before, "the second run started tasks:\n{again}");
    assert!(again.contains("12 tasks: 12 cached, 0 ran"), "{again}");
    let (status, _) = output(mlvf(root).args(["plan", "sweep.toml", "--format", "json"]));
    let status: Value = serde_json::from_str(&status).unwrap();
    for (stage, s) in status["stages"].as_object().unwrap() {
        assert_eq!(s["missing"], 0, "{stage} after the second run:\n{again}");
    }
    assert_eq!(
        output(mlvf(root).args(["results", "sweep.toml", "--format", "csv"])).0,
        csv
    );

    // Without controls, asking for `mg` says where it comes from.
    let (_, note) = output(mlvf(root).args(["results", "sweep.toml", "--metric", "mg"]));
    assert!(
        note.contains("add `controls = [\"blank\"]` to [eval]"),
        "{note}"
    );

    // Grounding controls added to the finished sweep rerun nothing published: the 12 tasks stay
    // cached and only the 3 × 6 control evals run.
    let controlled = manifest(root).replace(
        "max_new_tokens = 4\n",
        "max_new_tokens = 4\ncontrols = [\"blank\", \"shuffle\", \"none\"]\n",
    );
    std::fs::write(&m, controlled).unwrap();
    let (status, _) = output(mlvf(root).args(["plan", "sweep.toml", "--format", "json"]));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["stages"]["eval"],
        json!({"total": 24, "cached": 6, "missing": 18})
    );
    for stage in ["prepare", "encode", "pretrain", "finetune"] {
        assert_eq!(status["stages"][stage]["missing"], 0, "{stage}");
    }
    let (_, run) = output(mlvf(root).args(["run", "sweep.toml", "--no-progress", "-j", "1"]));
    assert!(run.contains("30 tasks: 12 cached, 18 ran"), "{run}");
    assert_eq!(
        output(mlvf(root).args(["results", "sweep.toml", "--format", "csv"])).0,
        csv,
        "the primary table does not change"
    );

    // `--metric mg` tabulates the multi-modal gain per cell as `primary` does.
    for metric in ["mg", "mg_shuffle", "mg_none"] {
        let (table, _) = output(mlvf(root).args([
            "results",
            "sweep.toml",
            "--metric",
            metric,
            "--format",
            "csv",
        ]));
        let mut lines = table.lines();
        assert_eq!(
            lines.next().unwrap(),
            "fusion,layers,colors,shapes,best_in",
            "{table}"
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3, "{table}");
        for r in &rows {
            for v in &r[2..4] {
                let v: f64 = v.parse().unwrap_or_else(|e| panic!("{metric} {r:?}: {e}"));
                assert!((-100.0..=100.0).contains(&v), "{metric} {r:?}");
            }
        }
    }
    // Per cell: each gain is the with-image score minus the score under its control, and every
    // eval carries its majority-answer baseline.
    let (long, _) =
        output(mlvf(root).args(["results", "sweep.toml", "--long", "--format", "json"]));
    let long: Vec<Value> = serde_json::from_str(&long).unwrap();
    let mut by_cell: std::collections::BTreeMap<String, std::collections::HashMap<String, f64>> =
        Default::default();
    for r in &long {
        let cell = format!("{}/{}/{}", r["fusion"], r["layers"], r["benchmark"]);
        if let Some(v) = r["value"].as_f64() {
            by_cell
                .entry(cell)
                .or_default()
                .insert(r["metric"].as_str().unwrap().to_string(), v);
        }
    }
    assert_eq!(by_cell.len(), 6);
    for (cell, m) in &by_cell {
        let s_v = m["primary_score"];
        assert_eq!(m["mg"], s_v - m["blank/primary_score"], "{cell}");
        assert_eq!(m["mg_none"], s_v - m["none/primary_score"], "{cell}");
        assert_eq!(m["mg_shuffle"], s_v - m["shuffle/primary_score"], "{cell}");
        assert_eq!(m["shuffle/unchanged"], 0.0, "{cell}");
        assert!(m.contains_key("majority"), "{cell}: {m:?}");
    }
}
