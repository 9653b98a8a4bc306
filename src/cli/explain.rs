//! `mlvf explain`: print a task's key pre-image and why it would rerun after a manifest edit.

use crate::cli::UserError;
use crate::plan::{self, explain, keys};
use crate::store::{done, spec};
use crate::task::{Plan, Task, TaskKey};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A task key or a unique prefix of one (as `mlvf plan` prints them).
    pub task: String,
    /// The manifest to compare with: explains a stored task the manifest no longer plans.
    pub manifest: Option<PathBuf>,
    /// Store root (default: the manifest's `[sweep] store`).
    #[arg(long)]
    pub store: Option<PathBuf>,
}

fn print_task(t: &Task, plan: Option<&Plan>, cached: Option<bool>) -> anyhow::Result<()> {
    println!("{} {}", t.stage, t.key);
    if let Some(c) = cached {
        println!("state: {}", if c { "cached" } else { "missing" });
    }
    if !t.axes.is_empty() {
        let axes: Vec<String> = t.axes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("axes: {}", axes.join(" "));
    }
    if let Some(p) = plan {
        println!("serves {} cell(s) of sweep {}", t.cells.len(), p.sweep);
    }
    println!("pre-image (key = blake3 of its canonical JSON):");
    let pre = keys::pre_image(t.stage, t.version, &t.config, &t.deps);
    println!("{}", serde_json::to_string_pretty(&pre)?);
    Ok(())
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    if args.task.is_empty() {
        return Err(UserError("give a task key or a prefix of one".into()).into());
    }
    let plan = match &args.manifest {
        Some(m) => Some(plan::load(m, args.store.as_deref())?),
        None => None,
    };
    let store =
        match (&args.store, &plan) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => p.store.clone(),
            (None, None) => return Err(UserError(
                "give the manifest that planned the task, or `--store DIR` to read its stored spec"
                    .into(),
            )
            .into()),
        };
    let planned: Vec<&Task> = plan
        .iter()
        .flat_map(|p| p.tasks.iter())
        .filter(|t| t.key.0.starts_with(&args.task))
        .collect();
    let stored = spec::stored_keys(&store, &args.task);
    let mut candidates: Vec<TaskKey> = planned
        .iter()
        .map(|t| t.key.clone())
        .chain(stored.iter().cloned())
        .collect();
    candidates.sort();
    candidates.dedup();
    match candidates.len() {
        0 => {
            return Err(UserError(format!(
                "no task key starts with `{}` in {}{}",
                args.task,
                if plan.is_some() {
                    "the manifest's plan or "
                } else {
                    ""
                },
                store.join("specs").display()
            ))
            .into())
        }
        1 => {}
        n => {
            let list: Vec<String> = candidates.iter().take(10).map(|k| k.0.clone()).collect();
            return Err(UserError(format!(
                "`{}` matches {n} tasks; give more digits:\n  {}",
                args.task,
                list.join("\n  ")
            ))
            .into());
        }
    }
    let key = &candidates[0];
    if let Some(t) = planned.first() {
        print_task(t, plan.as_ref(), Some(done::is_cached(&store, t)))?;
        if stored.contains(key) {
            println!(
                "\nunchanged: the store's spec has this key, and the manifest still plans it."
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let old = spec::read_spec(&store, key)
        .map_err(|e| UserError(format!("cannot read the spec of {key}: {e}")))?;
    print_task(&old, None, None)?;
    if let Some(p) = &plan {
        println!("\nwhy it would rerun: the manifest no longer plans this key.");
        let mut lines = Vec::new();
        explain::why_rerun(&old, p, &|k| spec::read_spec(&store, k).ok(), 0, &mut lines);
        for l in lines {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
