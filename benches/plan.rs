//! Planning speed: experiments/paper.toml (goal < 100 ms) and a generated 10⁵-cell grid
//! (goal < 3 s and < 1 GiB peak RSS, printed from /proc/self/status VmHWM before the timings).
//!
//! `cargo bench --bench plan -- --quick`

use criterion::Criterion;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A paper-shaped grid with `seeds` seeds: 1344 cells per seed (+ baselines via include).
fn big_manifest(dir: &Path, seeds: usize) -> PathBuf {
    let paper = std::fs::read_to_string("experiments/paper.toml").unwrap();
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    let text = paper
        .replace("store = \"../results\"", "store = \"store\"")
        .replace(
            "seed          = [0]",
            &format!("seed = [{}]", seeds.join(", ")),
        )
        .replace("\"../", "\"");
    let p = dir.join("big.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU seconds of this process (wall time on a shared machine overstates cost).
fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // 75 seeds × (1344 + 56) cells = 105 000 cells.
    let big = big_manifest(dir.path(), 75);
    let before = peak_rss_mib().unwrap_or(0.0);
    let t = Instant::now();
    let cpu = cpu_seconds();
    let plan = mlvf::plan::load(&big, None).unwrap();
    let elapsed = t.elapsed();
    let cpu = cpu_seconds() - cpu;
    println!(
        "one-shot: {} cells, {} tasks planned in {:.3} s wall, {:.3} s CPU; peak RSS {:.0} MiB (before {:.0} MiB)",
        plan.cells.len(),
        plan.tasks.len(),
        elapsed.as_secs_f64(),
        cpu,
        peak_rss_mib().unwrap_or(0.0),
        before
    );
    drop(plan);
    let paper = Path::new("experiments/paper.toml");
    let cpu = cpu_seconds();
    let t = Instant::now();
    for _ in 0..10 {
        mlvf::plan::load(paper, None).unwrap();
    }
    println!(
        "one-shot: paper.toml planned in {:.1} ms wall, {:.1} ms CPU (mean of 10)",
        t.elapsed().as_secs_f64() * 100.0,
        (cpu_seconds() - cpu) * 100.0
    );

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    c.bench_function("plan paper.toml", |b| {
        b.iter(|| mlvf::plan::load(Path::new("experiments/paper.toml"), None).unwrap())
    });
    c.bench_function("plan 1e5-cell grid", |b| {
        b.iter(|| mlvf::plan::load(&big, None).unwrap())
    });
    c.final_summary();
}
