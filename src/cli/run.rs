//! `mlvf run`: run what is missing of a sweep.

use crate::exec::{run_sweep, RunOptions};
use crate::store::VerifyLevel;
use crate::task::Plan;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The sweep manifest (TOML).
    #[arg(required_unless_present = "plan_json")]
    pub manifest: Option<PathBuf>,
    /// Store root (default: the manifest's `[sweep] store`).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Tasks to run at once (local executor). Default: the manifest's `[executor] jobs`, else 1.
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// CPU threads per task. Default: the machine's cores divided by --jobs, so parallel tasks
    /// do not oversubscribe the cores (candle's CPU kernels spin while they wait for each
    /// other); `RAYON_NUM_THREADS` in the environment wins over the default.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Extra attempts for a failed task before its dependents are given up.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// If another controller holds the store, wait for it instead of failing.
    #[arg(long)]
    pub wait_lock: bool,
    /// Rehash every cached output instead of trusting unchanged sizes and mtimes.
    #[arg(long)]
    pub verify_checksums: bool,
    /// Never draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Where tasks run: `local` (a worker pool here) or `slurm` (job arrays; the controller
    /// exits after submitting). Default: the manifest's `[executor] kind`, else local.
    #[arg(long, value_parser = ["local", "slurm"])]
    pub executor: Option<String>,
    /// Slurm: follow the submitted jobs until none is queued or running.
    #[arg(long)]
    pub wait: bool,
    /// Slurm: print the sbatch scripts (checked with `sbatch --test-only` when a cluster
    /// answers) and submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run a plan saved as JSON (the `Plan` type) instead of a manifest. For tests and tools.
    #[arg(long, hide = true)]
    pub plan_json: Option<PathBuf>,
}

/// Loads the plan of a manifest, or a plan saved as JSON; `store` overrides its store root.
pub fn load_plan(
    manifest: Option<&Path>,
    plan_json: Option<&Path>,
    store: Option<&Path>,
) -> anyhow::Result<Plan> {
    if let Some(p) = plan_json {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let mut plan: Plan = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a plan", p.display()))?;
        if let Some(s) = store {
            plan.store = s.to_path_buf();
        }
        return Ok(plan);
    }
    let manifest = manifest.context("no manifest given")?;
    crate::plan::load(manifest, store)
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = load_plan(
        args.manifest.as_deref(),
        args.plan_json.as_deref(),
        args.store.as_deref(),
    )?;
    let slurm_cfg = crate::exec::slurm::SlurmConfig::from_settings(&plan.executor);
    let jobs = args.jobs.or(slurm_cfg.jobs).unwrap_or(1);
    if jobs == 0 {
        return Err(super::UserError("--jobs must be at least 1".into()).into());
    }
    let kind = match &args.executor {
        Some(e) => crate::exec::slurm::ExecutorKind::parse(e)?,
        None => slurm_cfg.kind,
    };
    if kind == crate::exec::slurm::ExecutorKind::Slurm {
        return super::run_slurm::run(&plan, slurm_cfg, &args);
    }
    if args.wait || args.dry_run {
        return Err(super::UserError(
            "--wait and --dry-run are for --executor slurm (the local executor always waits; `mlvf plan` shows what would run)".into(),
        )
        .into());
    }
    crate::exec::slurm::refuse_if_in_slurm(&plan)?;
    let mut opts = RunOptions::new()?;
    opts.jobs = jobs;
    opts.retries = args.retries;
    opts.wait_lock = args.wait_lock;
    opts.progress = !args.no_progress;
    opts.threads_per_worker = threads_per_worker(args.threads, jobs);
    if args.verify_checksums {
        opts.verify = VerifyLevel::Full;
    }
    // Running workers are terminated and recorded as interrupted; the next `mlvf run` cleans up.
    on_ctrl_c(
        opts.stop.clone(),
        "mlvf: stopping: terminating running tasks (Ctrl-C again to exit at once)",
    );
    let s = run_sweep(&plan, &opts)?;
    println!(
        "sweep {}: {} tasks: {} cached, {} ran, {} failed, {} blocked{}",
        plan.sweep,
        s.total,
        s.cached,
        s.ran,
        s.failed.len(),
        s.blocked.len(),
        if s.stopped {
            format!(", {} not run (stopped)", s.interrupted)
        } else {
            String::new()
        }
    );
    for f in &s.failed {
        println!(
            "  failed: {} {} (attempt {}), log {}",
            f.stage,
            f.key,
            f.attempt,
            f.log_path.display()
        );
        for line in f
            .error_tail
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("    | {line}");
        }
    }
    if !s.stopped {
        print_reports(&plan);
    }
    Ok(if s.stopped {
        ExitCode::from(130)
    } else if s.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Threads each local worker gets: `--threads`, else (unless `RAYON_NUM_THREADS` is set) the
/// cores divided evenly among the `jobs` workers.
fn threads_per_worker(threads: Option<usize>, jobs: usize) -> Option<usize> {
    if let Some(n) = threads {
        return Some(n.max(1));
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((cores / jobs.max(1)).max(1))
}

/// Writes the sweep's tables (text, CSV, Markdown, heatmap PNG) to its store and prints them
/// with their paths. A report that cannot be made is a warning: the results are in the database
/// either way (`mlvf results` reads them).
fn print_reports(plan: &Plan) {
    match crate::report::publish::publish_tables(plan) {
        Ok(tables) => {
            for t in tables {
                println!("\n{}:\n{}", t.name, t.text.trim_end());
                println!("  CSV:  {}", t.csv.display());
                println!("  Markdown: {}", t.markdown.display());
                println!("  plot: {}", t.png.display());
            }
        }
        Err(e) => eprintln!("mlvf: warning: could not write the result tables: {e:#}"),
    }
}

/// First Ctrl-C: raise `stop` and say `message`; second: exit at once (code 130).
pub(super) fn on_ctrl_c(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    message: &'static str,
) {
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("{message}");
    });
}
