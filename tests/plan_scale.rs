//! Planning a 10⁵-cell grid stays within memory (run with `cargo test --release --test
//! plan_scale -- --ignored`; slow in debug builds).

use std::time::Instant;

#[test]
#[ignore = "plans 10^5 cells; seconds in release, much longer in debug"]
fn a_hundred_thousand_cells_plan_in_under_a_gib() {
    let dir = tempfile::tempdir().unwrap();
    let paper = std::fs::read_to_string("experiments/paper.toml").unwrap();
    let seeds: Vec<String> = (0..75).map(|s| s.to_string()).collect();
    let text = paper
        .replace("store = \"../results\"", "store = \"store\"")
        .replace(
            "seed          = [0]",
            &format!("seed = [{}]", seeds.join(", ")),
        );
    let p = dir.path().join("big.toml");
    std::fs::write(&p, text).unwrap();
    let t = Instant::now();
    let plan = mlvf::plan::load(&p, None).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(plan.cells.len(), 75 * 1400);
    assert_eq!(
        plan.tasks
            .iter()
            .filter(|t| t.stage == mlvf::plan::StageKind::Pretrain)
            .count(),
        75 * 92
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    println!(
        "{} cells, {} tasks: {secs:.2} s, peak RSS {:.0} MiB",
        plan.cells.len(),
        plan.tasks.len(),
        hwm_kb / 1024.0
    );
    assert!(hwm_kb < 1024.0 * 1024.0, "peak RSS {hwm_kb} kB ≥ 1 GiB");
}
