//! The Slurm executor against a real Slurm (scripts/local-slurm.sh start; SLURM_CONF set):
//! a sweep of fake stages submitted as job arrays equals a local run; a `scancel`led job is
//! recovered by the next `run`; a failing task cancels only its dependents; USR1 before the
//! time limit checkpoints and requeues.
//!
//! Without a reachable cluster every test passes with "skipped (no slurm)" printed, unless
//! `MLVF_REQUIRE_SLURM=1` (CI), where that is a failure.
//!
//! `harness = false`: like tests/resume.rs this binary is also the mlvf CLI with fake stages
//! (`MLVF_TEST_AS_CLI`); sbatch exports the controller's environment, so the jobs run it too.

#[path = "common/fake.rs"]
mod fake;

use fake::*;
use libtest_mimic::{Arguments, Failed, Trial};
use mlvf::exec::slurm::preempt;
use mlvf::plan::{Plan, StageKind, Task};
use mlvf::stages::{Stage, StageContext};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

/// Wraps the fake stage: with `MLVF_FAKE_PREEMPTIBLE` set, a prepare task waits (up to 60 s)
/// for a checkpoint request, checkpoints and stops; its resumed run finishes.
struct PreemptibleStage;

impl Stage for PreemptibleStage {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> anyhow::Result<()> {
        if std::env::var_os("MLVF_FAKE_PREEMPTIBLE").is_some() {
            let marker = ctx.checkpoint_dir.join("state");
            if !marker.exists() {
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if preempt::requested() {
                        std::fs::write(&marker, "half way")?;
                        return Err(preempt::Preempted.into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                anyhow::bail!("no checkpoint request came");
            }
        }
        FakeStage.run(task, ctx)
    }
}

fn slurm_available() -> Result<bool, Failed> {
    let ok = std::env::var_os("SLURM_CONF").is_some()
        && Command::new("sinfo")
            .arg("-h")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("MLVF_REQUIRE_SLURM").as_deref() == Ok("1") {
            return Err("MLVF_REQUIRE_SLURM=1 but no Slurm cluster answers (set SLURM_CONF; scripts/local-slurm.sh start)".into());
        }
        eprintln!("skipped (no slurm: set SLURM_CONF to a running cluster, e.g. scripts/local-slurm.sh start)");
    }
    Ok(ok)
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small study-shaped sweep (1 prepare, 3 pretrain, 6 eval) under `dir/<name>`, with an
/// `[executor]` that polls fast.
fn sweep(dir: &Path, name: &str) -> (Plan, PathBuf) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut plan = fake_plan(
        &d.join("store"),
        name,
        &["E_D", "I_D"],
        &["18"],
        &["gqa", "pope"],
        &[0],
    );
    // The executor reads `[executor]` from the plan (as the manifest loader put it there).
    let executor: toml::Table = "kind = \"slurm\"\npoll_s = 0.5\ncpus = 1\ntime = \"10\"\n"
        .parse()
        .unwrap();
    plan.executor = toml::Value::Table(executor).try_into().unwrap();
    let json = save_plan(&d, &plan);
    (plan, json)
}

fn local_reference(dir: &Path, plan: &Plan) -> Result<(Vec<String>, Vec<String>), Failed> {
    let mut r = plan.clone();
    r.store = dir.join("reference-store");
    r.executor = Default::default();
    let json = save_plan(&dir.join("ref"), &{
        std::fs::create_dir_all(dir.join("ref"))?;
        r.clone()
    });
    let out = cli()
        .args(["run", "--no-progress", "--jobs", "2", "--plan-json"])
        .arg(&json)
        .output()?;
    if !out.status.success() {
        return Err(format!("local reference run failed: {}", text(&out)).into());
    }
    Ok(db_results(&r.store))
}

fn slurm_run(json: &Path, wait: bool, env: &[(&str, &str)]) -> Result<Output, Failed> {
    let mut c = cli();
    c.args(["run", "--no-progress", "--executor", "slurm", "--plan-json"])
        .arg(json)
        .env("MLVF_FAKE_SLEEP_MS", "50");
    if wait {
        c.arg("--wait");
    }
    for (k, v) in env {
        c.env(k, v);
    }
    Ok(c.output()?)
}

fn records(store: &Path) -> Vec<mlvf::exec::slurm::jobs::JobRecord> {
    let mut v: Vec<_> = mlvf::exec::slurm::jobs::latest(store)
        .unwrap()
        .into_values()
        .collect();
    v.sort_by(|a, b| a.job.cmp(&b.job));
    v
}

fn squeue_state(job: &str) -> String {
    let o = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{job} ")).map(str::to_string))
        .unwrap_or_default()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("timed out after {secs} s waiting for {what}").into())
}

fn sweep_equals_local_run() -> Result<(), Failed> {
    if !slurm_available()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (plan, json) = sweep(dir.path(), "equal");
    let reference = local_reference(dir.path(), &plan)?;
    // A dry run checks each script with `sbatch --test-only` and submits nothing.
    let out = cli()
        .args(["run", "--executor", "slurm", "--dry-run", "--plan-json"])
        .arg(&json)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out).matches("to start at").count(),
        4,
        "{}",
        text(&out)
    );
    assert!(!mlvf::exec::slurm::jobs::jobs_path(&plan.store).exists());
    let t0 = Instant::now();
    let out = slurm_run(&json, true, &[])?;
    if !out.status.success() {
        return Err(format!("slurm run failed: {}", text(&out)).into());
    }
    eprintln!(
        "slurm sweep of {} tasks: {:.1} s",
        plan.tasks.len(),
        t0.elapsed().as_secs_f64()
    );
    let recs = records(&plan.store);
    assert_eq!(recs.len(), plan.tasks.len(), "every task submitted once");
    let arrays: std::collections::BTreeSet<_> = recs.iter().map(|r| &r.array_job).collect();
    assert_eq!(
        arrays.len(),
        4,
        "prepare, pretrain, two aligned eval arrays"
    );
    assert_eq!(
        db_results(&plan.store),
        reference,
        "slurm results differ from a local run's"
    );
    // Job ids are in the attempts; logs are in the attempt dirs.
    let conn = rusqlite::Connection::open(plan.store.join("mlvf.sqlite"))?;
    let with_job: i64 = conn.query_row(
        "SELECT COUNT(*) FROM attempts WHERE job_id IS NOT NULL AND state = 'succeeded'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(with_job as usize, plan.tasks.len());
    let log = mlvf::store::layout::log_path(&plan.store, &plan.tasks[0].key, 1);
    let log = std::fs::read_to_string(&log)?;
    assert!(
        log.contains("mlvf: slurm job") && log.contains("published"),
        "{log}"
    );
    // A second run submits nothing.
    let out = slurm_run(&json, false, &[])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} done, 0 submitted", plan.tasks.len())),
        "{}",
        text(&out)
    );
    Ok(())
}

fn scancel_is_recovered_by_run() -> Result<(), Failed> {
    if !slurm_available()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (plan, json) = sweep(dir.path(), "scancel");
    let reference = local_reference(dir.path(), &plan)?;
    let out = slurm_run(&json, false, &[])?;
    assert!(out.status.success(), "{}", text(&out));
    // Cancel the second pretrain while it waits or runs.
    let victim = records(&plan.store)
        .into_iter()
        .filter(|r| r.stage == StageKind::Pretrain)
        .nth(1)
        .unwrap();
    assert!(
        !squeue_state(&victim.job).is_empty(),
        "{} should be queued",
        victim.job
    );
    let status = cli().args(["status", "--plan-json"]).arg(&json).output()?;
    assert!(text(&status).contains("  slurm: "), "{}", text(&status));
    let st = Command::new("scancel").arg(&victim.job).status()?;
    assert!(st.success());
    // A second controller while the rest is in flight: resubmits only what the cancel killed.
    let out = slurm_run(&json, false, &[])?;
    assert!(out.status.success(), "{}", text(&out));
    let resubmitted: Vec<_> = records(&plan.store)
        .into_iter()
        .filter(|r| r.attempt == 2)
        .map(|r| r.key)
        .collect();
    assert!(resubmitted.contains(&victim.key), "{}", text(&out));
    let evals_of_victim = plan
        .tasks
        .iter()
        .filter(|t| t.deps.contains(&victim.key))
        .count();
    assert!(
        resubmitted.len() <= 1 + evals_of_victim,
        "only the cancelled pretrain and its evals may be resubmitted, got {resubmitted:?}\n{}",
        text(&out)
    );
    let out = slurm_run(&json, true, &[])?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(db_results(&plan.store), reference);
    Ok(())
}

fn failing_task_cancels_its_dependents() -> Result<(), Failed> {
    if !slurm_available()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (plan, json) = sweep(dir.path(), "failing");
    let bad = plan
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Pretrain)
        .unwrap();
    let out = slurm_run(&json, true, &[("MLVF_FAKE_FAIL", bad.key.short())])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let dependents: Vec<_> = plan
        .tasks
        .iter()
        .filter(|t| t.deps.contains(&bad.key))
        .collect();
    assert!(!dependents.is_empty());
    let report = text(&out);
    assert!(
        report.contains(&format!("{} failed", 1 + dependents.len())),
        "{report}"
    );
    assert!(report.contains("fake failure"), "{report}");
    for d in &dependents {
        assert!(report.contains(&d.key.0), "{report}");
        assert!(mlvf::store::done::verify(
            &plan.store,
            d.stage,
            &d.key,
            mlvf::store::VerifyLevel::Fast
        )
        .is_err());
    }
    // Everything else finished.
    let done = plan
        .tasks
        .iter()
        .filter(|t| {
            mlvf::store::done::verify(&plan.store, t.stage, &t.key, mlvf::store::VerifyLevel::Fast)
                .is_ok()
        })
        .count();
    assert_eq!(done, plan.tasks.len() - 1 - dependents.len());
    let status = cli().args(["status", "--plan-json"]).arg(&json).output()?;
    assert!(
        text(&status).contains("failed: pretrain"),
        "{}",
        text(&status)
    );
    // Fixed: the next run redoes exactly those.
    let out = slurm_run(&json, true, &[])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} submitted", 1 + dependents.len())),
        "{}",
        text(&out)
    );
    Ok(())
}

fn wait_with_retries_resubmits_a_transient_failure() -> Result<(), Failed> {
    if !slurm_available()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (plan, json) = sweep(dir.path(), "retry");
    let flaky = plan
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Pretrain)
        .unwrap();
    let c = cli()
        .args([
            "run",
            "--no-progress",
            "--executor",
            "slurm",
            "--wait",
            "--retries",
            "1",
            "--plan-json",
        ])
        .arg(&json)
        .env("MLVF_FAKE_SLEEP_MS", "50")
        .env("MLVF_FAKE_FAIL_ONCE", flaky.key.short())
        .output()?;
    assert!(c.status.success(), "{}", text(&c));
    assert!(text(&c).contains("resubmitted"), "{}", text(&c));
    let rec = mlvf::store::done::verify(
        &plan.store,
        flaky.stage,
        &flaky.key,
        mlvf::store::VerifyLevel::Fast,
    )?;
    assert_eq!(rec.attempt, 2);
    let conn = rusqlite::Connection::open(plan.store.join("mlvf.sqlite"))?;
    let failed: String = conn.query_row(
        "SELECT state FROM attempts WHERE task = ?1 AND attempt = 1",
        [&flaky.key.0],
        |r| r.get(0),
    )?;
    assert_eq!(failed, "failed");
    Ok(())
}

fn usr1_checkpoints_and_requeues() -> Result<(), Failed> {
    if !slurm_available()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (mut plan, _) = sweep(dir.path(), "preempt");
    plan.tasks.truncate(1); // just the prepare task
    plan.cells.clear();
    plan.tasks[0].cells.clear();
    let json = save_plan(&dir.path().join("preempt"), &plan);
    let env = [("MLVF_FAKE_PREEMPTIBLE", "1")];
    let out = slurm_run(&json, false, &env)?;
    assert!(out.status.success(), "{}", text(&out));
    let job = records(&plan.store)[0].job.clone();
    wait_for("the job to run", 30, || squeue_state(&job) == "RUNNING")?;
    let key = &plan.tasks[0].key;
    let log = mlvf::store::layout::log_path(&plan.store, key, 1);
    wait_for("the worker to start", 30, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("running prepare"))
    })?;
    // What Slurm does `signal_lead_s` before the time limit.
    let st = Command::new("scancel")
        .args(["--signal=USR1", "--batch", &job])
        .status()?;
    assert!(st.success());
    let out = slurm_run(&json, true, &env)?;
    assert!(out.status.success(), "{}", text(&out));
    let rec = mlvf::store::done::verify(
        &plan.store,
        StageKind::Prepare,
        key,
        mlvf::store::VerifyLevel::Full,
    )?;
    assert_eq!(rec.attempt, 1, "the requeued job continues attempt 1");
    let log = std::fs::read_to_string(&log)?;
    assert!(log.contains("requeueing job"), "{log}");
    assert!(log.contains("restart 1"), "{log}");
    Ok(())
}

fn main() -> ExitCode {
    if std::env::var_os("MLVF_TEST_AS_CLI").is_some() {
        let mut reg = fake_registry();
        reg.register(StageKind::Prepare, Box::new(PreemptibleStage));
        return mlvf::cli::main_with(reg);
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("sweep_equals_local_run", sweep_equals_local_run),
        Trial::test("scancel_is_recovered_by_run", scancel_is_recovered_by_run),
        Trial::test(
            "failing_task_cancels_its_dependents",
            failing_task_cancels_its_dependents,
        ),
        Trial::test(
            "wait_with_retries_resubmits_a_transient_failure",
            wait_with_retries_resubmits_a_transient_failure,
        ),
        Trial::test(
            "usr1_checkpoints_and_requeues",
            usr1_checkpoints_and_requeues,
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
