//! The Slurm executor's submission logic against fake `sbatch`/`squeue`/`scontrol`/`scancel`
//! on PATH (no cluster needed, so these always run): arrays and their dependencies, job
//! records in the store and the database, no second submission of queued tasks, resubmission
//! of lost ones, `--dry-run`, and a clear error when sbatch refuses.
//!
//! `harness = false`: this binary is also the mlvf CLI with fake stages (`MLVF_TEST_AS_CLI`).

#[path = "common/fake.rs"]
mod fake;

use fake::*;
use libtest_mimic::{Arguments, Failed, Trial};
use mlvf::plan::Plan;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};

/// A directory of fake Slurm commands; state (submitted scripts, the squeue answer, scancel
/// calls) lives in `<dir>/state`.
struct FakeSlurm {
    bin: PathBuf,
    state: PathBuf,
}

impl FakeSlurm {
    fn new(dir: &Path) -> FakeSlurm {
        let bin = dir.join("bin");
        let state = dir.join("state");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let s = state.display();
        let scripts = [
            (
                "sbatch",
                format!(
                    r#"#!/bin/sh
[ -f {s}/sbatch_fails ] && {{ echo "sbatch: error: Batch job submission failed: Invalid account" >&2; exit 1; }}
n=$(cat {s}/next 2>/dev/null || echo 100)
echo $((n + 1)) > {s}/next
for last; do :; done
cp "$last" {s}/$n.sbatch
echo "$*" > {s}/$n.args
echo "$n"
"#
                ),
            ),
            (
                "squeue",
                format!("#!/bin/sh\ncat {s}/squeue 2>/dev/null\nexit 0\n"),
            ),
            ("scontrol", "#!/bin/sh\nexit 1\n".to_string()),
            ("sacct", "#!/bin/sh\nexit 1\n".to_string()),
            ("sinfo", "#!/bin/sh\nexit 1\n".to_string()),
            (
                "scancel",
                format!("#!/bin/sh\necho \"$*\" >> {s}/scancel\n"),
            ),
        ];
        for (name, text) in scripts {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        FakeSlurm { bin, state }
    }

    fn run(&self, json: &Path, extra: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cli()
            .args(["run", "--no-progress", "--executor", "slurm", "--plan-json"])
            .arg(json)
            .args(extra)
            .env("PATH", path)
            .output()
            .unwrap()
    }

    /// The submitted scripts, by job id.
    fn scripts(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = std::fs::read_dir(&self.state)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".sbatch")?.parse().ok()?;
                Some((id, std::fs::read_to_string(e.path()).unwrap()))
            })
            .collect();
        v.sort();
        v
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sweep(dir: &Path) -> (Plan, PathBuf) {
    let mut plan = fake_plan(
        &dir.join("store"),
        "fake",
        &["E_D", "I_D"],
        &["18"],
        &["gqa", "pope"],
        &[0],
    );
    // The executor reads `[executor]` from the plan (as the manifest loader put it there).
    let executor: toml::Table =
        "partition = \"gpu\"\nthrottle = 2\n[stage.eval]\npartition = \"cpu\"\n"
            .parse()
            .unwrap();
    plan.executor = toml::Value::Table(executor).try_into().unwrap();
    let json = save_plan(dir, &plan);
    (plan, json)
}

fn sbatch_lines(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter(|l| l.starts_with("#SBATCH"))
        .collect()
}

fn submits_arrays_with_dependencies_and_records_jobs() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let fake = FakeSlurm::new(dir.path());
    let (plan, json) = sweep(dir.path());
    let out = fake.run(&json, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let scripts = fake.scripts();
    // prepare (100), pretrain (101, afterok prepare), two eval layers aligned with pretrain.
    assert_eq!(scripts.len(), 4, "{}", text(&out));
    let deps: Vec<Option<String>> = scripts
        .iter()
        .map(|(_, s)| {
            sbatch_lines(s)
                .iter()
                .find_map(|l| l.strip_prefix("#SBATCH --dependency="))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        deps,
        [
            None,
            Some("afterok:100".into()),
            Some("aftercorr:101".into()),
            Some("aftercorr:101".into())
        ]
    );
    assert!(sbatch_lines(&scripts[1].1).contains(&"#SBATCH --partition=gpu"));
    assert!(sbatch_lines(&scripts[2].1).contains(&"#SBATCH --partition=cpu"));
    assert!(sbatch_lines(&scripts[1].1).contains(&"#SBATCH --array=0-2%2"));
    assert!(sbatch_lines(&scripts[1].1).contains(&"#SBATCH --kill-on-invalid-dep=yes"));
    // Every task has a job record and a running attempt with its job id.
    let recs = mlvf::exec::slurm::jobs::latest(&plan.store)?;
    assert_eq!(recs.len(), plan.tasks.len());
    let conn = rusqlite::Connection::open(plan.store.join("mlvf.sqlite"))?;
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM attempts WHERE state = 'running' AND job_id LIKE '10%\\_%' ESCAPE '\\'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(n as usize, plan.tasks.len());
    // The key lists map array indices to keys, attempts and logs.
    let prep = &recs[&plan.tasks[0].key];
    assert_eq!(prep.job, "100_0");
    let keys = std::fs::read_to_string(prep.script.with_extension("keys"))?;
    let log =
        mlvf::store::layout::log_path(&std::fs::canonicalize(&plan.store)?, &plan.tasks[0].key, 1);
    assert_eq!(
        keys,
        format!("0\t{}\t1\t{}\n", plan.tasks[0].key, log.display())
    );

    // All of it queued: a second controller submits nothing.
    let queued: String = recs
        .values()
        .map(|r| format!("{}|PENDING|Dependency\n", r.job))
        .collect();
    std::fs::write(fake.state.join("squeue"), &queued)?;
    let out = fake.run(&json, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 submitted"), "{}", text(&out));
    assert_eq!(fake.scripts().len(), 4);

    // One eval lost from the queue (and never published): only it is resubmitted, as attempt 2.
    let lost = &plan.tasks[plan.tasks.len() - 1].key;
    let without: String = queued
        .lines()
        .filter(|l| !l.starts_with(&format!("{}|", recs[lost].job)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(fake.state.join("squeue"), without)?;
    let out = fake.run(&json, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 submitted"), "{}", text(&out));
    let recs2 = mlvf::exec::slurm::jobs::latest(&plan.store)?;
    assert_eq!(recs2[lost].attempt, 2);
    assert_eq!(recs2[lost].job, "104_0");
    let state: String = conn.query_row(
        "SELECT state FROM attempts WHERE task = ?1 AND attempt = 1",
        [&lost.0],
        |r| r.get(0),
    )?;
    assert_eq!(state, "killed");
    Ok(())
}

fn resubmitted_pretrain_takes_its_queued_evals_along() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let fake = FakeSlurm::new(dir.path());
    let (plan, json) = sweep(dir.path());
    assert!(fake.run(&json, &[]).status.success());
    let recs = mlvf::exec::slurm::jobs::latest(&plan.store)?;
    // The second pretrain was cancelled; everything else is still queued.
    let victim = &plan
        .tasks
        .iter()
        .filter(|t| t.stage == mlvf::plan::StageKind::Pretrain)
        .nth(1)
        .unwrap()
        .key;
    let queued: String = recs
        .values()
        .filter(|r| &r.key != victim)
        .map(|r| format!("{}|PENDING|Dependency\n", r.job))
        .collect();
    std::fs::write(fake.state.join("squeue"), queued)?;
    let out = fake.run(&json, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let children: Vec<&str> = plan
        .tasks
        .iter()
        .filter(|t| t.deps.contains(victim))
        .map(|t| recs[&t.key].job.as_str())
        .collect();
    assert_eq!(children.len(), 2);
    let cancelled = std::fs::read_to_string(fake.state.join("scancel"))?;
    let mut got: Vec<&str> = cancelled.split_whitespace().collect();
    got.sort();
    let mut want = children.clone();
    want.sort();
    assert_eq!(got, want, "only the victim's queued evals are cancelled");
    assert!(text(&out).contains("3 submitted"), "{}", text(&out));
    Ok(())
}

fn dry_run_prints_scripts_and_writes_nothing() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let fake = FakeSlurm::new(dir.path());
    let (plan, json) = sweep(dir.path());
    let out = fake.run(&json, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("#!/bin/bash").count(), 4, "{stdout}");
    assert!(
        stdout.contains("#SBATCH --dependency=aftercorr:<pretrain-0>"),
        "{stdout}"
    );
    assert!(
        stdout.contains("10 would be submitted in 4 array(s)"),
        "{stdout}"
    );
    assert!(fake.scripts().is_empty(), "a dry run submitted something");
    assert!(!plan.store.join("mlvf.sqlite").exists());
    assert!(!mlvf::exec::slurm::jobs::jobs_path(&plan.store).exists());
    Ok(())
}

fn sbatch_refusal_is_reported() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let fake = FakeSlurm::new(dir.path());
    let (_plan, json) = sweep(dir.path());
    std::fs::write(fake.state.join("sbatch_fails"), "")?;
    let out = fake.run(&json, &[]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("Invalid account") && t.contains("prepare-0.sbatch"),
        "{t}"
    );
    Ok(())
}

fn local_run_refuses_while_jobs_are_queued() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let fake = FakeSlurm::new(dir.path());
    let (plan, json) = sweep(dir.path());
    assert!(fake.run(&json, &[]).status.success());
    let recs = mlvf::exec::slurm::jobs::latest(&plan.store)?;
    let queued: String = recs
        .values()
        .map(|r| format!("{}|RUNNING|None\n", r.job))
        .collect();
    std::fs::write(fake.state.join("squeue"), queued)?;
    let path = format!("{}:{}", fake.bin.display(), std::env::var("PATH")?);
    let out = cli()
        .args(["run", "--no-progress", "--executor", "local", "--plan-json"])
        .arg(&json)
        .env("PATH", path)
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("queued or running in Slurm"),
        "{}",
        text(&out)
    );
    Ok(())
}

fn main() -> ExitCode {
    if let Some(code) = run_as_cli_if_asked() {
        return code;
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "submits_arrays_with_dependencies_and_records_jobs",
            submits_arrays_with_dependencies_and_records_jobs,
        ),
        Trial::test(
            "resubmitted_pretrain_takes_its_queued_evals_along",
            resubmitted_pretrain_takes_its_queued_evals_along,
        ),
        Trial::test(
            "dry_run_prints_scripts_and_writes_nothing",
            dry_run_prints_scripts_and_writes_nothing,
        ),
        Trial::test("sbatch_refusal_is_reported", sbatch_refusal_is_reported),
        Trial::test(
            "local_run_refuses_while_jobs_are_queued",
            local_run_refuses_while_jobs_are_queued,
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
