//! `mlvf gc`: remove task directories that no registered sweep reaches.

use crate::store::{gc, StoreLock};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Store root.
    #[arg(long, default_value = "results")]
    pub store: PathBuf,
    /// Remove what is listed (default: only list it).
    #[arg(long)]
    pub delete: bool,
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

pub fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    if !args.store.is_dir() {
        return Err(super::UserError(format!(
            "no store at {} (pass --store DIR)",
            args.store.display()
        ))
        .into());
    }
    // Holding the lock means no controller runs, so every tmp dir belongs to a dead attempt.
    let _lock = StoreLock::acquire(&args.store, false, |_| {})?;
    let garbage = gc::find_garbage(&args.store)?;
    let total: u64 = garbage.iter().map(|g| g.bytes).sum();
    for g in &garbage {
        println!("{:>10}  {}  ({})", human(g.bytes), g.path.display(), g.why);
    }
    if garbage.is_empty() {
        println!("nothing to collect in {}", args.store.display());
    } else if args.delete {
        gc::delete(&args.store, &garbage)?;
        println!("removed {} directories, {}", garbage.len(), human(total));
    } else {
        println!(
            "{} directories, {} (dry run; pass --delete to remove them)",
            garbage.len(),
            human(total)
        );
    }
    Ok(ExitCode::SUCCESS)
}
