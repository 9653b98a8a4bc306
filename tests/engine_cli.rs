//! The engine end to end through the CLI: failures, retries, the store lock, corrupted
//! results, Ctrl-C, result tables, db rebuild and gc. Fake stages (tests/common/fake.rs); the
//! controller and its workers are this test binary run as the mlvf CLI (`harness = false`).

#[path = "common/fake.rs"]
mod fake;

use fake::*;
use libtest_mimic::{Arguments, Failed, Trial};
use mlvf::plan::{Plan, StageKind};
use std::path::Path;
use std::process::{ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `run --plan-json` of `plan` with the given extra env and args.
fn run(plan_json: &Path, log: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = cli();
    c.args(["run", "--no-progress", "--plan-json"])
        .arg(plan_json)
        .args(args)
        .env("MLVF_FAKE_LOG", log);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn setup(
    dir: &Path,
    benches: &[&str],
    seeds: &[u64],
) -> (Plan, std::path::PathBuf, std::path::PathBuf) {
    let plan = fake_plan(
        &dir.join("store"),
        "demo",
        &["E_D", "I_D"],
        &["18", "all"],
        benches,
        seeds,
    );
    let json = save_plan(dir, &plan);
    (plan, json, dir.join("fake.log"))
}

fn started(log: &Path, key: &str) -> usize {
    fake_log(log)
        .iter()
        .filter(|l| l.starts_with(&format!("start {key}")))
        .count()
}

fn failure_blocks_only_dependents() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa", "pope"], &[0]);
    let bad = plan
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Pretrain && t.config["fusion"] == "I_D")
        .unwrap();
    let out = run(
        &json,
        &log,
        &[("MLVF_FAKE_FAIL", &bad.key.0[..16])],
        &["--jobs", "2"],
    );
    check(out.status.code() == Some(1), || {
        format!("expected exit 1: {}", text(&out))
    })?;
    check(text(&out).contains("1 failed, 2 blocked"), || text(&out))?;
    let dependents: Vec<_> = plan
        .tasks
        .iter()
        .filter(|t| t.deps.contains(&bad.key))
        .collect();
    check(!dependents.is_empty(), || {
        "the failing task should have dependents".into()
    })?;
    for d in &dependents {
        check(started(&log, &d.key.0) == 0, || {
            format!("dependent {} ran", d.key)
        })?;
    }
    let done = plan
        .tasks
        .iter()
        .filter(|t| {
            mlvf::store::done::verify(&plan.store, t.stage, &t.key, mlvf::store::VerifyLevel::Fast)
                .is_ok()
        })
        .count();
    // Only the failed pretrain task and its two evals are not done.
    check(done == plan.tasks.len() - 1 - dependents.len(), || {
        format!("{done} of {} done", plan.tasks.len())
    })?;

    let st = cli()
        .args(["status", "--store"])
        .arg(&plan.store)
        .output()?;
    let s = text(&st);
    check(s.contains("eval") && s.contains("2  (2)"), || s.clone())?;
    check(
        s.contains("failed: pretrain") && s.contains("fake failure for") && s.contains(".log"),
        || s.clone(),
    )?;

    // Fixed: the next run finishes only what is missing.
    let out = run(&json, &log, &[], &["--jobs", "2"]);
    check(out.status.success(), || text(&out))?;
    check(
        text(&out).contains(&format!("{} cached, 3 ran", plan.tasks.len() - 3)),
        || text(&out),
    )?;
    Ok(())
}

fn retries_rerun_a_transient_failure() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa"], &[0]);
    let flaky = plan
        .tasks
        .iter()
        .find(|t| t.stage == StageKind::Eval)
        .unwrap();
    let out = run(
        &json,
        &log,
        &[("MLVF_FAKE_FAIL_ONCE", &flaky.key.0[..16])],
        &["--retries", "1"],
    );
    check(out.status.success(), || text(&out))?;
    let conn = rusqlite::Connection::open(plan.store.join("mlvf.sqlite"))?;
    let mut st =
        conn.prepare("SELECT attempt, state FROM attempts WHERE task = ?1 ORDER BY attempt")?;
    let rows: Vec<(u32, String)> = st
        .query_map([&flaky.key.0], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    check(
        rows == vec![(1, "failed".into()), (2, "succeeded".into())],
        || format!("{rows:?}"),
    )?;
    let tail: String = conn.query_row(
        "SELECT error_tail FROM attempts WHERE task = ?1 AND attempt = 1",
        [&flaky.key.0],
        |r| r.get(0),
    )?;
    check(tail.contains("fake transient failure"), || tail.clone())
}

fn second_controller_is_refused_or_waits() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa"], &[0]);
    let lock = mlvf::store::StoreLock::acquire(&plan.store, false, |_| {})?;
    let out = run(&json, &log, &[], &[]);
    let s = text(&out);
    check(
        !out.status.success() && s.contains("locked by another controller"),
        || s.clone(),
    )?;
    check(s.contains(&format!("pid {}", std::process::id())), || {
        s.clone()
    })?;
    check(fake_log(&log).is_empty(), || {
        "a refused controller ran tasks".into()
    })?;

    let mut waiting = cli()
        .args(["run", "--no-progress", "--wait-lock", "--plan-json"])
        .arg(&json)
        .env("MLVF_FAKE_LOG", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(400));
    check(waiting.try_wait()?.is_none(), || {
        "--wait-lock did not wait".into()
    })?;
    check(fake_log(&log).is_empty(), || {
        "a waiting controller ran tasks".into()
    })?;
    drop(lock);
    let status = waiting.wait()?;
    check(status.success(), || "the waiting controller failed".into())?;
    check(
        fake_log(&log)
            .iter()
            .filter(|l| l.starts_with("end"))
            .count()
            == plan.tasks.len(),
        || "not all ran".into(),
    )
}

fn corrupted_result_is_redone() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa"], &[0]);
    check(run(&json, &log, &[], &[]).status.success(), || {
        "first run failed".into()
    })?;
    let before = db_results(&plan.store);
    let victim = plan
        .tasks
        .iter()
        .rfind(|t| t.stage == StageKind::Eval)
        .unwrap();
    let out_txt =
        mlvf::store::layout::task_dir(&plan.store, victim.stage, &victim.key).join("out.txt");
    let content = std::fs::read(&out_txt)?;
    let mut flipped = content.clone();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    std::fs::write(&out_txt, &flipped)?; // same size, different bytes
    let out = run(&json, &log, &[], &[]);
    check(out.status.success(), || text(&out))?;
    check(
        text(&out).contains("will rerun") && text(&out).contains("checksum"),
        || text(&out),
    )?;
    check(started(&log, &victim.key.0) == 2, || {
        "the corrupted task did not run again".into()
    })?;
    let others_twice = plan
        .tasks
        .iter()
        .filter(|t| t.key != victim.key && started(&log, &t.key.0) != 1)
        .count();
    check(others_twice == 0, || {
        format!("{others_twice} intact tasks ran again")
    })?;
    check(std::fs::read(&out_txt)? == content, || {
        "the redone output differs".into()
    })?;
    check(db_results(&plan.store) == before, || {
        "database changed".into()
    })
}

fn ctrl_c_stops_cleanly() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa"], &[0]);
    let mut child = cli()
        .args(["run", "--no-progress", "--jobs", "2", "--plan-json"])
        .arg(&json)
        .env("MLVF_FAKE_LOG", &log)
        .env("MLVF_FAKE_SLEEP_MS", "300")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake_log(&log)
        .iter()
        .filter(|l| l.starts_with("start"))
        .count()
        < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait()?;
    check(status.code() == Some(130), || format!("exit {status:?}"))?;
    let conn = rusqlite::Connection::open(plan.store.join("mlvf.sqlite"))?;
    let count = |state: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM attempts WHERE state = ?1",
            [state],
            |r| r.get(0),
        )
        .unwrap()
    };
    check(count("running") == 0, || "attempts left running".into())?;
    check(count("interrupted") >= 1, || {
        "no attempt recorded as interrupted".into()
    })?;
    let out = run(&json, &log, &[], &["--jobs", "2"]);
    check(out.status.success(), || text(&out))
}

fn results_tables() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa", "pope"], &[0, 1]);
    check(
        run(&json, &log, &[], &["--jobs", "2"]).status.success(),
        || "run failed".into(),
    )?;
    let results = |args: &[&str]| -> Result<String, Failed> {
        let o = cli()
            .args(["results", "--plan-json"])
            .arg(&json)
            .args(args)
            .output()?;
        if !o.status.success() {
            return Err(text(&o).into());
        }
        Ok(String::from_utf8(o.stdout)?)
    };
    // CSV of the manifest's first table: plain header, numbers, seeds aggregated.
    let csv = results(&["--format", "csv"])?;
    let mut lines = csv.lines();
    check(
        lines.next() == Some("fusion,layers,gqa,gqa_std,pope,pope_std,best_in"),
        || csv.clone(),
    )?;
    let id_all = csv
        .lines()
        .find(|l| l.starts_with("I_D,all,"))
        .ok_or("no I_D,all row")?;
    let f: Vec<&str> = id_all.split(',').collect();
    let gqa: f64 = f[2].parse()?;
    check(
        (gqa - (score("I_D", "all", "gqa", 0) + score("I_D", "all", "gqa", 1)) / 2.0).abs() < 1e-9,
        || id_all.into(),
    )?;
    check(f[6] == "gqa;pope", || {
        format!("I_D/all should be best everywhere: {id_all}")
    })?;
    let baseline = csv
        .lines()
        .find(|l| l.starts_with("baseline,-,"))
        .ok_or("no baseline row")?;
    check(
        baseline.ends_with(",\"\"") || baseline.ends_with(','),
        || baseline.into(),
    )?;

    let md = results(&["--format", "md"])?;
    check(
        md.contains("**0.6750 ± 0.0071**") && md.contains("| baseline | -"),
        || md.clone(),
    )?;
    let delta = results(&["--format", "md", "--baseline-delta"])?;
    check(delta.contains("**+0.1700 ± 0.0000**"), || delta.clone())?;
    let js: serde_json::Value = serde_json::from_str(&results(&[
        "--format",
        "json",
        "--rows",
        "fusion,layers",
        "--cols",
        "benchmark",
    ])?)?;
    check(js["rows"].as_array().map(|r| r.len()) == Some(5), || {
        js.to_string()
    })?;
    check(
        js["rows"][4]["pope"]["n"] == 2 && js["rows"][4]["pope"]["best"] == true,
        || js.to_string(),
    )?;
    let long = results(&["--long", "--metric", "f1", "--format", "csv"])?;
    check(
        long.lines().next() == Some("benchmark,fusion,layers,seed,metric,value,state,task"),
        || long.clone(),
    )?;
    check(long.lines().count() == 1 + plan.cells.len(), || {
        long.clone()
    })?;
    // An axis that varies inside a table cell is refused with a hint.
    let o = cli()
        .args(["results", "--plan-json"])
        .arg(&json)
        .args(["--rows", "fusion"])
        .output()?;
    check(
        o.status.code() == Some(2) && text(&o).contains("add it to --rows or --cols"),
        || text(&o),
    )?;

    // Missing cells are reported.
    let mut bigger = plan.clone();
    let extra = fake_plan(&plan.store, "demo", &["E_M"], &["18"], &["gqa"], &[0]);
    let offset = bigger.cells.len();
    bigger.cells.extend(extra.cells.iter().cloned());
    for t in extra.tasks.iter().filter(|t| t.stage != StageKind::Prepare) {
        let mut t = t.clone();
        t.cells = t.cells.iter().map(|c| c + offset).collect();
        if !bigger.tasks.iter().any(|b| b.key == t.key) {
            bigger.tasks.push(t);
        }
    }
    let bj = dir.path().join("bigger.json");
    std::fs::write(&bj, serde_json::to_vec(&bigger)?)?;
    let o = cli()
        .args(["results", "--plan-json"])
        .arg(&bj)
        .args(["--format", "md"])
        .output()?;
    let s = text(&o);
    check(
        s.contains("without a value") && s.contains("missing (benchmark=gqa fusion=E_M"),
        || s.clone(),
    )
}

fn db_rebuild_matches_the_original() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa"], &[0]);
    check(run(&json, &log, &[], &[]).status.success(), || {
        "run failed".into()
    })?;
    let before = db_results(&plan.store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(plan.store.join(format!("mlvf.sqlite{suffix}")));
    }
    let o = cli()
        .args(["db", "rebuild", "--store"])
        .arg(&plan.store)
        .output()?;
    check(o.status.success() && text(&o).contains("1 sweeps"), || {
        text(&o)
    })?;
    check(db_results(&plan.store) == before, || {
        "rebuilt database differs".into()
    })?;
    let st = cli()
        .args(["results", "--sweep", "demo", "--store"])
        .arg(&plan.store)
        .output()?;
    check(
        st.status.success() && !text(&st).contains("without a value"),
        || text(&st),
    )
}

fn gc_lists_then_removes_unreachable_tasks() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, log) = setup(dir.path(), &["gqa", "pope"], &[0]);
    check(run(&json, &log, &[], &[]).status.success(), || {
        "run failed".into()
    })?;
    // The same sweep, narrowed: the pope evals are reachable from no recorded sweep now.
    let narrow = fake_plan(
        &plan.store,
        "demo",
        &["E_D", "I_D"],
        &["18", "all"],
        &["gqa"],
        &[0],
    );
    let nj = dir.path().join("narrow.json");
    std::fs::write(&nj, serde_json::to_vec(&narrow)?)?;
    let o = run(&nj, &log, &[], &[]);
    check(o.status.success() && text(&o).contains("0 ran"), || {
        text(&o)
    })?;
    let pope: Vec<_> = plan
        .tasks
        .iter()
        .filter(|t| t.config["benchmark"] == "pope")
        .collect();
    let dry = cli().args(["gc", "--store"]).arg(&plan.store).output()?;
    let s = text(&dry);
    check(
        s.contains(&format!("{} directories", pope.len())) && s.contains("dry run"),
        || s.clone(),
    )?;
    for t in &pope {
        check(s.contains(&t.key.0), || format!("{} not listed", t.key))?;
    }
    let dir_of = |t: &mlvf::plan::Task| mlvf::store::layout::task_dir(&plan.store, t.stage, &t.key);
    check(pope.iter().all(|t| dir_of(t).exists()), || {
        "dry run removed something".into()
    })?;
    let del = cli()
        .args(["gc", "--delete", "--store"])
        .arg(&plan.store)
        .output()?;
    check(del.status.success(), || text(&del))?;
    check(pope.iter().all(|t| !dir_of(t).exists()), || {
        "gc --delete left task dirs".into()
    })?;
    let o = run(&nj, &log, &[], &[]);
    check(
        o.status.success() && text(&o).contains(&format!("{} cached", narrow.tasks.len())),
        || text(&o),
    )
}

fn product_build_refuses_unimplemented_stages() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (plan, json, _log) = setup(dir.path(), &["gqa"], &[0]);
    let mlvf = env!("CARGO_BIN_EXE_mlvf");
    let o = std::process::Command::new(mlvf)
        .args(["run", "--no-progress", "--plan-json"])
        .arg(&json)
        .output()?;
    let s = text(&o);
    check(o.status.code() == Some(1), || s.clone())?;
    // The fake plan's first task is a prepare task: once the real prepare stage is registered,
    // it refuses the fake config clearly instead (and everything downstream is still blocked).
    let refused = if mlvf::stages::StageRegistry::product().has(mlvf::plan::StageKind::Prepare) {
        "not a prepare config"
    } else {
        "stage `prepare` has no implementation in this build yet"
    };
    check(s.contains(refused), || s.clone())?;
    check(
        s.contains(&format!("{} blocked", plan.tasks.len() - 1)),
        || s.clone(),
    )?;
    let o = std::process::Command::new(mlvf)
        .args(["task", "run", "--store"])
        .arg(&plan.store)
        .arg("nope")
        .output()?;
    check(
        o.status.code() == Some(2) && text(&o).contains("is not a task key"),
        || text(&o),
    )
}

fn main() -> ExitCode {
    if let Some(code) = run_as_cli_if_asked() {
        return code;
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "failure_blocks_only_dependents",
            failure_blocks_only_dependents,
        ),
        Trial::test(
            "retries_rerun_a_transient_failure",
            retries_rerun_a_transient_failure,
        ),
        Trial::test(
            "second_controller_is_refused_or_waits",
            second_controller_is_refused_or_waits,
        ),
        Trial::test("corrupted_result_is_redone", corrupted_result_is_redone),
        Trial::test("ctrl_c_stops_cleanly", ctrl_c_stops_cleanly),
        Trial::test("results_tables", results_tables),
        Trial::test(
            "db_rebuild_matches_the_original",
            db_rebuild_matches_the_original,
        ),
        Trial::test(
            "gc_lists_then_removes_unreachable_tasks",
            gc_lists_then_removes_unreachable_tasks,
        ),
        Trial::test(
            "product_build_refuses_unimplemented_stages",
            product_build_refuses_unimplemented_stages,
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
