//! The local executor: a pool of worker processes (`<program> task run --store S --attempt N
//! KEY`) fed in topological order. The controller owns the store lock and the database; workers
//! only write files, which the controller verifies and ingests when they exit.
//!
//! Failure handling: a failed attempt is retried up to `retries` times; a task that still fails
//! blocks only its dependents. On a stop request (Ctrl-C, SIGTERM) no new attempt starts and the
//! running workers are terminated (SIGTERM, then SIGKILL after a grace period) and recorded as
//! `interrupted`. If the controller itself dies (even by SIGKILL), the kernel kills its workers
//! (`PR_SET_PDEATHSIG` on Linux), and the next controller records their attempts as `killed`.

use crate::db::{AttemptState, Db};
use crate::exec::progress::Progress;
use crate::exec::worker;
use crate::store::done::{self, VerifyLevel};
use crate::store::metrics::{read_metrics, METRICS_FILE};
use crate::store::{hostname, layout, spec, sweeps, StoreLock};
use crate::task::{Plan, StageKind, TaskKey};
use anyhow::{bail, Context};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a sweep runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Workers at once (≥ 1).
    pub jobs: usize,
    /// Extra attempts for a failed task.
    pub retries: u32,
    /// The program spawned as the worker (`<program> task run ...`): the mlvf binary.
    pub program: PathBuf,
    /// Wait for another controller's store lock instead of failing.
    pub wait_lock: bool,
    /// How published results are checked before they count as cached.
    pub verify: VerifyLevel,
    /// Draw progress bars (still only when stderr is a terminal).
    pub progress: bool,
    /// Set to stop: no new attempts start, running ones are terminated.
    pub stop: Arc<AtomicBool>,
    /// How long a terminated worker gets before SIGKILL.
    pub kill_grace: Duration,
    /// CPU threads each worker may use (`RAYON_NUM_THREADS`, which candle's CPU kernels read);
    /// `None` leaves the worker's environment as it is.
    pub threads_per_worker: Option<usize>,
}

impl RunOptions {
    /// Defaults: one job, no retries, this executable as the worker.
    pub fn new() -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            jobs: 1,
            retries: 0,
            program: std::env::current_exe().context("finding the mlvf executable")?,
            wait_lock: false,
            verify: VerifyLevel::Fast,
            progress: true,
            stop: Arc::new(AtomicBool::new(false)),
            kill_grace: Duration::from_secs(5),
            threads_per_worker: None,
        })
    }
}

/// A task that failed for good in this run.
#[derive(Clone, Debug)]
pub struct FailedTask {
    pub key: TaskKey,
    pub stage: StageKind,
    pub attempt: u32,
    pub error_tail: String,
    pub log_path: PathBuf,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub total: usize,
    /// Already published (and verified) before this run.
    pub cached: usize,
    /// Published by this run.
    pub ran: usize,
    pub failed: Vec<FailedTask>,
    /// Not run because a dependency failed.
    pub blocked: Vec<TaskKey>,
    /// Not run (or terminated) because of a stop request.
    pub interrupted: usize,
    pub stopped: bool,
}

impl RunSummary {
    /// Whether every task of the sweep is done.
    pub fn complete(&self) -> bool {
        self.cached + self.ran == self.total
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Done,
    Failed,
    Blocked,
}

struct Running {
    idx: usize,
    attempt: u32,
    child: Child,
    log: PathBuf,
}

/// The last `lines` lines of a log (at most 4 KiB), for the database and the status report.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(4096);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn check_plan(plan: &Plan) -> anyhow::Result<HashMap<&TaskKey, usize>> {
    let mut index = HashMap::with_capacity(plan.tasks.len());
    for (i, t) in plan.tasks.iter().enumerate() {
        for d in &t.deps {
            if !index.contains_key(d) {
                bail!(
                    "sweep `{}`: task {} ({}) depends on {d}, which is not an earlier task of the plan (the plan is not in topological order)",
                    plan.sweep,
                    t.key,
                    t.stage
                );
            }
        }
        if index.insert(&t.key, i).is_some() {
            bail!(
                "sweep `{}`: task {} appears twice in the plan",
                plan.sweep,
                t.key
            );
        }
    }
    Ok(index)
}

fn spawn_worker(
    program: &Path,
    root: &Path,
    key: &TaskKey,
    attempt: u32,
    log: &Path,
    threads: Option<usize>,
) -> anyhow::Result<Child> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.arg("task")
        .arg("run")
        .arg("--store")
        .arg(root)
        .arg("--attempt")
        .arg(attempt.to_string())
        .arg(&key.0)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Die with the controller, so a killed controller leaves no worker behind
                // that could publish while the next controller runs the same task.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the controller exited"));
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
        .with_context(|| format!("starting worker {} for task {key}", program.display()))
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit".to_string(),
    }
}

fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Ingests a published task into the database (done state + metrics).
fn ingest(db: &mut Db, root: &Path, rec: &crate::store::DoneRecord) -> anyhow::Result<()> {
    let dir = layout::task_dir(root, rec.stage, &rec.key);
    let metrics = read_metrics(&dir.join(METRICS_FILE))?;
    let log = layout::log_path(root, &rec.key, rec.attempt);
    db.ingest_done(rec, &metrics, log.exists().then_some(log.as_path()))
}

/// Runs what is missing of `plan` in its store; returns when every task is done, failed,
/// blocked, or a stop was requested.
pub fn run_sweep(plan: &Plan, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    let root = plan.store.as_path();
    let index = check_plan(plan)?;
    let _lock = StoreLock::acquire(root, opts.wait_lock, |holder| {
        eprintln!(
            "mlvf: waiting for the store lock on {} ({holder})",
            root.display()
        );
    })?;

    let plan_json = serde_json::to_string(plan)?;
    sweeps::write_sweep_json(root, &plan.sweep, &plan_json)?;
    let mut db = Db::open(root)?;
    db.mark_orphans_killed()?;
    db.register_sweep_json(plan, &plan_json)?;
    let rows = db.task_rows()?;

    let n = plan.tasks.len();
    let mut summary = RunSummary {
        total: n,
        ..RunSummary::default()
    };
    let mut state = vec![State::Waiting; n];
    let mut missing_deps = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut totals: BTreeMap<StageKind, u64> = BTreeMap::new();
    for t in &plan.tasks {
        *totals.entry(t.stage).or_default() += 1;
    }
    let mut progress = Progress::new(&totals, opts.progress);

    // Verifying is file reads and hashing: in parallel. The database is touched after, from
    // this thread only.
    let verified: Vec<_> = plan
        .tasks
        .par_iter()
        .map(|t| done::verify(root, t.stage, &t.key, opts.verify))
        .collect();
    for ((i, t), verdict) in plan.tasks.iter().enumerate().zip(verified) {
        let in_db = rows.get(&t.key).and_then(|r| r.done_attempt);
        match verdict {
            Ok(rec) => {
                if in_db != Some(rec.attempt) {
                    // Published but not ingested: a controller died between the two, or
                    // another sweep sharing the store ran it.
                    ingest(&mut db, root, &rec)?;
                }
                state[i] = State::Done;
                summary.cached += 1;
                progress.cached(t.stage);
            }
            Err(why) => {
                if in_db.is_some() || layout::task_dir(root, t.stage, &t.key).exists() {
                    progress.println(&format!(
                        "mlvf: {} task {} will rerun: {why}",
                        t.stage,
                        t.key.short()
                    ));
                }
                if in_db.is_some() {
                    db.forget_done(&t.key)?;
                }
            }
        }
    }
    let mut ready = VecDeque::new();
    for (i, t) in plan.tasks.iter().enumerate() {
        for d in &t.deps {
            let j = index[d];
            dependents[j].push(i);
            if state[j] != State::Done {
                missing_deps[i] += 1;
            }
        }
        if state[i] == State::Waiting && missing_deps[i] == 0 {
            state[i] = State::Ready;
            ready.push_back(i);
        }
    }

    let host = hostname();
    let jobs = opts.jobs.max(1);
    let mut tries = vec![0u32; n];
    let mut running: Vec<Running> = Vec::new();
    loop {
        if opts.stop.load(Ordering::SeqCst) {
            summary.stopped = true;
            break;
        }
        while running.len() < jobs {
            let Some(i) = ready.pop_front() else { break };
            let t = &plan.tasks[i];
            // The worker reads its spec and its deps' specs (written only for what runs, so a
            // cached rerun stays cheap).
            spec::write_spec(root, &crate::db::canonical_spec(t))?;
            for d in &t.deps {
                spec::write_spec(root, &crate::db::canonical_spec(&plan.tasks[index[d]]))?;
            }
            let attempt = db
                .max_attempt(&t.key)?
                .max(worker::next_attempt(root, &t.key) - 1)
                + 1;
            let log = layout::log_path(root, &t.key, attempt);
            let child = spawn_worker(
                &opts.program,
                root,
                &t.key,
                attempt,
                &log,
                opts.threads_per_worker,
            )?;
            db.start_attempt(&t.key, attempt, &host, Some(child.id()), None, &log)?;
            tries[i] += 1;
            state[i] = State::Running;
            progress.started(t.stage);
            running.push(Running {
                idx: i,
                attempt,
                child,
                log,
            });
        }
        if running.is_empty() {
            break;
        }
        let mut k = 0;
        let mut any_exit = false;
        while k < running.len() {
            let Some(status) = running[k].child.try_wait()? else {
                k += 1;
                continue;
            };
            any_exit = true;
            let r = running.swap_remove(k);
            let t = &plan.tasks[r.idx];
            match done::verify(root, t.stage, &t.key, VerifyLevel::Fast) {
                Ok(rec) => {
                    ingest(&mut db, root, &rec)?;
                    if rec.attempt != r.attempt {
                        db.end_attempt(
                            &t.key,
                            r.attempt,
                            AttemptState::Succeeded,
                            status.code(),
                            None,
                        )?;
                    }
                    state[r.idx] = State::Done;
                    summary.ran += 1;
                    progress.finished(t.stage, true, false);
                    for &d in &dependents[r.idx] {
                        missing_deps[d] -= 1;
                        if missing_deps[d] == 0 && state[d] == State::Waiting {
                            state[d] = State::Ready;
                            ready.push_back(d);
                        }
                    }
                }
                Err(why) => {
                    let mut tail = log_tail(&r.log, 20);
                    if status.success() {
                        tail.push_str(&format!(
                            "\nthe worker exited 0 but the task is not published: {why}"
                        ));
                    } else {
                        tail.push_str(&format!("\n[worker {}]", describe_exit(status)));
                    }
                    let tail = tail.trim().to_string();
                    db.end_attempt(
                        &t.key,
                        r.attempt,
                        AttemptState::Failed,
                        status.code(),
                        Some(&tail),
                    )?;
                    let last = tries[r.idx] > opts.retries;
                    progress.finished(t.stage, false, last);
                    if last {
                        progress.println(&format!(
                            "mlvf: {} task {} failed (attempt {}); log: {}",
                            t.stage,
                            t.key.short(),
                            r.attempt,
                            r.log.display()
                        ));
                        state[r.idx] = State::Failed;
                        summary.failed.push(FailedTask {
                            key: t.key.clone(),
                            stage: t.stage,
                            attempt: r.attempt,
                            error_tail: tail,
                            log_path: r.log.clone(),
                        });
                        let mut stack = dependents[r.idx].clone();
                        while let Some(d) = stack.pop() {
                            if state[d] == State::Waiting {
                                state[d] = State::Blocked;
                                summary.blocked.push(plan.tasks[d].key.clone());
                                progress.blocked(1);
                                stack.extend(dependents[d].iter().copied());
                            }
                        }
                    } else {
                        state[r.idx] = State::Ready;
                        ready.push_back(r.idx);
                    }
                }
            }
        }
        if !any_exit {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    if summary.stopped {
        for mut r in running.drain(..) {
            terminate(&mut r.child, opts.kill_grace);
            let t = &plan.tasks[r.idx];
            if let Ok(rec) = done::verify(root, t.stage, &t.key, VerifyLevel::Fast) {
                // It published before it got the signal: a result like any other.
                ingest(&mut db, root, &rec)?;
                summary.ran += 1;
                continue;
            }
            db.end_attempt(
                &t.key,
                r.attempt,
                AttemptState::Interrupted,
                None,
                Some("stopped by a stop request (Ctrl-C or SIGTERM) to the controller"),
            )?;
        }
        summary.interrupted = summary.total
            - summary.cached
            - summary.ran
            - summary.failed.len()
            - summary.blocked.len();
    }
    progress.finish();
    Ok(summary)
}
