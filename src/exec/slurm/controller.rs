//! The Slurm controller: reconcile what Slurm and the store say with the database, submit what
//! is missing as job arrays, and optionally follow the jobs until they end.
//!
//! Truth comes in this order: a published `DONE.json` (the task is done, whatever Slurm says);
//! else a queued or running element (never submitted twice); else the task is missing and is
//! (re)submitted, its last attempt recorded as failed (non-zero exit, timeout) or killed
//! (cancelled, lost). Slurm is asked before the store is checked, so an element that publishes
//! and leaves the queue between the two checks is still seen as done.

use super::arrays::{dependency_arg, group_arrays, ArraySpec};
use super::config::SlurmConfig;
use super::jobs::{self, JobRecord};
use super::queue::{self, JobState};
use super::script::{self, ScriptInput};
use crate::atomic::write_atomic;
use crate::db::{AttemptState, Db};
use crate::exec::local::{log_tail, FailedTask};
use crate::exec::worker;
use crate::store::done::{self, DoneRecord, VerifyLevel};
use crate::store::metrics::{read_metrics, METRICS_FILE};
use crate::store::{layout, now_ms, spec, sweeps, StoreLock};
use crate::task::{Plan, StageKind, TaskKey};
use anyhow::{bail, Context};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a Slurm run behaves.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    pub config: SlurmConfig,
    /// The mlvf executable the jobs run, unless the config names one.
    pub program: PathBuf,
    /// Follow the jobs until none is queued or running.
    pub wait: bool,
    /// Print the scripts (and `sbatch --test-only` them if a cluster answers); submit nothing.
    pub dry_run: bool,
    pub wait_lock: bool,
    pub verify: VerifyLevel,
    /// With `wait`: how many more times a task whose job ended without a result is
    /// resubmitted (its queued dependents go with it).
    pub retries: u32,
    /// Set to stop following (the jobs keep running).
    pub stop: Arc<AtomicBool>,
}

impl SlurmOptions {
    /// Defaults: this executable, no wait, no dry run.
    pub fn new(config: SlurmConfig) -> anyhow::Result<SlurmOptions> {
        Ok(SlurmOptions {
            config,
            program: std::env::current_exe().context("finding the mlvf executable")?,
            wait: false,
            dry_run: false,
            wait_lock: false,
            verify: VerifyLevel::Fast,
            retries: 0,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// Where one task stands after reconciling.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskView {
    Done,
    /// Queued or running in Slurm as this element.
    Live {
        job: String,
        state: JobState,
    },
    /// Its job ended without publishing (Slurm's state, if it still remembers the job).
    Ended {
        job: String,
        state: Option<JobState>,
    },
    /// Never submitted (or the record is gone).
    Missing,
}

/// One submitted array.
#[derive(Clone, Debug)]
pub struct SubmittedArray {
    pub name: String,
    pub stage: StageKind,
    pub job_id: String,
    pub tasks: usize,
    pub script: PathBuf,
}

/// What a Slurm run did.
#[derive(Clone, Debug, Default)]
pub struct SlurmSummary {
    pub total: usize,
    /// Published (before or during this run).
    pub done: usize,
    /// Queued or running in Slurm at the end of this run (submitted earlier or now).
    pub live: usize,
    /// Tasks submitted by this run.
    pub submitted: usize,
    pub arrays: Vec<SubmittedArray>,
    /// Tasks whose job ended without a result (seen by this run; resubmitted unless `--wait`
    /// saw them end).
    pub failed: Vec<FailedTask>,
    /// With `--dry-run`: each array's name and script.
    pub scripts: Vec<(String, String)>,
    pub stopped: bool,
}

/// The result of one reconciliation.
pub struct Reconciled {
    pub views: Vec<TaskView>,
    /// Jobs that ended without a result and were recorded as such now.
    pub newly_ended: Vec<FailedTask>,
}

fn ingest(db: &mut Db, root: &Path, rec: &DoneRecord) -> anyhow::Result<()> {
    let dir = layout::task_dir(root, rec.stage, &rec.key);
    let metrics = read_metrics(&dir.join(METRICS_FILE))?;
    let log = layout::log_path(root, &rec.key, rec.attempt);
    db.ingest_done(rec, &metrics, log.exists().then_some(log.as_path()))
}

/// Reconciles `plan` with Slurm and the store; with a database (the caller holds the store
/// lock), ingests published tasks and records how ended jobs ended.
pub fn reconcile(
    plan: &Plan,
    mut db: Option<&mut Db>,
    verify: VerifyLevel,
) -> anyhow::Result<Reconciled> {
    let root = plan.store.as_path();
    let records = jobs::latest(root)?;
    let first: Vec<bool> = plan
        .tasks
        .par_iter()
        .map(|t| done::verify(root, t.stage, &t.key, verify).is_ok())
        .collect();
    // Ask Slurm first, then look at the store again: see the module docs.
    let mut arrays: Vec<String> = plan
        .tasks
        .iter()
        .zip(&first)
        .filter(|(_, d)| !**d)
        .filter_map(|(t, _)| records.get(&t.key).map(|r| r.array_job.clone()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    arrays.sort();
    let states = queue::query(&arrays)?;
    let rows = match db.as_deref() {
        Some(db) => db.task_rows()?,
        None => HashMap::new(),
    };
    let mut views = Vec::with_capacity(plan.tasks.len());
    let mut newly_ended = Vec::new();
    for (t, was_done) in plan.tasks.iter().zip(first) {
        let rec = if was_done || records.contains_key(&t.key) {
            done::verify(root, t.stage, &t.key, verify).ok()
        } else {
            None
        };
        let row = rows.get(&t.key);
        if let Some(rec) = rec {
            if let Some(db) = db.as_deref_mut() {
                if row.and_then(|r| r.done_attempt) != Some(rec.attempt) {
                    ingest(db, root, &rec)?;
                }
                if let Some(a) = row.and_then(|r| r.last_attempt.as_ref()) {
                    if a.state == AttemptState::Running && a.attempt != rec.attempt {
                        db.end_attempt(&t.key, a.attempt, AttemptState::Succeeded, None, None)?;
                    }
                }
            }
            views.push(TaskView::Done);
            continue;
        }
        let Some(jr) = records.get(&t.key) else {
            views.push(TaskView::Missing);
            continue;
        };
        let state = states.get(&jr.job).cloned();
        if let Some(st) = state.as_ref().filter(|s| s.is_live()) {
            views.push(TaskView::Live {
                job: jr.job.clone(),
                state: st.clone(),
            });
            continue;
        }
        // Ended without a result: record it once.
        let still_running = row
            .and_then(|r| r.last_attempt.as_ref())
            .is_some_and(|a| a.attempt == jr.attempt && a.state == AttemptState::Running);
        if still_running || db.is_none() {
            let log = layout::log_path(root, &t.key, jr.attempt);
            let why = match &state {
                Some(JobState::Completed) => {
                    "slurm job exited 0 but the task is not published".to_string()
                }
                Some(s) => format!("slurm job {}: {}", jr.job, s.describe()),
                None => format!(
                    "slurm job {} is gone (not in squeue, scontrol or sacct) and the task is not published",
                    jr.job
                ),
            };
            let tail = format!("{}\n[{why}]", log_tail(&log, 20))
                .trim()
                .to_string();
            let (att_state, exit) = match &state {
                Some(JobState::Failed { exit, .. }) => (AttemptState::Failed, *exit),
                Some(JobState::Completed) => (AttemptState::Failed, Some(0)),
                _ => (AttemptState::Killed, None),
            };
            if let Some(db) = db.as_deref_mut() {
                db.end_attempt(&t.key, jr.attempt, att_state, exit, Some(&tail))?;
            }
            newly_ended.push(FailedTask {
                key: t.key.clone(),
                stage: t.stage,
                attempt: jr.attempt,
                error_tail: tail,
                log_path: log,
            });
        }
        views.push(TaskView::Ended {
            job: jr.job.clone(),
            state,
        });
    }
    Ok(Reconciled { views, newly_ended })
}

/// Queued tasks that wait on a task about to be (re)submitted: their job depends on a job that
/// ended without a result, so it would be cancelled (or wait forever). They move from `live` to
/// `submit` (kept in plan order); returns (key, attempt, job) of each, to cancel.
fn doomed_dependents(
    plan: &Plan,
    views: &[TaskView],
    submit: &mut Vec<usize>,
    live: &mut HashMap<TaskKey, String>,
) -> Vec<(TaskKey, u32, String)> {
    let mut resubmitted: HashSet<&TaskKey> = submit.iter().map(|&i| &plan.tasks[i].key).collect();
    let mut doomed = Vec::new();
    let records = jobs::latest(&plan.store).unwrap_or_default();
    for (i, t) in plan.tasks.iter().enumerate() {
        let TaskView::Live {
            job,
            state: JobState::Pending { .. },
        } = &views[i]
        else {
            continue;
        };
        if t.deps.iter().any(|d| resubmitted.contains(d)) {
            resubmitted.insert(&t.key);
            live.remove(&t.key);
            submit.push(i);
            let attempt = records.get(&t.key).map_or(0, |r| r.attempt);
            doomed.push((t.key.clone(), attempt, job.clone()));
        }
    }
    submit.sort_unstable();
    doomed
}

/// Whether a Slurm cluster answers here (`sinfo` succeeds).
pub fn cluster_reachable() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%P"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn job_name(plan: &Plan, a: &ArraySpec) -> String {
    let mut h = blake3::Hasher::new();
    for &(i, t) in &a.elements {
        h.update(format!("{i}:{}\n", plan.tasks[t].key).as_bytes());
    }
    let hex = h.finalize().to_hex();
    format!("mlvf-{}-{}-{}", plan.sweep, a.name, &hex[..8])
}

fn sbatch(args: &[&str], script: &Path) -> anyhow::Result<std::process::Output> {
    Command::new("sbatch")
        .args(args)
        .arg(script)
        .output()
        .context("running sbatch (is Slurm installed and on PATH?)")
}

/// Runs a sweep on Slurm: reconcile, submit what is missing, and with `wait` follow the jobs.
pub fn run_slurm(plan: &Plan, opts: &SlurmOptions) -> anyhow::Result<SlurmSummary> {
    let root = plan.store.as_path();
    let cfg = &opts.config;
    if opts.dry_run {
        return dry_run(plan, opts);
    }
    let _lock = StoreLock::acquire(root, opts.wait_lock, |holder| {
        eprintln!(
            "mlvf: waiting for the store lock on {} ({holder})",
            root.display()
        );
    })?;
    // Jobs run elsewhere: every path they get is absolute.
    let abs_root = std::fs::canonicalize(root)
        .with_context(|| format!("resolving the store path {}", root.display()))?;
    let plan_json = serde_json::to_string(plan)?;
    sweeps::write_sweep_json(root, &plan.sweep, &plan_json)?;
    let mut db = Db::open(root)?;
    db.mark_orphans_killed()?;
    db.register_sweep_json(plan, &plan_json)?;

    let rec = reconcile(plan, Some(&mut db), opts.verify)?;
    for f in &rec.newly_ended {
        eprintln!(
            "mlvf: {} task {} (attempt {}) ended without a result; resubmitting. log: {}",
            f.stage,
            f.key.short(),
            f.attempt,
            f.log_path.display()
        );
    }
    let mut summary = SlurmSummary {
        total: plan.tasks.len(),
        ..SlurmSummary::default()
    };
    let live = submit_round(
        plan,
        opts,
        &mut db,
        &abs_root,
        &rec.views,
        None,
        &mut summary,
    )?;
    summary.live = live + summary.submitted;
    if !opts.wait {
        return Ok(summary);
    }
    // Follow until nothing is queued or running.
    let poll = Duration::from_secs_f64(cfg.poll_s);
    let mut last = String::new();
    let mut tries: HashMap<TaskKey, u32> = HashMap::new();
    loop {
        std::thread::sleep(poll);
        let r = reconcile(plan, Some(&mut db), opts.verify)?;
        if opts.retries > 0 && !r.newly_ended.is_empty() {
            let newly: HashSet<&TaskKey> = r.newly_ended.iter().map(|f| &f.key).collect();
            for k in &newly {
                *tries.entry((*k).clone()).or_default() += 1;
            }
            let again: HashSet<usize> = plan
                .tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| newly.contains(&t.key) && tries[&t.key] <= opts.retries)
                .map(|(i, _)| i)
                .collect();
            if !again.is_empty() {
                let before = summary.submitted;
                submit_round(
                    plan,
                    opts,
                    &mut db,
                    &abs_root,
                    &r.views,
                    Some(&again),
                    &mut summary,
                )?;
                if summary.submitted > before {
                    eprintln!(
                        "mlvf: resubmitted {} task(s) whose jobs ended without a result (--retries {})",
                        summary.submitted - before,
                        opts.retries
                    );
                    continue;
                }
            }
        }
        let (mut done, mut pending, mut running, mut ended) = (0, 0, 0, 0);
        for v in &r.views {
            match v {
                TaskView::Done => done += 1,
                TaskView::Live {
                    state: JobState::Pending { .. },
                    ..
                } => pending += 1,
                TaskView::Live { .. } => running += 1,
                _ => ended += 1,
            }
        }
        for f in &r.newly_ended {
            eprintln!(
                "mlvf: {} task {} failed in slurm (attempt {}); log: {}",
                f.stage,
                f.key.short(),
                f.attempt,
                f.log_path.display()
            );
        }
        let line = format!(
            "mlvf: slurm: {done} done, {running} running, {pending} queued, {ended} ended without a result"
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        summary.done = done;
        summary.live = pending + running;
        if pending + running == 0 {
            let records = jobs::latest(root)?;
            summary.failed = r
                .views
                .iter()
                .enumerate()
                .filter(|(_, v)| !matches!(v, TaskView::Done))
                .map(|(i, v)| {
                    let t = &plan.tasks[i];
                    let (job, state) = match v {
                        TaskView::Ended { job, state } => (job.clone(), state.clone()),
                        _ => (String::new(), None),
                    };
                    let attempt = records.get(&t.key).map_or(0, |r| r.attempt);
                    let log = layout::log_path(root, &t.key, attempt);
                    let mut tail = log_tail(&log, 20);
                    if let Some(s) = state {
                        tail.push_str(&format!("\n[slurm job {job}: {}]", s.describe()));
                    }
                    FailedTask {
                        key: t.key.clone(),
                        stage: t.stage,
                        attempt,
                        error_tail: tail.trim().to_string(),
                        log_path: log,
                    }
                })
                .collect();
            return Ok(summary);
        }
        if opts.stop.load(Ordering::SeqCst) {
            summary.stopped = true;
            return Ok(summary);
        }
    }
}

/// Whether each task is done, from a reconciliation's views.
fn done_flags(views: &[TaskView]) -> Vec<bool> {
    views.iter().map(|v| matches!(v, TaskView::Done)).collect()
}

/// Drops from `submit` (plan order) every task with a dependency that is neither done, live,
/// nor submitted with it: its job could never start.
fn close_submission(
    plan: &Plan,
    done: &[bool],
    submit: &mut Vec<usize>,
    live: &HashMap<TaskKey, String>,
) {
    let index: HashMap<&TaskKey, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (&t.key, i))
        .collect();
    let mut kept: HashSet<usize> = HashSet::new();
    submit.retain(|&i| {
        let ok = plan.tasks[i].deps.iter().all(|d| {
            let j = index[d];
            done[j] || live.contains_key(d) || kept.contains(&j)
        });
        if ok {
            kept.insert(i);
        }
        ok
    });
}

/// One submission: every task of `views` that is ended or missing (only those in `only`, if
/// given) and can start, plus queued dependents of them (cancelled and resubmitted after
/// them). Adds to `summary`; returns how many tasks were already queued or running.
fn submit_round(
    plan: &Plan,
    opts: &SlurmOptions,
    db: &mut Db,
    abs_root: &Path,
    views: &[TaskView],
    only: Option<&HashSet<usize>>,
    summary: &mut SlurmSummary,
) -> anyhow::Result<usize> {
    let root = plan.store.as_path();
    let cfg = &opts.config;
    let mut live: HashMap<TaskKey, String> = HashMap::new();
    let mut submit = Vec::new();
    for (i, v) in views.iter().enumerate() {
        match v {
            TaskView::Done => {
                if only.is_none() {
                    summary.done += 1;
                }
            }
            TaskView::Live { job, .. } => {
                live.insert(plan.tasks[i].key.clone(), job.clone());
            }
            TaskView::Ended { .. } | TaskView::Missing => {
                if only.is_none_or(|o| o.contains(&i)) {
                    submit.push(i);
                }
            }
        }
    }
    close_submission(plan, &done_flags(views), &mut submit, &live);
    let doomed = doomed_dependents(plan, views, &mut submit, &mut live);
    if !doomed.is_empty() {
        // Their jobs wait on jobs that ended without a result: they can never start.
        let jobs: Vec<&str> = doomed.iter().map(|(_, _, j)| j.as_str()).collect();
        let out = Command::new("scancel")
            .args(&jobs)
            .output()
            .context("running scancel")?;
        if !out.status.success() {
            bail!(
                "scancel {} failed: {}",
                jobs.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        for (key, attempt, job) in &doomed {
            db.end_attempt(
                key,
                *attempt,
                AttemptState::Killed,
                None,
                Some(&format!(
                    "slurm job {job} cancelled by mlvf: a dependency was resubmitted"
                )),
            )?;
        }
        eprintln!(
            "mlvf: cancelled {} queued job(s) whose dependencies are resubmitted; they are resubmitted after them",
            doomed.len()
        );
    }
    let arrays = group_arrays(&plan.tasks, &submit, &live, cfg.max_array_size);
    if !arrays.is_empty() {
        let sub_dir = jobs::slurm_dir(abs_root).join(format!("{}-{}", plan.sweep, now_ms()));
        std::fs::create_dir_all(&sub_dir)
            .with_context(|| format!("creating {}", sub_dir.display()))?;
        let index: HashMap<&TaskKey, usize> = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (&t.key, i))
            .collect();
        let program = cfg.mlvf.clone().unwrap_or_else(|| opts.program.clone());
        let records_before = jobs::latest(root)?;
        let mut job_ids: Vec<String> = Vec::new();
        for a in &arrays {
            let mut lines = Vec::new();
            for &(i, t) in &a.elements {
                let task = &plan.tasks[t];
                spec::write_spec(root, &crate::db::canonical_spec(task))?;
                for d in &task.deps {
                    spec::write_spec(root, &crate::db::canonical_spec(&plan.tasks[index[d]]))?;
                }
                let attempt = db
                    .max_attempt(&task.key)?
                    .max(worker::next_attempt(root, &task.key) - 1)
                    .max(records_before.get(&task.key).map_or(0, |r| r.attempt))
                    + 1;
                lines.push((
                    i,
                    task.key.0.as_str(),
                    attempt,
                    layout::log_path(abs_root, &task.key, attempt),
                ));
            }
            let keys_file = sub_dir.join(format!("{}.keys", a.name));
            let key_lines: Vec<(u32, &str, u32, &Path)> = lines
                .iter()
                .map(|(i, k, at, l)| (*i, *k, *at, l.as_path()))
                .collect();
            write_atomic(&keys_file, script::key_list(&key_lines).as_bytes())?;
            let name = job_name(plan, a);
            let dep = dependency_arg(&a.deps, &job_ids);
            let array_arg = a.array_arg(cfg.throttle);
            let resources = cfg.resources(a.stage);
            let text = script::render(
                a,
                &ScriptInput {
                    sweep: &plan.sweep,
                    job_name: &name,
                    array: &array_arg,
                    dependency: dep.as_deref(),
                    resources: &resources,
                    slurm_output: &sub_dir.join(format!("{}.%A_%a.out", a.name)),
                    keys_file: &keys_file,
                    store: abs_root,
                    mlvf: &program,
                    setup: &cfg.setup,
                    signal_lead_s: cfg.signal_lead_s,
                },
            );
            let script_path = sub_dir.join(format!("{}.sbatch", a.name));
            write_atomic(&script_path, text.as_bytes())?;
            let out = sbatch(&["--parsable"], &script_path)?;
            if !out.status.success() {
                bail!(
                    "sbatch {} failed ({}): {}\n{} array(s) of this submission were submitted before it (they stay queued; `mlvf run` again resubmits the rest)",
                    script_path.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    job_ids.len()
                );
            }
            let id = queue::parse_sbatch(&String::from_utf8_lossy(&out.stdout))
                .with_context(|| format!("submitting {}", script_path.display()))?;
            let now = now_ms();
            let recs: Vec<JobRecord> = a
                .elements
                .iter()
                .zip(&lines)
                .map(|(&(i, t), (_, _, attempt, _))| JobRecord {
                    key: plan.tasks[t].key.clone(),
                    stage: a.stage,
                    sweep: plan.sweep.clone(),
                    attempt: *attempt,
                    array_job: id.clone(),
                    job: format!("{id}_{i}"),
                    submitted_ms: now,
                    script: script_path.clone(),
                })
                .collect();
            jobs::append(root, &recs)?;
            for (r, (_, _, _, log)) in recs.iter().zip(&lines) {
                db.start_attempt(&r.key, r.attempt, "slurm", None, Some(&r.job), log)?;
            }
            eprintln!(
                "mlvf: submitted {} ({} {} task(s)) as job {id}{}",
                name,
                a.elements.len(),
                a.stage,
                dep.as_deref()
                    .map(|d| format!(", after {d}"))
                    .unwrap_or_default()
            );
            summary.submitted += a.elements.len();
            summary.arrays.push(SubmittedArray {
                name,
                stage: a.stage,
                job_id: id.clone(),
                tasks: a.elements.len(),
                script: script_path,
            });
            job_ids.push(id);
        }
    }
    Ok(live.len())
}

/// `--dry-run`: the scripts a submission would use, with `<array-name>` for job ids not known
/// yet; each is checked with `sbatch --test-only` (without its dependency) when a cluster
/// answers. Nothing is written to the store.
fn dry_run(plan: &Plan, opts: &SlurmOptions) -> anyhow::Result<SlurmSummary> {
    let cfg = &opts.config;
    let root = plan.store.as_path();
    let abs_root = std::fs::canonicalize(root).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(root))
            .unwrap_or_else(|_| root.to_path_buf())
    });
    let reachable = cluster_reachable();
    let has_records = jobs::jobs_path(root).exists();
    let views = if has_records && reachable {
        reconcile(plan, None, opts.verify)?.views
    } else {
        plan.tasks
            .iter()
            .map(|t| {
                if done::verify(root, t.stage, &t.key, opts.verify).is_ok() {
                    TaskView::Done
                } else {
                    TaskView::Missing
                }
            })
            .collect()
    };
    let mut summary = SlurmSummary {
        total: plan.tasks.len(),
        ..SlurmSummary::default()
    };
    let mut live = HashMap::new();
    let mut submit = Vec::new();
    for (i, v) in views.iter().enumerate() {
        match v {
            TaskView::Done => summary.done += 1,
            TaskView::Live { job, .. } => {
                live.insert(plan.tasks[i].key.clone(), job.clone());
            }
            _ => submit.push(i),
        }
    }
    summary.live = live.len();
    let arrays = group_arrays(&plan.tasks, &submit, &live, cfg.max_array_size);
    let placeholders: Vec<String> = arrays.iter().map(|a| format!("<{}>", a.name)).collect();
    let sub_dir = jobs::slurm_dir(&abs_root).join(format!("{}-<time>", plan.sweep));
    let program = cfg.mlvf.clone().unwrap_or_else(|| opts.program.clone());
    for a in &arrays {
        let name = job_name(plan, a);
        let dep = dependency_arg(&a.deps, &placeholders);
        let array_arg = a.array_arg(cfg.throttle);
        let resources = cfg.resources(a.stage);
        let keys_file = sub_dir.join(format!("{}.keys", a.name));
        let out = sub_dir.join(format!("{}.%A_%a.out", a.name));
        let input = |dependency| ScriptInput {
            sweep: &plan.sweep,
            job_name: &name,
            array: &array_arg,
            dependency,
            resources: &resources,
            slurm_output: &out,
            keys_file: &keys_file,
            store: &abs_root,
            mlvf: &program,
            setup: &cfg.setup,
            signal_lead_s: cfg.signal_lead_s,
        };
        let text = script::render(a, &input(dep.as_deref()));
        if reachable {
            let tmp = tempfile::NamedTempFile::new()?;
            std::fs::write(tmp.path(), script::render(a, &input(None)))?;
            let out = sbatch(&["--test-only"], tmp.path())?;
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if !out.status.success() {
                bail!(
                    "sbatch --test-only rejects the {} script: {msg}\n{text}",
                    a.name
                );
            }
            eprintln!("mlvf: {}: {msg}", a.name);
        }
        summary.submitted += a.elements.len();
        summary.scripts.push((a.name.clone(), text));
    }
    Ok(summary)
}

/// For `mlvf status`: if this store has Slurm submissions, reconciles the plan with Slurm
/// (ingesting published tasks when the store lock is free) and returns the tasks that are
/// queued or running. Without submissions it asks nothing and returns an empty map.
pub fn live_tasks(plan: &Plan) -> anyhow::Result<HashMap<TaskKey, JobState>> {
    let root = plan.store.as_path();
    if !jobs::jobs_path(root).exists() {
        return Ok(HashMap::new());
    }
    let rec = match StoreLock::acquire(root, false, |_| {}) {
        Ok(_lock) => {
            let mut db = Db::open(root)?;
            db.register_sweep(plan)?;
            reconcile(plan, Some(&mut db), VerifyLevel::Fast)?
        }
        Err(_) => reconcile(plan, None, VerifyLevel::Fast)?,
    };
    Ok(plan
        .tasks
        .iter()
        .zip(rec.views)
        .filter_map(|(t, v)| match v {
            TaskView::Live { state, .. } => Some((t.key.clone(), state)),
            _ => None,
        })
        .collect())
}

/// For the local executor: refuses to run a sweep some of whose tasks are queued or running
/// in Slurm (they would run twice). Asks Slurm only if this store has submissions; if Slurm
/// cannot be asked (the store moved to a machine without it), warns and lets the run go on.
pub fn refuse_if_in_slurm(plan: &Plan) -> anyhow::Result<()> {
    let root = plan.store.as_path();
    let records = jobs::latest(root)?;
    let mut arrays: Vec<String> = plan
        .tasks
        .iter()
        .filter_map(|t| records.get(&t.key).map(|r| r.array_job.clone()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if arrays.is_empty() {
        return Ok(());
    }
    arrays.sort();
    let states = match queue::query(&arrays) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mlvf: warning: this store has Slurm submissions, but Slurm cannot be asked about them ({e:#}); running locally anyway");
            return Ok(());
        }
    };
    let live: Vec<&str> = plan
        .tasks
        .iter()
        .filter_map(|t| records.get(&t.key))
        .filter(|r| states.get(&r.job).is_some_and(JobState::is_live))
        .map(|r| r.job.as_str())
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    Err(crate::error::UserError(format!(
        "{} task(s) of sweep {} are queued or running in Slurm (jobs {}{}); follow them with `mlvf run --executor slurm --wait`, or scancel them first",
        live.len(),
        plan.sweep,
        live.iter().take(5).copied().collect::<Vec<_>>().join(", "),
        if live.len() > 5 { ", ..." } else { "" }
    ))
    .into())
}
