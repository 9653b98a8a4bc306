//! `mlvf status`: the state of a sweep's tasks and attempts.

use crate::db::{AttemptState, Db, TaskRow};
use crate::store::done::{self, VerifyLevel};
use crate::store::{hostname, sweeps};
use crate::task::{Plan, StageKind, TaskKey};
use clap::Args;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The sweep manifest (default: every sweep recorded in the store).
    pub manifest: Option<PathBuf>,
    /// Store root (default: the manifest's, else `results`).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Only this recorded sweep.
    #[arg(long, conflicts_with = "manifest")]
    pub sweep: Option<String>,
    /// Run a plan saved as JSON instead of a manifest (tests and tools).
    #[arg(long, hide = true, conflicts_with = "manifest")]
    pub plan_json: Option<PathBuf>,
}

/// Where one task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskStatus {
    Done,
    Failed,
    Running,
    Missing,
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// The status of one task: done if its published result verifies (the files are the truth);
/// failed if its newest attempt failed; running if its newest attempt is running on a live
/// process; missing otherwise (never ran, killed or interrupted).
pub fn task_status(
    root: &Path,
    stage: StageKind,
    key: &TaskKey,
    row: Option<&TaskRow>,
) -> TaskStatus {
    if done::verify(root, stage, key, VerifyLevel::Fast).is_ok() {
        return TaskStatus::Done;
    }
    match row.and_then(|r| r.last_attempt.as_ref()) {
        Some(a) if a.state == AttemptState::Failed => TaskStatus::Failed,
        Some(a)
            if a.state == AttemptState::Running
                && a.host.as_deref() == Some(hostname().as_str())
                && a.pid.is_some_and(pid_alive) =>
        {
            TaskStatus::Running
        }
        _ => TaskStatus::Missing,
    }
}

fn plans(args: &StatusArgs) -> anyhow::Result<(PathBuf, Vec<Plan>)> {
    if args.manifest.is_some() || args.plan_json.is_some() {
        let plan = super::run::load_plan(
            args.manifest.as_deref(),
            args.plan_json.as_deref(),
            args.store.as_deref(),
        )?;
        return Ok((plan.store.clone(), vec![plan]));
    }
    let root = args
        .store
        .clone()
        .unwrap_or_else(|| PathBuf::from("results"));
    let plans = match &args.sweep {
        Some(name) => vec![sweeps::read_sweep(&root, name)?],
        None => sweeps::list_sweeps(&root)?,
    };
    if plans.is_empty() {
        return Err(super::UserError(format!(
            "no sweep is recorded in {} (give a manifest, or check --store)",
            root.display()
        ))
        .into());
    }
    Ok((root, plans))
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (root, plans) = plans(&args)?;
    // Slurm submissions: learn from squeue/scontrol/sacct what is queued or running, and
    // ingest what jobs published (before reading the database).
    let mut in_slurm = HashMap::new();
    for plan in &plans {
        let in_root = Plan {
            store: root.clone(),
            ..plan.clone()
        };
        match crate::exec::slurm::live_tasks(&in_root) {
            Ok(live) => in_slurm.extend(live),
            Err(e) => eprintln!(
                "mlvf: could not ask Slurm about sweep {}: {e:#}",
                plan.sweep
            ),
        }
    }
    let rows: HashMap<TaskKey, TaskRow> = match Db::open_read(&root) {
        Ok(db) => db.task_rows()?,
        Err(_) => HashMap::new(),
    };
    let mut all_done = true;
    for plan in &plans {
        // Columns: done, failed, running, missing, and of the missing those blocked by a
        // failed upstream task (they cannot run until it is fixed).
        let mut counts: BTreeMap<StageKind, [usize; 5]> = BTreeMap::new();
        let mut failed = Vec::new();
        let mut bad_upstream: std::collections::HashSet<&TaskKey> = Default::default();
        for t in &plan.tasks {
            let row = rows.get(&t.key);
            let st = match task_status(&root, t.stage, &t.key, row) {
                TaskStatus::Done => TaskStatus::Done,
                _ if in_slurm.contains_key(&t.key) => TaskStatus::Running,
                st => st,
            };
            let c = counts.entry(t.stage).or_default();
            c[st as usize] += 1;
            let blocked = t.deps.iter().any(|d| bad_upstream.contains(d));
            if st == TaskStatus::Failed || (blocked && st != TaskStatus::Done) {
                bad_upstream.insert(&t.key);
            }
            if blocked && st == TaskStatus::Missing {
                c[4] += 1;
            }
            all_done &= st == TaskStatus::Done;
            if st == TaskStatus::Failed {
                failed.push((
                    t,
                    row.and_then(|r| r.last_attempt.clone())
                        .expect("failed means an attempt"),
                ));
            }
        }
        println!(
            "sweep {} ({} tasks, {} cells) in {}",
            plan.sweep,
            plan.tasks.len(),
            plan.cells.len(),
            root.display()
        );
        println!(
            "  {:<10} {:>6} {:>7} {:>8} {:>8}  (of which blocked)",
            "stage", "done", "failed", "running", "missing"
        );
        for (stage, c) in &counts {
            println!(
                "  {:<10} {:>6} {:>7} {:>8} {:>8}  ({})",
                stage.as_str(),
                c[0],
                c[1],
                c[2],
                c[3],
                c[4]
            );
        }
        for (t, a) in failed {
            println!(
                "  failed: {} {} (attempt {}), log {}",
                t.stage,
                t.key,
                a.attempt,
                a.log_path.as_deref().unwrap_or("-")
            );
            for line in a.error_tail.as_deref().unwrap_or("").lines() {
                println!("    | {line}");
            }
        }
    }
    if !in_slurm.is_empty() {
        let queued = in_slurm
            .values()
            .filter(|s| matches!(s, crate::exec::slurm::JobState::Pending { .. }))
            .count();
        println!(
            "  slurm: {} task(s) queued, {} running (counted as running above)",
            queued,
            in_slurm.len() - queued
        );
    }
    let _ = all_done;
    Ok(ExitCode::SUCCESS)
}
