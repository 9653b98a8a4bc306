//! Resume: kill the controller (SIGKILL) at several points of a sweep of fake stages, then
//! show that a new `run` finishes it, that no task ran again after it was published, and that
//! the final database (tasks, metrics) equals an uninterrupted run's.
//!
//! `harness = false`: with `MLVF_TEST_AS_CLI` set this binary is the mlvf CLI with fake stages
//! (see tests/common/fake.rs), and the controllers and workers the test spawns are itself.

#[path = "common/fake.rs"]
mod fake;

use fake::*;
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

fn run_sweep_to_end(plan_json: &Path, fake_log: &Path) -> Result<(), Failed> {
    let out = cli()
        .args(["run", "--no-progress", "--jobs", "2", "--plan-json"])
        .arg(plan_json)
        .env("MLVF_FAKE_LOG", fake_log)
        .env("MLVF_FAKE_SLEEP_MS", "15")
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "run failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn count_ends(log: &Path) -> usize {
    fake_log(log)
        .iter()
        .filter(|l| l.starts_with("end "))
        .count()
}

fn killed_controller_resumes() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let fusions = ["E_D", "E_M", "I_D"];
    let layers = ["18", "all"];
    let benches = ["gqa", "pope"];
    let reference = fake_plan(
        &dir.path().join("ref"),
        "resume",
        &fusions,
        &layers,
        &benches,
        &[0],
    );
    let n = reference.tasks.len();
    assert!(
        n > 20,
        "the sweep should be big enough to kill mid-way ({n} tasks)"
    );
    let ref_json = save_plan(dir.path(), &reference);
    let ref_log = dir.path().join("ref.log");
    run_sweep_to_end(&ref_json, &ref_log)?;
    assert_eq!(count_ends(&ref_log), n);

    let store = dir.path().join("killed");
    let mut plan = reference.clone();
    plan.store = store.clone();
    std::fs::create_dir_all(dir.path().join("k"))?;
    let plan_json = save_plan(&dir.path().join("k"), &plan);
    let log = dir.path().join("killed.log");
    for kill_after in [1, 6, 14, 22] {
        let mut child = cli()
            .args(["run", "--no-progress", "--jobs", "2", "--plan-json"])
            .arg(&plan_json)
            .env("MLVF_FAKE_LOG", &log)
            .env("MLVF_FAKE_SLEEP_MS", "40")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while count_ends(&log) < kill_after && Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill()?; // SIGKILL
        child.wait()?;
    }
    // Let workers orphaned by the last kill die (PR_SET_PDEATHSIG) before resuming.
    std::thread::sleep(Duration::from_millis(50));
    let before_final = fake_log(&log).len();
    run_sweep_to_end(&plan_json, &log)?;
    assert!(
        fake_log(&log).len() > before_final,
        "the kills should have left work to do"
    );

    // Every task is published, and no attempt of a task started after the one that published it.
    let mut max_start: HashMap<String, u32> = HashMap::new();
    for line in fake_log(&log) {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0] == "start" {
            let a: u32 = parts[2].parse()?;
            let e = max_start.entry(parts[1].to_string()).or_default();
            *e = (*e).max(a);
        }
    }
    for t in &plan.tasks {
        let rec =
            mlvf::store::done::verify(&store, t.stage, &t.key, mlvf::store::VerifyLevel::Full)
                .map_err(|e| format!("{} not done after resume: {e}", t.key))?;
        let latest = max_start.get(&t.key.0).copied().unwrap_or(0);
        if latest > rec.attempt {
            return Err(format!(
                "task {} ran again (attempt {latest}) after attempt {} published it",
                t.key, rec.attempt
            )
            .into());
        }
    }
    assert_eq!(
        db_results(&store),
        db_results(&reference.store),
        "database differs from an uninterrupted run's"
    );

    // Attempts the kills cut short are recorded as killed, not left running.
    let conn = rusqlite::Connection::open(store.join("mlvf.sqlite"))?;
    let running: i64 = conn.query_row(
        "SELECT COUNT(*) FROM attempts WHERE state = 'running'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(running, 0);
    let killed: i64 = conn.query_row(
        "SELECT COUNT(*) FROM attempts WHERE state = 'killed'",
        [],
        |r| r.get(0),
    )?;
    assert!(
        killed >= 1,
        "expected attempts cut short by the kills to be recorded as killed"
    );

    // A further run is a no-op: nothing starts.
    let before = fake_log(&log).len();
    run_sweep_to_end(&plan_json, &log)?;
    assert_eq!(
        fake_log(&log).len(),
        before,
        "a fully cached sweep ran tasks again"
    );
    Ok(())
}

/// The no-op resume benchmark: a fully cached sweep of ≥ 2,000 tasks. Publishes every task
/// in-process (no workers), lets one `run` ingest them, then times further runs: the library
/// call and the whole CLI (process start, plan parsing, lock, verification of every DONE).
/// `cargo test --test resume -- --ignored --nocapture noop_resume`
fn noop_resume_2000_tasks() -> Result<(), Failed> {
    // MLVF_BENCH_DIR keeps the store between runs (publishing 2,000 tasks takes a while).
    let tmp = tempfile::tempdir()?;
    let dir_path = std::env::var_os("MLVF_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = dir_path.as_deref().unwrap_or(tmp.path());
    std::fs::create_dir_all(dir)?;
    let fusions = ["E_D", "E_M", "I_D", "I_M"];
    let layers = ["18", "3-18", "3-18-23", "former", "latter", "all"];
    let benches = [
        "gqa", "pope", "mme", "mmb", "sqa", "textvqa", "vizwiz", "seed",
    ];
    let seeds: Vec<u64> = (0..9).collect();
    let plan = fake_plan(
        &dir.join("store"),
        "bench",
        &fusions,
        &layers,
        &benches,
        &seeds,
    );
    assert!(plan.tasks.len() >= 2000, "{} tasks", plan.tasks.len());
    std::env::set_var("MLVF_FAKE_SLEEP_MS", "0");
    let registry = fake_registry();
    for t in &plan.tasks {
        mlvf::store::spec::write_spec(&plan.store, &mlvf::db::canonical_spec(t))?;
    }
    for t in &plan.tasks {
        mlvf::exec::worker::run_task(&plan.store, &t.key, Some(1), &registry)?;
    }
    let mut opts = mlvf::exec::RunOptions::new()?;
    opts.progress = false;
    let first = mlvf::exec::run_sweep(&plan, &opts)?;
    assert_eq!(first.cached, plan.tasks.len());
    let mut lib_ms = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let s = mlvf::exec::run_sweep(&plan, &opts)?;
        lib_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!((s.cached, s.ran), (plan.tasks.len(), 0));
    }
    let json = save_plan(dir, &plan);
    let mut cli_ms = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let out = cli()
            .args(["run", "--no-progress", "--plan-json"])
            .arg(&json)
            .output()?;
        cli_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "no-op resume of {} cached tasks: run_sweep median {:.1} ms, `mlvf run` (whole process) median {:.1} ms",
        plan.tasks.len(),
        median(&mut lib_ms),
        median(&mut cli_ms)
    );
    Ok(())
}

fn main() -> ExitCode {
    if let Some(code) = run_as_cli_if_asked() {
        return code;
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("killed_controller_resumes", killed_controller_resumes),
        Trial::test("noop_resume_2000_tasks", noop_resume_2000_tasks).with_ignored_flag(true),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
