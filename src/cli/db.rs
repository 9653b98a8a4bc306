//! `mlvf db`: database maintenance (rebuild from the store).

use crate::store::StoreLock;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Recreate <store>/mlvf.sqlite from sweep records, specs and published task dirs.
    Rebuild {
        /// Store root.
        #[arg(long, default_value = "results")]
        store: PathBuf,
    },
}

pub fn run(args: DbArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DbCommand::Rebuild { store } => {
            if !store.is_dir() {
                return Err(super::UserError(format!(
                    "no store at {} (pass --store DIR)",
                    store.display()
                ))
                .into());
            }
            let _lock = StoreLock::acquire(&store, false, |_| {})?;
            let r = crate::db::rebuild::rebuild(&store)?;
            println!(
                "rebuilt {}: {} sweeps, {} tasks, {} done",
                crate::store::layout::db_path(&store).display(),
                r.sweeps,
                r.tasks,
                r.done
            );
            for (dir, why) in &r.invalid {
                println!("  not done: {} ({why})", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
