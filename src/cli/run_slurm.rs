//! `mlvf run --executor slurm`: submit a sweep's missing tasks to Slurm (or, with `--dry-run`,
//! print the scripts) and report; `--wait` follows the jobs to the end.

use super::run::RunArgs;
use crate::exec::slurm::{run_slurm, SlurmConfig, SlurmOptions};
use crate::store::VerifyLevel;
use crate::task::Plan;
use std::process::ExitCode;

/// Runs `plan` on Slurm with the manifest's `[executor]` settings.
pub fn run(plan: &Plan, config: SlurmConfig, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut opts = SlurmOptions::new(config)?;
    opts.wait = args.wait;
    opts.dry_run = args.dry_run;
    opts.wait_lock = args.wait_lock;
    opts.retries = args.retries;
    if args.verify_checksums {
        opts.verify = VerifyLevel::Full;
    }
    super::run::on_ctrl_c(
        opts.stop.clone(),
        "mlvf: no longer following the jobs (they keep running; `mlvf status` shows them)",
    );
    let s = run_slurm(plan, &opts)?;
    if opts.dry_run {
        for (name, text) in &s.scripts {
            println!("# ---- {name}.sbatch");
            print!("{text}");
        }
        println!(
            "sweep {}: {} tasks: {} done, {} queued or running, {} would be submitted in {} array(s) (dry run)",
            plan.sweep,
            s.total,
            s.done,
            s.live,
            s.submitted,
            s.scripts.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "sweep {}: {} tasks: {} done, {} submitted in {} array(s), {} queued or running{}",
        plan.sweep,
        s.total,
        s.done,
        s.submitted,
        s.arrays.len(),
        s.live,
        if opts.wait {
            format!(", {} failed", s.failed.len())
        } else {
            String::new()
        }
    );
    for a in &s.arrays {
        println!(
            "  job {}: {} ({} {} task(s)), script {}",
            a.job_id,
            a.name,
            a.tasks,
            a.stage,
            a.script.display()
        );
    }
    for f in &s.failed {
        println!(
            "  failed: {} {} (attempt {}), log {}",
            f.stage,
            f.key,
            f.attempt,
            f.log_path.display()
        );
        let lines: Vec<&str> = f.error_tail.lines().collect();
        for line in &lines[lines.len().saturating_sub(3)..] {
            println!("    | {line}");
        }
    }
    Ok(if s.stopped {
        ExitCode::from(130)
    } else if opts.wait && s.done < s.total {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
