//! Same config → byte-identical world, whatever the number of threads; bad input fails cleanly.

use mlvf::synth::{self, SynthConfig};
use std::collections::BTreeMap;
use std::path::Path;
use walkdir::WalkDir;

fn small() -> SynthConfig {
    SynthConfig {
        n_pretrain: 40,
        n_finetune: 40,
        n_per_benchmark: 24,
        seed: 11,
        ..SynthConfig::for_scale(synth::Scale::Test)
    }
}

fn generate_with_threads(cfg: &SynthConfig, out: &Path, threads: usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| synth::generate(cfg, out)).unwrap();
}

fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn same_config_gives_byte_identical_files_on_one_and_three_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    generate_with_threads(&small(), &a, 1);
    generate_with_threads(&small(), &b, 3);
    let (ta, tb) = (tree(&a), tree(&b));
    assert!(ta.len() > 100, "only {} files", ta.len());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (path, bytes) in &ta {
        assert!(bytes == &tb[path], "{path} differs between runs");
    }
}

#[test]
fn a_different_seed_gives_a_different_world() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    synth::generate(&small(), &a).unwrap();
    synth::generate(
        &SynthConfig {
            seed: 12,
            ..small()
        },
        &b,
    )
    .unwrap();
    let read = |p: &Path| std::fs::read(p.join("pretrain/captions.json")).unwrap();
    assert_ne!(read(&a), read(&b));
}

#[test]
fn refuses_a_non_empty_destination_and_leaves_no_partial_world() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("busy");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let err = synth::generate(&small(), &out).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    // An invalid config fails before anything is written.
    let bad = SynthConfig {
        max_objects: 9,
        ..small()
    };
    let err = synth::generate(&bad, &tmp.path().join("bad"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_objects = 9"), "{err}");
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["busy"], "left behind: {names:?}");
}

/// The quickstart world's generation time (the default `tiny` scale). Ignored by default: it is a
/// figure to report (`cargo test --test synth_determinism -- --ignored --nocapture`), and wall time
/// on a shared machine says little.
#[test]
#[ignore]
fn tiny_scale_generation_time() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig::default();
    let start = std::time::Instant::now();
    let world = synth::generate(&cfg, &tmp.path().join("w")).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let records: usize = world.benchmarks.iter().map(|b| b.records).sum();
    eprintln!(
        "tiny world: {} pretrain + {} finetune + {records} benchmark records in {secs:.1}s on {} threads",
        world.pretrain.records,
        world.finetune.records,
        rayon::current_num_threads()
    );
    assert!(secs < 300.0, "generation took {secs:.0}s");
}
