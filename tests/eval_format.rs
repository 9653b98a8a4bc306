//! The benchmark format contract: fixtures load, images decode like PIL `.convert("RGB")`, and
//! every kind of bad input fails with the file, line and field named.

use mlvf::eval::format::{load_rgb, Benchmark};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
}

/// Copy a fixture benchmark into a temp dir so a test can break it.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    for entry in walkdir::WalkDir::new(fixture(name)) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(fixture(name)).unwrap();
        let target = dst.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    (tmp, dst)
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("manifest.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn edit_line(dir: &Path, line: usize, f: impl FnOnce(&mut Value)) {
    let p = dir.join("data.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut v: Value = serde_json::from_str(&lines[line - 1]).unwrap();
    f(&mut v);
    lines[line - 1] = v.to_string();
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    // The data changed on purpose: drop the checksum so the test reaches the check it targets.
    edit_manifest(dir, |m| {
        m.as_object_mut().unwrap().remove("sha256_data");
    });
}

fn load_err(dir: &Path) -> String {
    format!("{:#}", Benchmark::load(dir).expect_err("load should fail"))
}

#[test]
fn fixture_benchmark_loads() {
    let b = Benchmark::load(&fixture("gqa_mini")).unwrap();
    assert_eq!(b.manifest.task, "gqa_mini");
    assert_eq!(b.samples.len(), 4);
    assert_eq!(b.samples[2].id, "g3");
    assert_eq!(b.samples[2].index, 2);
    assert_eq!(b.manifest.generation.max_new_tokens, 16);
    // Two samples share one stored image (content-addressed).
    assert_eq!(b.samples[0].images, b.samples[1].images);
    let imgs = b.load_images(&b.samples[0]).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].color(), image::ColorType::Rgb8);
    assert_eq!(b.scorer().unwrap().name(), "exact_match_hf");
}

#[test]
fn images_convert_to_rgb_like_pil() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("images/expected_rgb.json")).unwrap(),
    )
    .unwrap();
    for (name, want) in expected.as_object().unwrap() {
        let img = load_rgb(&fixture("images").join(name)).unwrap();
        let rgb = img.to_rgb8();
        let size: Vec<u64> = want["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(
            (rgb.width() as u64, rgb.height() as u64),
            (size[0], size[1]),
            "{name}"
        );
        let want_px: Vec<u8> = want["rgb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        let got_px = rgb.into_raw();
        assert_eq!(got_px.len(), want_px.len(), "{name}");
        if name.ends_with(".png") {
            assert_eq!(
                got_px, want_px,
                "{name} (mode {}) must match PIL exactly",
                want["mode"]
            );
        } else {
            // JPEG decoders may differ by rounding in the IDCT / chroma upsampling.
            let max = got_px
                .iter()
                .zip(&want_px)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(max <= 8, "{name}: max pixel difference to PIL {max}");
        }
    }
}

#[test]
fn wrong_field_type_names_file_line_and_field() {
    let (_t, dir) = scratch("gqa_mini");
    edit_line(&dir, 3, |v| v["answer"] = Value::from(5));
    let e = load_err(&dir);
    assert!(
        e.contains("data.jsonl line 3")
            && e.contains("field `answer`")
            && e.contains("expected a string"),
        "{e}"
    );
}

#[test]
fn missing_required_field_is_reported() {
    let (_t, dir) = scratch("gqa_mini");
    edit_line(&dir, 2, |v| {
        v.as_object_mut().unwrap().remove("prompt");
    });
    let e = load_err(&dir);
    assert!(
        e.contains("line 2") && e.contains("field `prompt`") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn broken_json_line_is_reported() {
    let (_t, dir) = scratch("gqa_mini");
    let p = dir.join("data.jsonl");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("{\"id\": \"g5\", \n");
    std::fs::write(&p, text).unwrap();
    edit_manifest(&dir, |m| {
        m.as_object_mut().unwrap().remove("sha256_data");
    });
    let e = load_err(&dir);
    assert!(
        e.contains("line 5") && e.contains("not a JSON object"),
        "{e}"
    );
}

#[test]
fn checksum_mismatch_is_caught() {
    let (_t, dir) = scratch("gqa_mini");
    let p = dir.join("data.jsonl");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"red\"", "\"blue\"");
    std::fs::write(&p, text).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("sha256") && e.contains("sha256_data"), "{e}");
}

#[test]
fn count_mismatch_is_caught() {
    let (_t, dir) = scratch("gqa_mini");
    edit_manifest(&dir, |m| m["count"] = Value::from(5));
    let e = load_err(&dir);
    assert!(
        e.contains("count = 5") && e.contains("has 4 records"),
        "{e}"
    );
}

#[test]
fn unknown_scorer_suggests_the_closest() {
    let (_t, dir) = scratch("gqa_mini");
    edit_manifest(&dir, |m| m["scorer"] = Value::from("exact_match_fh"));
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("unknown scorer") && e.contains("exact_match_hf"),
        "{e}"
    );
}

#[test]
fn primary_must_be_a_metric_of_the_scorer() {
    let (_t, dir) = scratch("gqa_mini");
    edit_manifest(&dir, |m| m["report"]["primary"] = Value::from("accuracy"));
    let e = load_err(&dir);
    assert!(
        e.contains("report.primary") && e.contains("exact_match"),
        "{e}"
    );
}

/// A manifest written by another tool may leave `report` out: it defaults to the scorer's
/// lmms-eval headline metric on the paper's scale, and an explicit one is still checked.
#[test]
fn a_missing_report_defaults_to_the_scorers_headline_metric() {
    let (_t, dir) = scratch("gqa_mini");
    edit_manifest(&dir, |m| {
        m.as_object_mut().unwrap().remove("report");
    });
    let b = Benchmark::load(&dir).unwrap();
    assert_eq!(b.manifest.report.primary, "exact_match");
    assert_eq!(b.manifest.report.scale, 100.0, "a fraction goes to 0–100");
    let (_t2, mme) = scratch("mme_mini");
    edit_manifest(&mme, |m| {
        m.as_object_mut().unwrap().remove("report");
    });
    let b = Benchmark::load(&mme).unwrap();
    assert_eq!(
        (b.manifest.report.primary.as_str(), b.manifest.report.scale),
        ("mme_perception_score", 1.0),
        "MME's sums are reported as they are"
    );
    edit_manifest(&dir, |m| {
        m["report"] = serde_json::json!({"primary": ""});
    });
    assert!(load_err(&dir).contains("report.primary"));
}

#[test]
fn wrong_format_id_is_rejected() {
    let (_t, dir) = scratch("gqa_mini");
    edit_manifest(&dir, |m| m["format"] = Value::from("mmeval-jsonl/2"));
    let e = load_err(&dir);
    assert!(
        e.contains("field `format`") && e.contains("mmeval-jsonl/1"),
        "{e}"
    );
}

#[test]
fn missing_and_escaping_images_are_rejected() {
    let (_t, dir) = scratch("gqa_mini");
    edit_line(&dir, 1, |v| {
        v["images"] = serde_json::json!(["images/nope.png"])
    });
    let e = load_err(&dir);
    assert!(e.contains("line 1") && e.contains("does not exist"), "{e}");

    let (_t2, dir2) = scratch("gqa_mini");
    edit_line(&dir2, 1, |v| {
        v["images"] = serde_json::json!(["../gqa_mini/images/x.png"])
    });
    let e = load_err(&dir2);
    assert!(e.contains("relative path inside"), "{e}");
}

#[test]
fn duplicate_ids_are_rejected() {
    let (_t, dir) = scratch("gqa_mini");
    edit_line(&dir, 2, |v| v["id"] = Value::from("g1"));
    let e = load_err(&dir);
    assert!(e.contains("line 2") && e.contains("duplicate id"), "{e}");
}

#[test]
fn numeric_ids_and_groups_become_text() {
    let (_t, dir) = scratch("gqa_mini");
    edit_line(&dir, 1, |v| {
        v["id"] = Value::from(201307251u64);
        v["group"] = Value::from(7);
    });
    let b = Benchmark::load(&dir).unwrap();
    assert_eq!(b.samples[0].id, "201307251");
    assert_eq!(b.samples[0].group.as_deref(), Some("7"));
}

#[test]
fn unknown_scorer_version_is_rejected() {
    let (_t, dir) = scratch("gqa_mini");
    edit_manifest(&dir, |m| m["scorer_version"] = Value::from("classic-v9"));
    let e = load_err(&dir);
    assert!(
        e.contains("scorer_version") && e.contains("classic-v0.4"),
        "{e}"
    );
}

#[test]
fn a_misspelt_scorer_option_is_rejected_instead_of_ignored() {
    let (_t, dir) = scratch("gqa_mini");
    edit_manifest(&dir, |m| {
        m["scorer_options"] = serde_json::json!({"normalization": "evalai_full"})
    });
    let e = load_err(&dir);
    assert!(
        e.contains("scorer_options.normalization") && e.contains("exact_match_hf"),
        "{e}"
    );
}

#[test]
fn benchmark_writer_round_trips_through_the_loader() {
    use mlvf::eval::format::{BenchmarkManifest, BenchmarkWriter, Sample};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synth_pope");
    let manifest: BenchmarkManifest = serde_json::from_value(serde_json::json!({
        "format": "mmeval-jsonl/1", "task": "synth_pope", "count": 0,
        "generation": {"max_new_tokens": 8}, "scorer": "pope_exact", "report": {"primary": "pope_f1_score", "scale": 100}
    }))
    .unwrap();
    let mut w = BenchmarkWriter::new(&dir, manifest).unwrap();
    let img =
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(5, 4, image::Rgb([9, 99, 199])));
    let path = w.add_image(&img).unwrap();
    assert_eq!(
        w.add_image(&img).unwrap(),
        path,
        "same pixels, same stored file"
    );
    for (i, answer) in ["yes", "no"].iter().enumerate() {
        w.push(&Sample {
            subset: Some("random".into()),
            ..Sample::new(
                format!("s{i}"),
                vec![path.clone()],
                format!(
                    "Is there a thing {i}?\nAnswer the question using a single word or phrase."
                ),
                answer.to_string(),
            )
        })
        .unwrap();
    }
    let bench = w.finish().unwrap();
    assert_eq!((bench.manifest.count, bench.samples.len()), (2, 2));
    assert!(bench.manifest.sha256_data.is_some());
    let back = bench.load_images(&bench.samples[1]).unwrap();
    assert_eq!(back[0].to_rgb8(), img.to_rgb8());
    assert_eq!(std::fs::read_dir(dir.join("images")).unwrap().count(), 1);
    // Nothing is left behind next to it.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    // The manifest reads like the format's examples: a whole scale as an integer, no empty
    // `scorer_options`.
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(text.contains("\"scale\": 100\n"), "{text}");
    assert!(!text.contains("scorer_options"), "{text}");
    let mut m = bench.manifest.clone();
    m.report.scale = 0.5;
    m.scorer_options
        .insert("normalize".into(), "punct_digit".into());
    let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(v["report"]["scale"], 0.5);
    assert_eq!(v["scorer_options"]["normalize"], "punct_digit");
}
